"""Always-on statistics per stage and per pipeline, and their immutable snapshots.

Recording is a handful of additions on the thread that owns the counters (each stage
actor, the coordinator); snapshots are taken by any thread and feed every view
(``statistics()``, profiles, the CLI, the exporters). Memory is fixed whatever the count:
exact counts, means and maxima, percentiles over the most recent durations, and one rate
sample per second for the sliding-window throughput and utilization.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Optional, Protocol

from ._durations import MASK, Durations, percentiles
from ._errors import StageNotFound

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
    def of(durations: Summarized) -> Percentiles:
        """Mean and max over every record; p50/p90/p99 over the recent ones."""
        p50, p90, p99 = percentiles(durations.kept(), (0.50, 0.90, 0.99))
        return Percentiles(mean=durations.mean, p50=p50, p90=p90, p99=p99, max=durations.max)


class Summarized(Protocol):
    """What ``Percentiles.of`` reads: ``Durations`` or a merge of several."""

    count: int
    max: float

    @property
    def mean(self) -> float: ...

    def kept(self) -> list[float]: ...


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
    """Time spent in the stage's code per item (percentiles over the recent items)."""
    wait_time: Percentiles
    """Time an item waited in the stage's mailbox before the stage started it."""
    throughput: float
    """Items per second over the last ``RATE_WINDOW_SECONDS``."""
    utilization: float
    """Fraction of the recent window the stage spent working (0..1)."""
    mean_throughput: float
    """Items per second from the first item to the last one."""
    child: Optional[PipelineStatistics] = None
    """The statistics of a nested pipeline added with ``as_stage()``."""
    path: str = ""
    """Where the stage sits: its name, or ``Junction/branch/Stage`` inside a branch."""


@dataclass(frozen=True)
class JunctionStatistics:
    """A snapshot of one junction (a ``Parallel``, ``Route``, ``Tap`` or ``Sync``)."""

    name: str
    path: str
    kind: str
    """``"parallel"``, ``"route"``, ``"tap"`` or ``"sync"``."""
    pending: int
    """Items inside the junction's branches now (joins or reorders not finished); for a
    ``Sync``, samples held at the junction (waiting anchors and samples, cached ones)."""
    max_pending: int
    branches: tuple[str, ...]
    arrivals: Mapping[str, int]
    """Children that came back from each branch."""
    waited_on: Mapping[str, float]
    """``Parallel``: each branch's share of the time joins spent waiting after their first
    branch arrived (the time the branch arriving last held them up)."""
    join_wait: Percentiles
    """``Parallel``: time from the first branch's arrival to the last one's, per item."""
    per_key: Mapping[str, int]
    """``Route``: items per branch key."""
    dropped: Mapping[str, int]
    """Children dropped by a branch's ``capacity`` (or a tap's), per branch."""
    sets: int = 0
    """``Sync``: sets decided and sent on."""
    sets_per_second: float = 0.0
    """``Sync``: sets over the recent window."""
    skew: Percentiles = field(default_factory=lambda: Percentiles(0.0, 0.0, 0.0, 0.0, 0.0))
    """``Sync``: |stamp of a member - stamp of its anchor| (sensor seconds), per member."""
    decide_wait: Percentiles = field(default_factory=lambda: Percentiles(0.0, 0.0, 0.0, 0.0, 0.0))
    """``Sync``: the latency a set adds: from its last member's arrival to its decision."""
    unmatched: Mapping[str, int] = field(default_factory=dict)
    """``Sync``: samples in no set, per source (no partner within the tolerance)."""
    late: Mapping[str, int] = field(default_factory=dict)
    """``Sync``: samples that came after the sets they could join were decided."""
    evicted: Mapping[str, int] = field(default_factory=dict)
    """``Sync``: samples pushed out of a full ``buffer``."""
    reused: int = 0
    """``Sync(policy="latest")``: uses of a cached sample beyond its first."""


@dataclass(frozen=True)
class SourceStatistics:
    """A snapshot of one named source of a pipeline whose first step is a ``Sync``.

    ``accepted == completed + failed + dropped + in_flight``; ``unmatched``, ``late`` and
    ``evicted`` are the part of ``dropped`` the ``Sync`` decided.
    """

    name: str
    accepted: int
    completed: int
    failed: int
    dropped: int
    rejected: int
    in_flight: int
    capacity: int
    unmatched: int
    late: int
    evicted: int


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
    junctions: tuple[JunctionStatistics, ...] = field(default_factory=tuple)
    critical_path: tuple[str, ...] = field(default_factory=tuple)
    """The stages that limit latency: the main chain, and at each join the branch it
    waited on most."""
    sources: tuple[SourceStatistics, ...] = field(default_factory=tuple)
    """One entry per named source when the first step is a ``Sync``."""

    def source(self, name: str) -> SourceStatistics:
        """The snapshot of the source called ``name``."""
        for source in self.sources:
            if source.name == name:
                return source
        raise StageNotFound(
            f"no source named {name!r}; sources are {[s.name for s in self.sources]}"
        )

    def junction(self, name: str) -> JunctionStatistics:
        """The snapshot of the junction called ``name``."""
        for junction in self.junctions:
            if junction.name == name:
                return junction
        raise StageNotFound(
            f"no junction named {name!r}; junctions are {[j.name for j in self.junctions]}"
        )

    def stage(self, name: str) -> StageStatistics:
        """The snapshot of the stage called ``name``."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise StageNotFound(f"no stage named {name!r}; stages are {[s.name for s in self.stages]}")


class RateSamples:
    """One (time, items done, busy seconds) sample per second of activity.

    A stage records cumulative totals on every item; the sample list only grows by one
    entry per second and keeps the last ``RATE_WINDOW_SECONDS + 2``.
    """

    __slots__ = ("next_due", "samples")

    def __init__(self) -> None:
        self.samples: collections.deque[tuple[float, int, float]] = collections.deque(
            maxlen=RATE_WINDOW_SECONDS + 2
        )
        self.next_due = 0.0

    def take(self, now: float, done: int, busy: float) -> None:
        self.samples.append((now, done, busy))
        self.next_due = now + 1.0

    def rates(self, now: float, since: float, done: int, busy: float) -> tuple[float, float]:
        """(items per second, busy fraction) over the window, or since ``since`` if later."""
        start = max(now - RATE_WINDOW_SECONDS, since)
        base_time, base_done, base_busy = since, 0, 0.0
        for sample in self.samples:
            if sample[0] > start:
                break
            base_time, base_done, base_busy = sample
        span = now - base_time
        if span <= 0.0 or not since:
            return 0.0, 0.0
        return (done - base_done) / span, min(1.0, (busy - base_busy) / span)


class StageCounters:
    """The counters one stage actor writes as it works.

    With ``timed=False`` only counts are kept: no durations or rates (the
    ``Pipeline(statistics=False)`` setting, for the last microsecond per item).
    """

    def __init__(self, name: str, timed: bool = True) -> None:
        self.name = name
        self.timed = timed
        self.processed = 0
        self.failed = 0
        self.dropped = 0
        self.restarts = 0
        self.service = Durations()
        self.wait = Durations()
        self.rates = RateSamples()
        self.busy = 0.0
        self.first_start = 0.0
        self.last_end = 0.0

    def record(self, started: float, ended: float, waited: float, ok: bool) -> None:
        """Count one item the stage worked on (``ok`` False when it raised).

        The hot path of every stage: the two ``Durations.record`` calls are inlined.
        """
        if ok:
            self.processed += 1
        else:
            self.failed += 1
        if not self.timed:
            return
        service = ended - started
        self.busy += service
        self.last_end = ended
        durations = self.service
        durations.count += 1
        durations.total += service
        if service > durations.max:
            durations.max = service
        index = durations.next
        durations.recent[index] = service
        durations.next = (index + 1) & MASK
        durations = self.wait
        durations.count += 1
        durations.total += waited
        if waited > durations.max:
            durations.max = waited
        durations.recent[index] = waited
        durations.next = (index + 1) & MASK
        if ended >= self.rates.next_due:
            if not self.first_start:
                self.first_start = started
            self.rates.take(ended, self.processed + self.failed, self.busy)

    def window_rates(self, now: float, since: float) -> tuple[float, float]:
        """(items per second, busy fraction) over the recent window."""
        return self.rates.rates(
            now, since or self.first_start, self.processed + self.failed, self.busy
        )

    def snapshot(
        self,
        queue_depth: int,
        child: PipelineStatistics | None = None,
        since: float = 0.0,
    ) -> StageStatistics:
        """A snapshot; rates are measured from ``since`` (the pipeline's first item), so
        that a later stage's shorter history does not make it look busier."""
        rate, busy = self.window_rates(time.perf_counter(), since)
        return self._build(queue_depth, child, self.service, self.wait, rate, busy)

    def _build(
        self,
        queue_depth: int,
        child: PipelineStatistics | None,
        service: Summarized,
        wait: Summarized,
        rate: float,
        busy: float,
    ) -> StageStatistics:
        done = self.processed + self.failed
        span = self.last_end - self.first_start
        return StageStatistics(
            name=self.name,
            processed=self.processed,
            failed=self.failed,
            dropped=self.dropped,
            restarts=self.restarts,
            queue_depth=queue_depth,
            service_time=Percentiles.of(service),
            wait_time=Percentiles.of(wait),
            throughput=rate,
            utilization=busy,
            mean_throughput=done / span if span > 0 else 0.0,
            child=child,
        )


class JunctionCounters:
    """The counters a junction writes on its own thread."""

    def __init__(self, name: str, kind: str, branches: tuple[str, ...]) -> None:
        self.name = name
        self.kind = kind
        self.branches = branches
        self.pending = 0
        self.max_pending = 0
        self.arrivals: collections.Counter[str] = collections.Counter()
        self.last: collections.Counter[str] = collections.Counter()
        self.per_key: collections.Counter[str] = collections.Counter()
        self.dropped: collections.Counter[str] = collections.Counter()
        self.join_wait = Durations()
        self.held: dict[str, float] = collections.defaultdict(float)  # seconds, per branch
        self.sets = 0
        self.set_rates = RateSamples()
        self.first_set = 0.0
        self.skew = Durations()
        self.decide_wait = Durations()
        self.unmatched: collections.Counter[str] = collections.Counter()
        self.late: collections.Counter[str] = collections.Counter()
        self.evicted: collections.Counter[str] = collections.Counter()
        self.reused = 0

    def set_decided(self, now: float, wait: float, skews: list[float]) -> None:
        """A ``Sync`` sent a set on, ``wait`` after its last member arrived."""
        if not self.first_set:
            self.first_set = now
        self.sets += 1
        self.decide_wait.record(wait)
        for skew in skews:
            self.skew.record(skew)
        if now >= self.set_rates.next_due:
            self.set_rates.take(now, self.sets, 0.0)

    def held_up(self, branch: str, waited: float) -> None:
        """A join completed when ``branch`` arrived, ``waited`` after the first arrival."""
        self.last[branch] += 1
        self.held[branch] += waited
        self.join_wait.record(waited)

    def entered(self, count: int = 1) -> None:
        self.pending += count
        if self.pending > self.max_pending:
            self.max_pending = self.pending

    def snapshot(self, path: str) -> JunctionStatistics:
        held = sum(self.held.values())
        joins = sum(self.last.values())
        shares = self.held if held > 0 else self.last
        total = held if held > 0 else joins
        branches = tuple(sorted({*self.branches, *self.arrivals, *self.per_key}))
        return JunctionStatistics(
            name=self.name,
            path=path,
            kind=self.kind,
            pending=self.pending,
            max_pending=self.max_pending,
            branches=branches,
            arrivals=MappingProxyType(dict(self.arrivals)),
            waited_on=MappingProxyType({b: shares[b] / total for b in shares} if total else {}),
            join_wait=Percentiles.of(self.join_wait),
            per_key=MappingProxyType(dict(self.per_key)),
            dropped=MappingProxyType(dict(self.dropped)),
            sets=self.sets,
            sets_per_second=self.set_rates.rates(
                time.perf_counter(), self.first_set, self.sets, 0.0
            )[0],
            skew=Percentiles.of(self.skew),
            decide_wait=Percentiles.of(self.decide_wait),
            unmatched=MappingProxyType(dict(self.unmatched)),
            late=MappingProxyType(dict(self.late)),
            evicted=MappingProxyType(dict(self.evicted)),
            reused=self.reused,
        )


class PoolCounters(StageCounters):
    """A pooled stage's counters: its own (restarts, drops) plus one set per worker."""

    def __init__(self, name: str, workers: int, timed: bool = True) -> None:
        super().__init__(name, timed)
        self.workers = [StageCounters(name, timed) for _ in range(workers)]

    def snapshot(
        self,
        queue_depth: int,
        child: PipelineStatistics | None = None,
        since: float = 0.0,
    ) -> StageStatistics:
        total = StageCounters(self.name)
        total.restarts = self.restarts
        total.dropped = self.dropped
        now = time.perf_counter()
        rate = busy = 0.0
        starts = []
        for part in self.workers:
            total.processed += part.processed
            total.failed += part.failed
            total.dropped += part.dropped
            total.last_end = max(total.last_end, part.last_end)
            if part.first_start:
                starts.append(part.first_start)
            part_rate, part_busy = part.window_rates(now, since)
            rate += part_rate
            busy += part_busy / len(self.workers)
        total.first_start = min(starts, default=0.0)
        service = Durations.merged(part.service for part in self.workers)
        wait = Durations.merged(part.wait for part in self.workers)
        return total._build(queue_depth, child, service, wait, rate, busy)


class SourceCounters:
    """Per-source outcome counts, written by the coordinator (a ``Sync`` pipeline only)."""

    def __init__(self) -> None:
        self.accepted = 0
        self.completed = 0
        self.failed = 0
        self.dropped = 0


class PipelineCounters:
    """The counters the coordinator writes as items are accepted and finish."""

    def __init__(self, timed: bool = True) -> None:
        self.timed = timed
        self.accepted = 0
        self.completed = 0
        self.failed = 0
        self.dropped = 0
        self.latency = Durations()
        self.rates = RateSamples()
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
            self.last_done = now
            if self.timed:  # Durations.record, inlined: this runs for every item
                latency = now - submitted_at
                durations = self.latency
                durations.count += 1
                durations.total += latency
                if latency > durations.max:
                    durations.max = latency
                index = durations.next
                durations.recent[index] = latency
                durations.next = (index + 1) & MASK
                if now >= self.rates.next_due:
                    self.rates.take(now, self.completed, 0.0)
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
        rate, _ = self.rates.rates(now, self.first_accept, self.completed, 0.0)
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
