"""The per-stage table of ``run``: one set of rows and cells, drawn as plain text or by rich.

Both renderers take the same ``table_lines`` (cells already formatted, each beside its
row), so a log file and a terminal always show the same figures. A graph's
junctions get a row each (``⑂ Perceive (parallel)``, with what the join waits on), and
the stages of their branches are indented under them like a nested pipeline's. A
``Sync``'s sources get a row each (``▸ camera (source)``: accepted, in flight, and what
became of them) above their branch's stages.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .._combinators import walk
from .._pipeline import Pipeline
from .._statistics import (
    JunctionStatistics,
    PipelineStatistics,
    SourceStatistics,
    StageStatistics,
)

if TYPE_CHECKING:
    from rich.console import RenderableType

BOTTLENECK_MARK = "<- bottleneck"
RICH_BOTTLENECK_MARK = "◀ bottleneck"
SETTLE_ITEMS = 10
"""Items every stage of the main chain, and the bottleneck itself, must have finished
before the bottleneck is named: after only one or two the utilization window is too
short to compare, and the last stage to start looks busiest."""

COLUMNS = ("stage", "processed", "items/s", "p50 ms", "p99 ms", "queue", "util %", "")
LEFT_ALIGNED = frozenset({0, len(COLUMNS) - 1})
"""The name and the mark (or a junction's note) read left to right; the figures line up
on the right."""


@dataclass(frozen=True)
class Row:
    """One line of the table: a stage (nested pipelines' and branches' stages indented
    under their pipeline or junction), or a junction with what it waits on in ``note``."""

    name: str
    processed: int
    throughput: float
    p50_ms: float
    p99_ms: float
    queue_depth: int
    utilization_pct: float
    bottleneck: bool
    junction: bool = False
    """A junction row: only ``queue_depth`` (items inside its branches) and ``note``."""
    note: str = ""
    source: bool = False
    """A ``Sync`` source's row: ``processed`` is what it accepted, ``queue_depth`` what it
    has in flight, and ``note`` what became of the rest."""


def settled_bottleneck(stats: PipelineStatistics) -> str | None:
    """The snapshot's bottleneck once it and every stage of the main chain have finished
    ``SETTLE_ITEMS`` items, else None (a branch that gets few items, such as a route's
    rarely used key, does not hold the mark back)."""
    main = [stage for stage in stats.stages if stage.path in ("", stage.name)]
    named = [stage for stage in stats.stages if stage.name == stats.bottleneck]
    if any(stage.processed + stage.failed < SETTLE_ITEMS for stage in main + named):
        return None
    return stats.bottleneck


def graph_order(pipeline: Pipeline) -> tuple[str, ...]:
    """Every stage's and junction's path in the order of the graph, for ``stage_rows``."""
    return tuple(path for path, _ in walk(pipeline._slots))


@dataclass
class _Step:
    """A stage or a junction of the graph, with the steps of each of a junction's branches."""

    path: str
    name: str
    rank: tuple[int, int]
    stage: StageStatistics | None = None
    junction: JunctionStatistics | None = None
    branches: dict[str, list[_Step]] = field(default_factory=dict)
    source: SourceStatistics | None = None
    """The step is a ``Sync`` source: the head of its branch."""


def stage_rows(stats: PipelineStatistics, depth: int = 0, order: Sequence[str] = ()) -> list[Row]:
    """The table rows; only the outer pipeline's bottleneck is marked.

    A junction's row comes before its branches' stages, indented under it like a nested
    pipeline's. ``order`` (``graph_order(pipeline)``) places each junction in the chain;
    without it a junction goes before its first branch stage.
    """
    bottleneck = settled_bottleneck(stats) if depth == 0 else None
    sources = {source.name: source for source in stats.sources}
    rows: list[Row] = []
    for step, indent, branch in _walk(_graph(stats, order), depth, "", sources):
        label = step.name if branch in ("", step.name) else f"{branch}/{step.name}"
        if step.source is not None:
            rows.append(_source_row(step.source, f"{_indent(indent)}▸ {step.source.name}"))
            continue
        if step.junction is not None:
            rows.append(_junction_row(step.junction, f"{_indent(indent)}⑂ {label}"))
            continue
        stage = step.stage
        assert stage is not None
        rows.append(
            Row(
                name=_indent(indent) + label,
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
            rows.extend(stage_rows(stage.child, indent + 1))
    return rows


def _indent(depth: int) -> str:
    return "  " * depth + ("└ " if depth else "")


def _graph(stats: PipelineStatistics, order: Sequence[str]) -> list[_Step]:
    """The main chain's steps, each junction's branches filled in from the paths."""
    known = {path: index for index, path in enumerate(order)}
    steps: list[_Step] = []
    for index, stage in enumerate(stats.stages):
        path = stage.path or stage.name
        steps.append(_Step(path, stage.name, (known.get(path, len(known)), index), stage=stage))
    junctions = {
        junction.path: _Step(
            junction.path,
            junction.name,
            (known.get(junction.path, len(known)), 0),
            junction=junction,
        )
        for junction in stats.junctions
    }
    main: list[_Step] = []
    for step in [*steps, *junctions.values()]:
        owner, key = _owner(step, junctions)
        if owner is None:
            main.append(step)
        else:
            owner.branches.setdefault(key, []).append(step)
    for junction in sorted(junctions.values(), key=lambda j: -j.path.count("/")):
        if junction.rank[0] == len(known):  # not in ``order``: before its first branch stage
            inside = [step.rank for chain in junction.branches.values() for step in chain]
            junction.rank = min(inside, default=(len(known), len(stats.stages)))
    return main


def _owner(step: _Step, junctions: dict[str, _Step]) -> tuple[_Step | None, str]:
    """The junction whose branch holds ``step`` and that branch's key (the longest
    junction path the step's path starts with: keys and names may contain ``/``)."""
    best: _Step | None = None
    for path, junction in junctions.items():
        if step.path.startswith(path + "/") and (best is None or len(path) > len(best.path)):
            best = junction
    if best is None or not step.path.endswith("/" + step.name):
        return None, ""
    return best, step.path[len(best.path) + 1 : -len(step.name) - 1]


def _walk(
    steps: list[_Step], depth: int, branch: str, sources: dict[str, SourceStatistics]
) -> Iterator[tuple[_Step, int, str]]:
    """(step, depth, branch key) in drawing order: each junction, then its branches (a
    ``Sync``'s each headed by its source)."""
    for step in sorted(steps, key=lambda step: step.rank):
        yield step, depth, branch
        is_sync = step.junction is not None and step.junction.kind == "sync"
        for key, chain in sorted(step.branches.items(), key=lambda kv: min(s.rank for s in kv[1])):
            if is_sync and key in sources:
                head = _Step(f"{step.path}/{key}", key, step.rank, source=sources[key])
                yield head, depth + 1, key
            yield from _walk(chain, depth + 1, key, sources)


def _junction_row(junction: JunctionStatistics, name: str) -> Row:
    return Row(
        name=f"{name} ({junction.kind})",
        processed=0,
        throughput=0.0,
        p50_ms=0.0,
        p99_ms=0.0,
        queue_depth=junction.pending,
        utilization_pct=0.0,
        bottleneck=False,
        junction=True,
        note=junction_note(junction),
    )


def _source_row(source: SourceStatistics, name: str) -> Row:
    return Row(
        name=f"{name} (source)",
        processed=source.accepted,
        throughput=0.0,
        p50_ms=0.0,
        p99_ms=0.0,
        queue_depth=source.in_flight,
        utilization_pct=0.0,
        bottleneck=False,
        note=source_note(source),
        source=True,
    )


def source_note(source: SourceStatistics) -> str:
    """What a source row says: its window, and what became of what it accepted."""
    parts = [f"cap {source.capacity}", f"completed {source.completed}"]
    if source.failed:
        parts.append(f"failed {source.failed}")
    decided = {"unmatched": source.unmatched, "late": source.late, "evicted": source.evicted}
    decided["other"] = max(0, source.dropped - sum(decided.values()))  # on_full, max_age, stop
    why = ", ".join(f"{kind} {count}" for kind, count in decided.items() if count)
    parts.append(f"dropped {source.dropped}" + (f" ({why})" if why else ""))
    if source.rejected:
        parts.append(f"rejected {source.rejected}")
    return "  ".join(parts)


MAX_KEYS_SHOWN = 4
"""A route's note names its busiest keys only, so a factory route stays one line."""


def junction_note(junction: JunctionStatistics) -> str:
    """What a junction row says: what a join waits on, a route's items per key, drops."""
    parts = []
    if junction.kind == "parallel" and junction.waited_on:
        branch, share = max(junction.waited_on.items(), key=lambda kv: kv[1])
        parts.append(f"waits on {branch} {share * 100:.0f}%")
    if junction.kind == "route" and junction.per_key:
        busiest = sorted(junction.per_key.items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{key} {count}" for key, count in busiest[:MAX_KEYS_SHOWN])
        more = len(busiest) - MAX_KEYS_SHOWN
        parts.append(f"per key: {shown}" + (f" +{more} more" if more > 0 else ""))
    if junction.kind == "sync":
        parts.extend(_sync_parts(junction))
    drops = {key: count for key, count in junction.dropped.items() if count}
    if junction.kind == "tap":
        drops = {key: junction.dropped.get(key, 0) for key in junction.branches}
    if drops:
        parts.append("dropped " + ", ".join(f"{key} {count}" for key, count in drops.items()))
    return "  ".join(parts)


def _sync_parts(junction: JunctionStatistics) -> list[str]:
    """A sync's sets per second, |stamp skew| and the latency it adds, all p99."""
    parts = [
        f"sets {junction.sets_per_second:.1f}/s",
        f"|skew| p99 {junction.skew.p99 * 1000:.1f} ms",
        f"decide_wait p99 {junction.decide_wait.p99 * 1000:.1f} ms",
    ]
    if junction.reused:
        parts.append(f"reused {junction.reused}")
    return parts


def table_lines(
    stats: PipelineStatistics, mark: str, order: Sequence[str] = ()
) -> list[tuple[tuple[str, ...], Row]]:
    """Each row's formatted cells, the bottleneck's marked with ``mark``; a junction row
    has its queue and its note only."""
    lines: list[tuple[tuple[str, ...], Row]] = []
    for row in stage_rows(stats, order=order):
        if row.junction:
            cells: tuple[str, ...] = (row.name, "", "", "", "", f"{row.queue_depth}", "", row.note)
        elif row.source:
            cells = (row.name, f"{row.processed}", "", "", "", f"{row.queue_depth}", "", row.note)
        else:
            cells = (
                row.name,
                f"{row.processed}",
                f"{row.throughput:.1f}",
                f"{row.p50_ms:.2f}",
                f"{row.p99_ms:.2f}",
                f"{row.queue_depth}",
                f"{row.utilization_pct:.0f}",
                mark if row.bottleneck else "",
            )
        lines.append((cells, row))
    return lines


def plain_table(
    stats: PipelineStatistics, title: str, totals: str, order: Sequence[str] = ()
) -> str:
    """The table as aligned text, for logs, pipes and terminals without rich."""
    body = [COLUMNS, *(cells for cells, _ in table_lines(stats, BOTTLENECK_MARK, order))]
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


def rich_view(
    stats: PipelineStatistics, title: str, totals: str, order: Sequence[str] = ()
) -> RenderableType:
    """The same table for rich: the bottleneck row in bold red, junction and source rows
    in cyan (text as is, no markup)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table()
    for col, header in enumerate(COLUMNS):
        table.add_column(header, justify="left" if col in LEFT_ALIGNED else "right")
    for cells, row in table_lines(stats, RICH_BOTTLENECK_MARK, order):
        style = "bold red" if row.bottleneck else "cyan" if row.junction or row.source else None
        table.add_row(*(Text(cell) for cell in cells), style=style)
    return Group(Text(title, style="bold"), table, Text(totals))
