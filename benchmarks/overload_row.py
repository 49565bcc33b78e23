"""Workload (8) of the suite: a short ``overload.py`` run, drop_oldest against an unbounded chain.

The two are not the same service: ours drops the oldest waiting items to keep memory and
latency bounded (lossy), the unbounded queue chain keeps every item and lets its backlog
grow (lossless). So the row says "lossy vs lossless" instead of a speed ratio, and its
target is absolute: RSS growth, p99 latency and every accepted item accounted for.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from harness import error_text
from report import Row, Section, Verdict, fmt_ms

if TYPE_CHECKING:
    from workloads import Sizes

TARGET = "RSS growth, p99 and accounting"


def overload(sizes: Sizes) -> Section:
    """Run ours (drop_oldest) and the unbounded chain for ``overload_seconds`` each."""
    seconds = sizes.overload_seconds
    section = Section("8", f"overload (overload.py, {seconds:g} s, source 3x too fast, 1 MB items)")
    ours_label = "ours, capacity=4, on_full=drop_oldest"
    try:
        module = import_module("overload")
        ours_run = module.run_pipeline("drop_oldest", "drop_oldest", seconds)
        available = module.available_bytes()
        cap = module.BASELINE_RSS_CAP
        cap = cap if available is None else min(cap, available // 2)
        base_run = module.run_baseline("unbounded", seconds, cap)
    except Exception as exc:
        row = Row(ours_label, note=f"error: {error_text(exc)}")
        row.verdicts.append(Verdict(ours_label, TARGET, None, "FAIL", error_text(exc)))
        section.rows.append(row)
        return section
    mb = float(module.MB)
    for label, buffer, kind, run in (
        ("unbounded queue.Queue() thread chain", "unbounded queues", "lossless", base_run),
        (ours_label, "capacity 4, drops the oldest", "lossy", ours_run),
    ):
        section.rows.append(
            Row(
                label,
                buffer,
                run.completed / run.source.seconds if run.source.seconds else None,
                p50_ms=run.latency_ms(0.50),
                p99_ms=run.latency_ms(0.99),
                ratio=kind,
                note=f"RSS growth {run.rss_growth / mb:.1f} MB; completed {run.completed}, "
                f"dropped {run.dropped}, left {run.unfinished}",
            )
        )
    rss_target, p99_target = float(module.RSS_TARGET_MB), float(module.P99_TARGET_MS)
    growth, p99 = ours_run.rss_growth / mb, ours_run.latency_ms(0.99)
    ok = growth < rss_target and p99 < p99_target and ours_run.balanced
    section.rows[-1].verdicts.append(
        Verdict(
            ours_label,
            f"RSS growth < {rss_target:.0f} MB, p99 < {p99_target:.0f} ms, every item accounted for",
            None,
            "PASS" if ok else "FAIL",
            f"lossy vs lossless: RSS +{growth:.1f} MB, p99 {fmt_ms(p99)} ms, balanced "
            f"{ours_run.balanced}; the lossless chain: RSS +{base_run.rss_growth / mb:.0f} MB, "
            f"p99 {fmt_ms(base_run.latency_ms(0.99))} ms",
        )
    )
    return section
