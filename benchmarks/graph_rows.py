"""Workload (9) of the suite: what a junction costs and what a ``Parallel`` buys.

(9a) Two 10 ms GIL-releasing branches (sleeps) joined by ``ps.Parallel`` in lock-step
(``serialize()``, one item inside at a time): the per-item latency should be about the
slower branch's, not the sum. Baselines in the same run: one 10 ms stage alone, and the
two stages in sequence (twice as long). Target: Parallel p50 <= 1.15x the single stage.

(9b) The price of a junction on the no-op chain: four no-op stages against three no-op
stages and a ``Parallel`` with one no-op branch (the same stage count, one step a
junction), fed as fast as possible and read through ``results()``. Target: the junction
adds at most 30 us per item. Rounds alternate between the two and the median of the
paired per-item differences is judged.
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Any

from harness import error_text
from report import Row, Section, Verdict, fmt_ms

import pystream_actors as ps

if TYPE_CHECKING:
    from workloads import Sizes

LATENCY_TARGET = 1.15
JUNCTION_TARGET_US = 30.0


def _sleep_10ms(x: Any) -> Any:
    time.sleep(0.010)
    return x


def _noop(x: Any) -> Any:
    return x


def _latencies(pipeline: ps.Pipeline, samples: int) -> list[float]:
    handle = pipeline.handle
    for i in range(5):
        handle.ask(i, timeout=30)
    seconds = []
    for i in range(samples):
        started = time.perf_counter()
        handle.ask(i, timeout=30)
        seconds.append(time.perf_counter() - started)
    return sorted(seconds)


def _quantile(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(fraction * len(values)))]


def _latency_rows(samples: int) -> list[tuple[str, str, list[float]]]:
    single = ps.Pipeline()
    single.add(_sleep_10ms, "Slow")
    pair = ps.Pipeline()
    pair.add(_sleep_10ms, "First")
    pair.add(_sleep_10ms, "Second")
    fork = ps.Pipeline()
    fork.add(ps.Parallel(a=_sleep_10ms, b=_sleep_10ms), "Both")
    rows = []
    for label, pipeline in (
        ("one 10 ms stage", single),
        ("two 10 ms stages in sequence", pair),
        ("ours: Parallel(a=10 ms, b=10 ms)", fork),
    ):
        with pipeline.serialize():
            rows.append((label, "serialize(): 1 item inside", _latencies(pipeline, samples)))
    return rows


def _per_item_us(pipeline: ps.Pipeline, items: int) -> float:
    handle = pipeline.handle
    with handle.results(timeout=30) as reader:
        started = time.perf_counter()
        for i in range(items):
            handle.tell(i, timeout=30)
        for _ in range(items):
            next(reader)
        return (time.perf_counter() - started) / items * 1e6


def _junction_cost(items: int, rounds: int) -> tuple[float, float, float]:
    plain = ps.Pipeline()
    for i in range(4):
        plain.add(_noop, f"S{i}")
    forked = ps.Pipeline()
    for i in range(3):
        forked.add(_noop, f"S{i}")
    forked.add(ps.Parallel(only=_noop), "Fork")
    plain.parallelize(capacity=64, results_buffer=items)
    forked.parallelize(capacity=64, results_buffer=items)
    try:
        plain_us, forked_us, differences = [], [], []
        for _ in range(rounds):
            a = _per_item_us(plain, items)
            b = _per_item_us(forked, items)
            plain_us.append(a)
            forked_us.append(b)
            differences.append(b - a)
        return (
            statistics.median(plain_us),
            statistics.median(forked_us),
            statistics.median(differences),
        )
    finally:
        plain.cleanup()
        forked.cleanup()


def graphs(sizes: Sizes) -> Section:
    """Both measurements, as one section of the table."""
    samples = max(20, sizes.latency // 10)
    section = Section("9", f"graphs: Parallel latency ({samples} samples), junction cost")
    try:
        rows = _latency_rows(samples)
        single_p50 = _quantile(rows[0][2], 0.5)
        for label, buffer, values in rows:
            p50 = _quantile(values, 0.5)
            section.rows.append(
                Row(
                    label,
                    buffer,
                    p50_ms=p50 * 1000,
                    p99_ms=_quantile(values, 0.99) * 1000,
                    ratio=f"{p50 / single_p50:.2f}x",
                )
            )
        fork_p50 = _quantile(rows[2][2], 0.5)
        ratio = fork_p50 / single_p50
        section.rows[-1].verdicts.append(
            Verdict(
                rows[2][0],
                f"p50 <= {LATENCY_TARGET}x one 10 ms stage",
                ratio,
                "PASS" if ratio <= LATENCY_TARGET else "FAIL",
                f"{fmt_ms(fork_p50 * 1000)} ms against {fmt_ms(single_p50 * 1000)} ms; "
                "in sequence it takes 2x",
            )
        )
        plain_us, forked_us, extra = _junction_cost(sizes.overhead, sizes.rounds)
        section.rows.append(
            Row("ours: 4 no-op stages", "capacity 64", 1e6 / plain_us, plain_us / 4)
        )
        row = Row(
            "ours: 3 no-op stages + Parallel(one no-op branch)",
            "capacity 64",
            1e6 / forked_us,
            forked_us / 4,
            note=f"the junction adds {extra:.1f} us per item (median of paired rounds)",
        )
        row.verdicts.append(
            Verdict(
                row.label,
                f"a junction adds <= {JUNCTION_TARGET_US:.0f} us per item",
                None,
                "PASS" if extra <= JUNCTION_TARGET_US else "FAIL",
                f"{extra:.1f} us per item",
            )
        )
        section.rows.append(row)
    except Exception as exc:
        row = Row("graphs", note=f"error: {error_text(exc)}")
        row.verdicts.append(Verdict("graphs", "graph rows", None, "FAIL", error_text(exc)))
        section.rows.append(row)
    return section
