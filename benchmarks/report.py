"""The suite's one table: a row per variant, each carrying its own targets.

Every ratio compares two rows measured in the same run, so it does not depend on the
machine's speed. A row's ratio column compares it with its section's reference row;
each of its targets is printed on a line of its own under it (``->``) and again in the
summary, with the ratio against the row the target names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness import Latency, Outcome, Throughput, ratio

if TYPE_CHECKING:
    from workloads import Comparison, Target, Variant


@dataclass
class Verdict:
    """One target of one row, judged: PASS, FAIL or n/a."""

    row: str
    target: str
    ratio: float | None
    result: str
    detail: str = ""


@dataclass
class Row:
    """One variant's line of the table."""

    label: str
    buffer: str = ""
    items_per_s: float | None = None
    us_per_hop: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    ratio: str = ""
    note: str = ""
    verdicts: list[Verdict] = field(default_factory=list)


@dataclass
class Section:
    """One workload: its title, what the ratio column compares with, its rows."""

    key: str
    title: str
    ratios: str = ""
    rows: list[Row] = field(default_factory=list)


def section(workload: Comparison, outcomes: dict[str, Outcome[Any]], title: str) -> Section:
    """The rows of a measured comparison, ratios and verdicts included."""
    metric = "p50" if workload.measure == "latency" else "items/s"
    metric = "us/hop" if workload.per_hop else metric
    result = Section(workload.key, title, f"{metric} vs {workload.reference}")
    reference = outcomes[workload.reference].value
    hops = len(workload.stages)
    for variant in workload.variants:
        outcome = outcomes[variant.label]
        row = Row(variant.label, variant.buffer, note=_note(variant, outcome))
        value = outcome.value
        if isinstance(value, Throughput):
            row.items_per_s = value.items_per_s
            row.us_per_hop = value.us_per_hop(hops) if workload.per_hop else None
        elif isinstance(value, Latency):
            row.p50_ms, row.p99_ms = value.ms(0.50), value.ms(0.99)
        if value is not None and reference is not None and variant.label != workload.reference:
            row.ratio = f"{ratio(metric, value, reference):.2f}x"
        row.verdicts = [judge(variant.label, target, outcomes) for target in variant.targets]
        result.rows.append(row)
    return result


def _note(variant: Variant, outcome: Outcome[Any]) -> str:
    notes = [variant.note, outcome.note]
    value = outcome.value
    if isinstance(value, Throughput):
        if not value.in_order:
            notes.append("OUT OF ORDER")
        if value.delivered < value.items:
            notes.append(f"lossy: {value.delivered} of {value.items} outputs delivered")
    return "; ".join(note for note in notes if note)


def judge(label: str, target: Target, outcomes: dict[str, Outcome[Any]]) -> Verdict:
    """The target's verdict: FAIL on an error, n/a when a side cannot run, else by ratio."""
    sign = ">=" if target.at_least else "<="
    name = f"{target.metric} {sign} {target.ratio}x {target.baseline}"
    mine, base = outcomes[label], outcomes[target.baseline]
    for who, outcome in (("this row", mine), (target.baseline, base)):
        if outcome.failed:
            return Verdict(label, name, None, "FAIL", f"{who}: {outcome.note}")
        if outcome.value is None:
            return Verdict(label, name, None, "n/a", f"{who}: {outcome.note}")
    value = ratio(target.metric, mine.value, base.value)  # type: ignore[arg-type]
    ok = value >= target.ratio if target.at_least else value <= target.ratio
    detail = ""
    if isinstance(mine.value, Throughput) and not mine.value.in_order:
        ok, detail = False, "outputs out of order"
    return Verdict(label, name, value, "PASS" if ok else "FAIL", detail)


def fmt_rate(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}" if value >= 1000 else f"{value:.1f}"


def fmt_us(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return ""
    if value < 0.1:
        return f"{value:.4f}"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


COLUMNS = (
    ("workload / variant", 40, "<"),
    ("buffer between stages", 30, "<"),
    ("items/s", 9, ">"),
    ("us/hop", 8, ">"),
    ("p50 ms", 8, ">"),
    ("p99 ms", 8, ">"),
    ("ratio", 7, ">"),
    ("note", 0, "<"),
)


def _line(cells: Sequence[str]) -> str:
    parts = [
        f"{cell:{align}{width}}" if width else cell
        for (_, width, align), cell in zip(COLUMNS, cells)
    ]
    return "  ".join(parts).rstrip()


def _verdict_line(verdict: Verdict) -> str:
    value = "" if verdict.ratio is None else f": {verdict.ratio:.2f}x"
    detail = f" ({verdict.detail})" if verdict.detail else ""
    return f"{verdict.result:<5} {verdict.target}{value}{detail}"


def print_table(sections: Sequence[Section]) -> None:
    """The table, then every target's verdict once more as a summary."""
    header = _line([name for name, _, _ in COLUMNS])
    rule = "-" * max(len(header), 140)
    print(header)
    print(rule)
    for part in sections:
        ratios = f"  [ratio: {part.ratios}]" if part.ratios else ""
        print(f"({part.key}) {part.title}{ratios}")
        for row in part.rows:
            figures = (fmt_rate(row.items_per_s), fmt_us(row.us_per_hop))
            latency = (fmt_ms(row.p50_ms), fmt_ms(row.p99_ms))
            print(_line(["  " + row.label, row.buffer, *figures, *latency, row.ratio, row.note]))
            for verdict in row.verdicts:
                print(f"      -> {_verdict_line(verdict)}")
    print(rule)
    for part in sections:
        for row in part.rows:
            for verdict in row.verdicts:
                print(f"({part.key}) {row.label}: {_verdict_line(verdict)}")
