"""The per-stage table of ``run``: one set of rows and cells, drawn as plain text or by rich.

Both renderers take the same ``table_lines`` (cells already formatted, bottleneck flag
beside them), so a log file and a terminal always show the same figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._statistics import PipelineStatistics

if TYPE_CHECKING:
    from rich.console import RenderableType

BOTTLENECK_MARK = "<- bottleneck"
RICH_BOTTLENECK_MARK = "◀ bottleneck"
SETTLE_ITEMS = 10
"""Items every stage must have finished before the bottleneck is named: after only one
or two the utilization window is too short to compare, and the last stage to start
looks busiest."""

COLUMNS = ("stage", "processed", "items/s", "p50 ms", "p99 ms", "queue", "util %", "")
LEFT_ALIGNED = frozenset({0, len(COLUMNS) - 1})
"""The name and the mark read left to right; the figures line up on the right."""


@dataclass(frozen=True)
class Row:
    """One stage line of the table (nested stages indented under their pipeline)."""

    name: str
    processed: int
    throughput: float
    p50_ms: float
    p99_ms: float
    queue_depth: int
    utilization_pct: float
    bottleneck: bool


def settled_bottleneck(stats: PipelineStatistics) -> str | None:
    """The snapshot's bottleneck once every stage has done ``SETTLE_ITEMS`` items, else None."""
    if any(stage.processed + stage.failed < SETTLE_ITEMS for stage in stats.stages):
        return None
    return stats.bottleneck


def stage_rows(stats: PipelineStatistics, depth: int = 0) -> list[Row]:
    """The table rows; only the outer pipeline's bottleneck is marked."""
    bottleneck = settled_bottleneck(stats) if depth == 0 else None
    rows = []
    for stage in stats.stages:
        indent = "  " * depth + ("└ " if depth else "")
        rows.append(
            Row(
                name=indent + stage.name,
                processed=stage.processed,
                throughput=stage.throughput,
                p50_ms=stage.service_time.p50 * 1000,
                p99_ms=stage.service_time.p99 * 1000,
                queue_depth=stage.queue_depth,
                utilization_pct=stage.utilization * 100,
                bottleneck=stage.name == bottleneck,
            )
        )
        if stage.child is not None:
            rows.extend(stage_rows(stage.child, depth + 1))
    return rows


def table_lines(stats: PipelineStatistics, mark: str) -> list[tuple[tuple[str, ...], bool]]:
    """Each stage's formatted cells and whether it is the bottleneck (marked with ``mark``)."""
    return [
        (
            (
                row.name,
                f"{row.processed}",
                f"{row.throughput:.1f}",
                f"{row.p50_ms:.2f}",
                f"{row.p99_ms:.2f}",
                f"{row.queue_depth}",
                f"{row.utilization_pct:.0f}",
                mark if row.bottleneck else "",
            ),
            row.bottleneck,
        )
        for row in stage_rows(stats)
    ]


def plain_table(stats: PipelineStatistics, title: str, totals: str) -> str:
    """The table as aligned text, for logs, pipes and terminals without rich."""
    body = [COLUMNS, *(cells for cells, _ in table_lines(stats, BOTTLENECK_MARK))]
    widths = [max(len(line[col]) for line in body) for col in range(len(COLUMNS))]
    lines = [title]
    for line in body:
        cells = [
            cell.ljust(width) if col in LEFT_ALIGNED else cell.rjust(width)
            for col, (cell, width) in enumerate(zip(line, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    lines.append(totals)
    return "\n".join(lines) + "\n"


def rich_view(stats: PipelineStatistics, title: str, totals: str) -> RenderableType:
    """The same table for rich: the bottleneck row in bold red (text as is, no markup)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table()
    for col, header in enumerate(COLUMNS):
        table.add_column(header, justify="left" if col in LEFT_ALIGNED else "right")
    for cells, bottleneck in table_lines(stats, RICH_BOTTLENECK_MARK):
        table.add_row(*(Text(cell) for cell in cells), style="bold red" if bottleneck else None)
    return Group(Text(title, style="bold"), table, Text(totals))
