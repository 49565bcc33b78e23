"""Benchmark: a bounded pipeline keeps memory and latency flat when the source is 3x too fast.

Four stages each sleep 5 ms (a sleep releases the GIL, like I/O or a native call), so the
pipeline can take about 200 items/s. A source thread offers 600 items/s on a drift-free
schedule (the n-th offer is due at start + n/rate), each item a fresh 1 MB payload, for
``--duration`` seconds. Three runs, measured in this process one after the other:

a) ``parallelize(capacity=4, on_full="drop_oldest")``: the pipeline keeps the newest items
   and drops the oldest not started yet, so memory and end-to-end latency stay bounded.
   Targets: peak RSS growth < 50 MB, p99 latency < 60 ms, and every accepted item is
   accounted for (accepted == completed + failed + dropped).
b) ``parallelize(capacity=4, on_full="block")`` with a long input timeout: back-pressure
   slows the source down to the pipeline's pace and nothing is dropped.
c) the baseline: four threads joined by unbounded ``queue.Queue()``s, fed the same way.
   Its backlog, and with it memory and latency, grows for as long as the overload lasts
   (feeding stops early if its RSS growth passes about 2 GB, to keep the machine safe).
   Its source may fall short of the requested rate: every payload it queues lands on
   fresh memory that the kernel must first fault in, which the bounded runs never pay.

RSS is this process's resident set size, sampled from ``/proc/self/statm`` every 10 ms on
a sampler thread (Linux); growth is the peak minus the RSS just before the run started.
Latency is measured here, from the ``submit()`` call to the future being resolved, and is
printed next to the library's own ``statistics().latency``.

    python benchmarks/overload.py                  # print the figures
    python benchmarks/overload.py --duration 2     # a shorter run
    python benchmarks/overload.py --check          # also exit 1 if a target is missed
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Literal

import pystream_actors as ps

STAGES = 4
STAGE_SECONDS = 0.005
CAPACITY = 4
OVERLOAD = 3.0
PIPELINE_RATE = 1 / STAGE_SECONDS
"""Items per second the pipeline can take: the rate of its slowest stage."""
OFFER_RATE = OVERLOAD * PIPELINE_RATE
PAYLOAD_BYTES = 1_000_000
MB = 1_000_000
SAMPLE_SECONDS = 0.010
BLOCK_TIMEOUT = 60.0
"""How long ``on_full="block"`` may keep the source waiting for room."""
RSS_TARGET_MB = 50.0
P99_TARGET_MS = 60.0
SLOWED_TARGET = 0.5
"""``block`` must hold the source below this fraction of the requested rate."""
BASELINE_RSS_CAP = 2_000_000_000

OnFull = Literal["block", "reject", "drop_oldest"]
Job = tuple[float, bytearray]
"""A baseline item: when it was offered, and its payload."""

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def sleep_stage(data: Any) -> Any:
    """Stand-in for 5 ms of work that releases the GIL; returns its input unchanged."""
    time.sleep(STAGE_SECONDS)
    return data


def rss_bytes() -> int:
    """This process's resident set size, in bytes (Linux)."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE_BYTES


def available_bytes() -> int | None:
    """The memory the kernel says is available to new allocations, if it says."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values; NaN when there are none."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


class RssSampler:
    """Samples the RSS every ``SAMPLE_SECONDS`` on its own thread and keeps the peak."""

    def __init__(self) -> None:
        self.base = 0
        self.peak = 0
        self.latest = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self.base = self.peak = self.latest = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sample()

    def _sample(self) -> None:
        rss = rss_bytes()
        self.latest = rss
        if rss > self.peak:
            self.peak = rss

    @property
    def growth(self) -> int:
        """Peak RSS minus the RSS when sampling started."""
        return self.peak - self.base

    @property
    def latest_growth(self) -> int:
        """The last sample minus the RSS when sampling started."""
        return self.latest - self.base


@dataclass(frozen=True)
class SourceReport:
    """What the source managed to offer."""

    offered: int
    seconds: float
    stopped_early: bool

    @property
    def rate(self) -> float:
        """Offers per second actually achieved."""
        return self.offered / self.seconds if self.seconds > 0 else 0.0


def feed(
    offer: Callable[[bytearray], None],
    rate: float,
    duration: float,
    stop_early: Callable[[], bool] | None = None,
) -> SourceReport:
    """Offer a fresh payload every 1/``rate`` s for ``duration`` s, from a source thread.

    The schedule is drift-free: the n-th offer is due at start + n/rate, so a late offer
    (one that blocked) is followed by the next ones at once until the source catches up.
    """
    reports: list[SourceReport] = []
    errors: list[BaseException] = []

    def run() -> None:
        ticker = threading.Event()  # never set: its wait() is the pacing wait
        start = time.perf_counter()
        end = start + duration
        offered = 0
        stopped_early = False
        try:
            while True:
                due = start + offered / rate
                if due >= end:
                    break
                remaining = due - time.perf_counter()
                if remaining > 0:
                    ticker.wait(remaining)
                if time.perf_counter() >= end:
                    break
                if stop_early is not None and stop_early():
                    stopped_early = True
                    break
                offer(bytearray(PAYLOAD_BYTES))
                offered += 1
        except BaseException as exc:
            errors.append(exc)
        reports.append(SourceReport(offered, time.perf_counter() - start, stopped_early))

    thread = threading.Thread(target=run, name="source")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return reports[0]


class Outcomes:
    """Resolves each future into counts and latencies, from the thread that resolved it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.from_offer: list[float] = []
        self.from_acceptance: list[float] = []
        self.completed = 0
        self.failed = 0
        self.dropped = 0
        self.other = 0

    def watch(self, future: Future[Any], offered_at: float, accepted_at: float) -> None:
        """Count ``future``'s outcome when it resolves; never keeps its result."""

        def done(resolved: Future[Any]) -> None:
            now = time.perf_counter()
            error = resolved.exception()
            with self._lock:
                if error is None:
                    self.completed += 1
                    self.from_offer.append(now - offered_at)
                    self.from_acceptance.append(now - accepted_at)
                elif isinstance(error, ps.ItemDropped):
                    self.dropped += 1
                elif isinstance(error, ps.StageError):
                    self.failed += 1
                else:
                    self.other += 1

        future.add_done_callback(done)


@dataclass(frozen=True)
class RunResult:
    """One run's figures."""

    label: str
    source: SourceReport
    refused: int
    accepted: int
    completed: int
    failed: int
    dropped: int
    unfinished: int
    """Items still queued when the run ended (the baseline only)."""
    rss_growth: int
    from_offer: list[float]
    """Seconds from the offer (the ``submit()`` call) to the output, sorted."""
    from_acceptance: list[float]
    """Seconds from acceptance (``submit()`` returned) to the output, sorted."""
    stats: ps.PipelineStatistics | None = None

    @property
    def balanced(self) -> bool:
        """Every accepted item was accounted for, and every offer accepted or refused."""
        return (
            self.accepted == self.completed + self.failed + self.dropped + self.unfinished
            and self.source.offered == self.accepted + self.refused
        )

    def latency_ms(self, fraction: float, from_offer: bool = True) -> float:
        """A percentile of this run's own latency measurement, in milliseconds."""
        values = self.from_offer if from_offer else self.from_acceptance
        return percentile(values, fraction) * 1000


def build_pipeline() -> ps.Pipeline:
    """Four 5 ms stages, not started yet."""
    pipeline = ps.Pipeline()
    for index in range(1, STAGES + 1):
        pipeline.add(sleep_stage, f"Sleep{index}")
    return pipeline


def run_pipeline(label: str, on_full: OnFull, duration: float) -> RunResult:
    """Overload a ``parallelize(capacity=4, on_full=...)`` pipeline for ``duration`` s."""
    gc.collect()
    outcomes = Outcomes()
    refused = 0
    pipeline = build_pipeline()
    with RssSampler() as rss:
        try:
            pipeline.parallelize(capacity=CAPACITY, on_full=on_full, input_timeout=BLOCK_TIMEOUT)
            handle = pipeline.handle

            def offer(payload: bytearray) -> None:
                nonlocal refused
                offered_at = time.perf_counter()
                try:
                    future = handle.submit(payload)
                except ps.PipelineFull:
                    refused += 1
                    return
                outcomes.watch(future, offered_at, time.perf_counter())

            source = feed(offer, OFFER_RATE, duration)
        finally:
            pipeline.cleanup()  # drains: every accepted item is resolved after this
    stats = pipeline.statistics()
    if outcomes.other:
        raise RuntimeError(f"{label}: {outcomes.other} futures failed unexpectedly")
    if (outcomes.completed, outcomes.dropped, outcomes.failed) != (
        stats.completed,
        stats.dropped,
        stats.failed,
    ):
        raise RuntimeError(
            f"{label}: futures say completed/dropped/failed = {outcomes.completed}/"
            f"{outcomes.dropped}/{outcomes.failed}, statistics() says "
            f"{stats.completed}/{stats.dropped}/{stats.failed}"
        )
    return RunResult(
        label=label,
        source=source,
        refused=refused,
        accepted=stats.accepted,
        completed=stats.completed,
        failed=stats.failed,
        dropped=stats.dropped,
        unfinished=0,
        rss_growth=rss.growth,
        from_offer=sorted(outcomes.from_offer),
        from_acceptance=sorted(outcomes.from_acceptance),
        stats=stats,
    )


def run_baseline(label: str, duration: float, rss_cap: int) -> RunResult:
    """Four threads joined by unbounded queues, fed the same way for the same time.

    Feeding stops early once the RSS growth passes ``rss_cap``; the threads go on working
    until ``duration`` is over, then the backlog is discarded (counted as unfinished).
    """
    gc.collect()
    abort = threading.Event()
    inboxes: list[queue.Queue[Job | None]] = [queue.Queue() for _ in range(STAGES)]
    latencies: list[float] = []

    def worker(index: int) -> None:
        inbox = inboxes[index]
        outbox = inboxes[index + 1] if index + 1 < STAGES else None
        while True:
            job = inbox.get()
            if job is None:
                if outbox is not None:
                    outbox.put(None)
                return
            if abort.is_set():
                continue  # the run is over: discard the backlog
            offered_at, payload = job
            job = (offered_at, sleep_stage(payload))
            if outbox is not None:
                outbox.put(job)
            else:
                latencies.append(time.perf_counter() - offered_at)

    with RssSampler() as rss:
        threads = [
            threading.Thread(target=worker, args=(index,), name=f"baseline-{index + 1}")
            for index in range(STAGES)
        ]
        for thread in threads:
            thread.start()
        try:
            start = time.perf_counter()
            source = feed(
                lambda payload: inboxes[0].put((time.perf_counter(), payload)),
                OFFER_RATE,
                duration,
                stop_early=lambda: rss.latest_growth > rss_cap,
            )
            remaining = start + duration - time.perf_counter()
            if remaining > 0:
                threading.Event().wait(remaining)  # let it work for the whole duration
        finally:
            completed = len(latencies)
            abort.set()
            inboxes[0].put(None)
            for thread in threads:
                thread.join()
    done = sorted(latencies[:completed])
    return RunResult(
        label=label,
        source=source,
        refused=0,
        accepted=source.offered,
        completed=completed,
        failed=0,
        dropped=0,
        unfinished=source.offered - completed,
        rss_growth=rss.growth,
        from_offer=done,
        from_acceptance=done,
    )


def fmt_ms(value: float) -> str:
    """Milliseconds with a sensible number of digits."""
    if math.isnan(value):
        return "-"
    return f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def fmt_ratio(ours: float, theirs: float) -> str:
    """How many times larger ``theirs`` is."""
    if ours <= 0 or math.isnan(ours) or math.isnan(theirs):
        return "n/a"
    return f"{theirs / ours:.0f}x"


def print_table(runs: Sequence[RunResult]) -> None:
    """One row per run: counts, memory and latency."""
    header = (
        f"{'run':<31} {'offered':>7} {'rate/s':>7} {'accepted':>8} {'completed':>9} "
        f"{'dropped':>7} {'refused':>7} {'left':>5} {'RSS growth':>11} {'p50 ms':>7} {'p99 ms':>7}"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        print(
            f"{run.label:<31} {run.source.offered:>7} {run.source.rate:>7.1f} "
            f"{run.accepted:>8} {run.completed:>9} {run.dropped:>7} {run.refused:>7} "
            f"{run.unfinished:>5} {run.rss_growth / MB:>8.1f} MB "
            f"{fmt_ms(run.latency_ms(0.50)):>7} {fmt_ms(run.latency_ms(0.99)):>7}"
        )
    print(
        "(p50/p99: measured here, from the submit() call to the future resolving, over "
        "completed items; left: still queued when the run ended)"
    )


def print_details(runs: Sequence[RunResult]) -> None:
    """The library's own latency figures, and how each source fared."""
    for run in runs:
        print(f"{run.label}:")
        print(
            f"  source offered {run.source.rate:.1f}/s of {OFFER_RATE:.0f}/s requested "
            f"({run.source.rate / OFFER_RATE:.0%}), for {run.source.seconds:.2f} s"
            + (" - stopped early: RSS cap reached" if run.source.stopped_early else "")
        )
        print(
            f"  latency from acceptance (submit() returned): "
            f"p50 {fmt_ms(run.latency_ms(0.50, from_offer=False))} ms, "
            f"p99 {fmt_ms(run.latency_ms(0.99, from_offer=False))} ms"
        )
        if run.stats is not None:
            lat = run.stats.latency
            print(
                f"  library statistics().latency: mean {lat.mean * 1000:.1f} ms, "
                f"p50 {lat.p50 * 1000:.1f}, p90 {lat.p90 * 1000:.1f}, "
                f"p99 {lat.p99 * 1000:.1f}, max {lat.max * 1000:.1f} ms; "
                f"dropped_on_full {run.stats.dropped_on_full}, "
                f"bottleneck {run.stats.bottleneck}"
            )
        if run.unfinished:
            print(
                f"  backlog when the run ended: {run.unfinished} items "
                f"(~{run.unfinished * STAGE_SECONDS:.1f} s of work, ~{run.unfinished} MB); "
                "its p99 only counts items that got through, the backlog would wait longer"
            )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the three cases, print the figures, and judge the targets only when asked."""
    args = parse_args(argv)
    duration: float = args.duration
    available = available_bytes()
    rss_cap = BASELINE_RSS_CAP if available is None else min(BASELINE_RSS_CAP, available // 2)
    print(
        f"{STAGES} stages x {STAGE_SECONDS * 1000:.0f} ms sleep (capacity ~{PIPELINE_RATE:.0f} "
        f"items/s); the source offers {OFFER_RATE:.0f} items/s ({OVERLOAD:.0f}x) of "
        f"{PAYLOAD_BYTES / MB:.0f} MB each for {duration:g} s"
    )
    cases: list[tuple[str, Callable[[str], RunResult]]] = [
        (
            f"a) drop_oldest, capacity {CAPACITY}",
            lambda label: run_pipeline(label, "drop_oldest", duration),
        ),
        (f"b) block, capacity {CAPACITY}", lambda label: run_pipeline(label, "block", duration)),
        ("c) unbounded queue.Queue chain", lambda label: run_baseline(label, duration, rss_cap)),
    ]
    runs: list[RunResult] = []
    for label, run in cases:
        started = time.perf_counter()
        runs.append(run(label))
        print(f"  ran {label} in {time.perf_counter() - started:.1f} s", flush=True)
    ours, blocking, baseline = runs
    print()
    print_table(runs)
    print()
    print_details(runs)
    print()
    print(
        f"peak RSS growth: drop_oldest {ours.rss_growth / MB:.1f} MB, block "
        f"{blocking.rss_growth / MB:.1f} MB, unbounded {baseline.rss_growth / MB:.1f} MB "
        f"-> unbounded/drop_oldest {fmt_ratio(ours.rss_growth, baseline.rss_growth)}, "
        f"unbounded/block {fmt_ratio(blocking.rss_growth, baseline.rss_growth)}"
    )
    print(
        f"p99 latency:     drop_oldest {fmt_ms(ours.latency_ms(0.99))} ms, block "
        f"{fmt_ms(blocking.latency_ms(0.99))} ms, unbounded "
        f"{fmt_ms(baseline.latency_ms(0.99))} ms -> unbounded/drop_oldest "
        f"{fmt_ratio(ours.latency_ms(0.99), baseline.latency_ms(0.99))}"
    )
    print()
    targets = [
        (
            ours.rss_growth / MB < RSS_TARGET_MB,
            f"a) peak RSS growth {ours.rss_growth / MB:.1f} MB < {RSS_TARGET_MB:.0f} MB",
        ),
        (
            ours.latency_ms(0.99) < P99_TARGET_MS,
            f"a) p99 latency {fmt_ms(ours.latency_ms(0.99))} ms < {P99_TARGET_MS:.0f} ms",
        ),
        (
            ours.balanced,
            f"a) accepted {ours.accepted} == completed {ours.completed} + failed "
            f"{ours.failed} + dropped {ours.dropped}; offered {ours.source.offered} == "
            f"accepted + refused {ours.refused}",
        ),
        (
            blocking.dropped == 0 and blocking.refused == 0,
            f"b) nothing dropped ({blocking.dropped}) or refused ({blocking.refused})",
        ),
        (
            blocking.source.rate < SLOWED_TARGET * OFFER_RATE,
            f"b) the source was slowed: {blocking.source.rate:.1f}/s < "
            f"{SLOWED_TARGET:.0%} of the {OFFER_RATE:.0f}/s requested",
        ),
        (
            blocking.balanced,
            f"b) accepted {blocking.accepted} == completed {blocking.completed} + failed "
            f"{blocking.failed} + dropped {blocking.dropped}",
        ),
    ]
    for ok, text in targets:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    failed = [text for ok, text in targets if not ok]
    if args.check and failed:
        print(f"FAIL: {len(failed)} target(s) missed", file=sys.stderr)
        return 1
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--duration",
        type=float,
        default=10.0,
        help="seconds the source offers items in each run (default 10)",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    if not args.duration > 0:
        parser.error("--duration must be a positive number of seconds")
    return args


if __name__ == "__main__":
    sys.exit(main())
