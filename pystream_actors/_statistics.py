"""Always-on statistics per stage and per pipeline, and their immutable snapshots.

Recording is a handful of additions on the thread that owns the counters; snapshots
are taken by any thread and feed every view (``statistics()``, profiles, the CLI).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

from ._histogram import Histogram

RATE_WINDOW_SECONDS = 10
"""Throughput and utilization are measured over this sliding window."""


@dataclass(frozen=True)
class Percentiles:
    """Summary of a duration distribution, in seconds."""

    mean: float
    p50: float
    p90: float
    p99: float
    max: float

    @staticmethod
    def of(histogram: Histogram) -> Percentiles:
        return Percentiles(
            mean=histogram.mean,
            p50=histogram.percentile(0.50),
            p90=histogram.percentile(0.90),
            p99=histogram.percentile(0.99),
            max=histogram.max,
        )


@dataclass(frozen=True)
class StageStatistics:
    """A snapshot of one stage's counters."""

    name: str
    processed: int
    failed: int
    dropped: int
    restarts: int
    queue_depth: int
    service_time: Percentiles
    wait_time: Percentiles
    throughput: float
    """Items per second over the last ``RATE_WINDOW_SECONDS``."""
    utilization: float
    """Fraction of the recent window the stage spent working (0..1)."""
    mean_throughput: float
    """Items per second from the first item to the last one."""
    child: Optional[PipelineStatistics] = None
    """The statistics of a nested pipeline added with ``as_stage()``."""


@dataclass(frozen=True)
class PipelineStatistics:
    """A snapshot of a whole pipeline, with one entry per stage in order."""

    mode: str
    accepted: int
    completed: int
    failed: int
    dropped: int
    in_flight: int
    latency: Percentiles
    """End-to-end time from acceptance to the final output."""
    throughput: float
    mean_throughput: float
    stages: tuple[StageStatistics, ...] = field(default_factory=tuple)
    dropped_on_full: int = 0
    """Items the ``drop_oldest`` policy dropped (part of ``dropped``)."""
    dropped_by_deadline: int = 0
    """Items a stage dropped because they were older than ``max_age`` (part of ``dropped``)."""
    results_dropped: int = 0
    """Outputs pushed out of the ``results()`` buffer before anyone read them."""
    bottleneck: Optional[str] = None
    """The stage that limits throughput: the one busiest over the recent window."""

    def stage(self, name: str) -> StageStatistics:
        """The snapshot of the stage called ``name``."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"no stage named {name!r}; stages are {[s.name for s in self.stages]}")


class RateWindow:
    """Per-second bins over a sliding window: recent throughput and busy time."""

    __slots__ = ("_stamps", "_counts", "_busy")

    def __init__(self) -> None:
        self._stamps = [-1] * RATE_WINDOW_SECONDS
        self._counts = [0] * RATE_WINDOW_SECONDS
        self._busy = [0.0] * RATE_WINDOW_SECONDS

    def record(self, now: float, busy: float) -> None:
        second = int(now)
        slot = second % RATE_WINDOW_SECONDS
        if self._stamps[slot] != second:
            self._stamps[slot] = second
            self._counts[slot] = 0
            self._busy[slot] = 0.0
        self._counts[slot] += 1
        self._busy[slot] += busy

    def add(self, other: RateWindow) -> None:
        """Fold ``other``'s bins into these (bins of the same second add up)."""
        for slot in range(RATE_WINDOW_SECONDS):
            if other._stamps[slot] > self._stamps[slot]:
                self._stamps[slot] = other._stamps[slot]
                self._counts[slot] = other._counts[slot]
                self._busy[slot] = other._busy[slot]
            elif other._stamps[slot] == self._stamps[slot] >= 0:
                self._counts[slot] += other._counts[slot]
                self._busy[slot] += other._busy[slot]

    def rates(self, now: float, since: float) -> tuple[float, float]:
        """(items per second, busy fraction) over the window, or since ``since`` if later."""
        oldest = int(now) - RATE_WINDOW_SECONDS + 1
        count = 0
        busy = 0.0
        for slot in range(RATE_WINDOW_SECONDS):
            if self._stamps[slot] >= oldest:
                count += self._counts[slot]
                busy += self._busy[slot]
        span = min(float(RATE_WINDOW_SECONDS), now - max(since, oldest))
        if span <= 0.0:
            return 0.0, 0.0
        return count / span, min(1.0, busy / span)


class StageCounters:
    """The counters one stage actor writes as it works."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.processed = 0
        self.failed = 0
        self.dropped = 0
        self.restarts = 0
        self.service = Histogram()
        self.wait = Histogram()
        self.window = RateWindow()
        self.first_start = 0.0
        self.last_end = 0.0

    def record(self, started: float, ended: float, waited: float, ok: bool) -> None:
        """Count one item the stage worked on (``ok`` False when it raised)."""
        if not self.first_start:
            self.first_start = started
        self.last_end = ended
        service = ended - started
        self.service.record(service)
        self.wait.record(waited)
        self.window.record(ended, service)
        if ok:
            self.processed += 1
        else:
            self.failed += 1

    def snapshot(
        self,
        queue_depth: int,
        child: PipelineStatistics | None = None,
        since: float = 0.0,
    ) -> StageStatistics:
        """A snapshot; rates are measured from ``since`` (the pipeline's first item), so
        that a later stage's shorter history does not make it look busier."""
        return self._snapshot(queue_depth, child, 1, since)

    def _snapshot(
        self, queue_depth: int, child: PipelineStatistics | None, workers: int, since: float
    ) -> StageStatistics:
        now = time.perf_counter()
        rate, busy = self.window.rates(now, since or self.first_start)
        busy /= workers
        done = self.processed + self.failed
        span = self.last_end - self.first_start
        return StageStatistics(
            name=self.name,
            processed=self.processed,
            failed=self.failed,
            dropped=self.dropped,
            restarts=self.restarts,
            queue_depth=queue_depth,
            service_time=Percentiles.of(self.service),
            wait_time=Percentiles.of(self.wait),
            throughput=rate,
            utilization=busy,
            mean_throughput=done / span if span > 0 else 0.0,
            child=child,
        )


class PipelineCounters:
    """The counters the coordinator writes as items are accepted and finish."""

    def __init__(self) -> None:
        self.accepted = 0
        self.completed = 0
        self.failed = 0
        self.dropped = 0
        self.latency = Histogram()
        self.window = RateWindow()
        self.first_accept = 0.0
        self.last_done = 0.0

    def record_accepted(self, now: float) -> None:
        if not self.first_accept:
            self.first_accept = now
        self.accepted += 1

    def record_done(self, submitted_at: float, now: float, outcome: str) -> None:
        """Count one finished item; ``outcome`` is ``"ok"``, ``"failed"`` or ``"dropped"``."""
        if outcome == "ok":
            self.completed += 1
            self.latency.record(now - submitted_at)
            self.window.record(now, 0.0)
            self.last_done = now
        elif outcome == "failed":
            self.failed += 1
        else:
            self.dropped += 1

    def snapshot(
        self,
        mode: str,
        in_flight: int,
        stages: tuple[StageStatistics, ...],
        dropped_on_full: int,
        results_dropped: int,
    ) -> PipelineStatistics:
        now = time.perf_counter()
        rate, _ = self.window.rates(now, self.first_accept)
        span = self.last_done - self.first_accept
        busiest = max(
            stages,
            key=lambda s: (s.utilization, s.service_time.mean),
            default=None,
        )
        return PipelineStatistics(
            mode=mode,
            accepted=self.accepted,
            completed=self.completed,
            failed=self.failed,
            dropped=self.dropped,
            in_flight=in_flight,
            latency=Percentiles.of(self.latency),
            throughput=rate,
            mean_throughput=self.completed / span if span > 0 else 0.0,
            stages=stages,
            dropped_on_full=dropped_on_full,
            dropped_by_deadline=sum(stage.dropped for stage in stages),
            results_dropped=results_dropped,
            bottleneck=busiest.name if busiest is not None and busiest.processed else None,
        )


class PoolCounters(StageCounters):
    """A pooled stage's counters: its own (restarts, drops) plus one set per worker."""

    def __init__(self, name: str, workers: int) -> None:
        super().__init__(name)
        self.workers = [StageCounters(name) for _ in range(workers)]

    def snapshot(
        self,
        queue_depth: int,
        child: PipelineStatistics | None = None,
        since: float = 0.0,
    ) -> StageStatistics:
        total = StageCounters(self.name)
        total.restarts = self.restarts
        total.dropped = self.dropped
        starts = []
        for part in self.workers:
            total.processed += part.processed
            total.failed += part.failed
            total.dropped += part.dropped
            total.service.add(part.service)
            total.wait.add(part.wait)
            total.window.add(part.window)
            total.last_end = max(total.last_end, part.last_end)
            if part.first_start:
                starts.append(part.first_start)
        total.first_start = min(starts, default=0.0)
        return total._snapshot(queue_depth, child, len(self.workers), since)
