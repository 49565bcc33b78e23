"""Which samples of several sources belong together: the matching rules of ``Sync``.

Pure bookkeeping, no threads and no clocks of its own: the sync junction offers each
sample as it arrives (with the processing time), asks for deadlines, and turns the
outcomes into messages. That keeps the rules testable against a brute-force reference.

``approximate`` (and ``exact``, which is approximate with ``tolerance=0``): one set per
anchor sample, in anchor order, with the nearest sample of every other source within
``tolerance`` that is newer than the one the previous set used (so sets never cross and
no sample is in two sets; a tie goes to the older sample). A set is decided as soon as it
is certain (every other source has delivered a free sample stamped at or after the
anchor, or one past the tolerance: stamps of one source arrive in order, so no nearer
one can still come), or once the
anchor has waited ``max_wait`` (processing time), or when the buffer is full.

``latest``: every trigger sample (source ``on``) with the freshest sample cached of each
other source, if their stamps are at most ``tolerance`` apart. Context samples are cached as
they come; the cache keeps one per source.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from typing import Any, Literal, Union

Policy = Literal["approximate", "exact", "latest"]
Missing = Literal["drop", "none"]
DropKind = Literal["unmatched", "late", "evicted"]


@dataclass(eq=False)
class Sample:
    """One sample at the junction: its source, sensor stamp and arrival (processing) time."""

    source: str
    stamp: float
    arrived: float
    token: Any = None
    """What the caller attaches (the item envelope)."""


@dataclass(eq=False)
class Matched:
    """A decided set: the anchor (or trigger) and each other source's sample, or None."""

    anchor: Sample
    members: dict[str, Sample | None]
    reasons: dict[str, str]
    """Why a source is None in ``members`` (``missing="none"`` only)."""


@dataclass(eq=False)
class Dropped:
    """A sample that is in no set, and why."""

    sample: Sample
    kind: DropKind
    reason: str


@dataclass(eq=False)
class Cached:
    """A context sample of ``latest`` taken into the cache (its item may settle now)."""

    sample: Sample


Outcome = Union[Matched, Dropped, Cached]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:g} ms"


class SyncMatcher:
    """The state of one ``Sync``: samples waiting per source and what was decided.

    Every comparison with the tolerance is of a difference of two stamps (never of a
    stamp with a sum), so "within tolerance" means the same thing in every rule.
    """

    def __init__(
        self,
        sources: tuple[str, ...],
        policy: Policy,
        tolerance: float,
        anchor: str,
        max_wait: float | None,
        limits: dict[str, int],
        missing: Missing,
    ) -> None:
        self.sources = sources
        self.policy = policy
        self.tolerance = 0.0 if policy == "exact" else tolerance
        self.anchor = anchor
        self.others = tuple(s for s in sources if s != anchor)
        self.max_wait = max_wait
        self.limits = limits
        self.missing = missing
        self.anchors: collections.deque[Sample] = collections.deque()
        self.parked: dict[str, collections.deque[Sample]] = {
            s: collections.deque() for s in self.others
        }
        self.newest: dict[str, float] = {s: -math.inf for s in sources}
        self.last_used: dict[str, float] = {s: -math.inf for s in self.others}
        self.cache: dict[str, Sample] = {}
        self.reused = 0
        self._cache_uses: dict[str, int] = collections.Counter()

    @property
    def waiting(self) -> int:
        """Samples held here: undecided anchors, parked samples, cached context."""
        return len(self.anchors) + sum(len(q) for q in self.parked.values()) + len(self.cache)

    def next_deadline(self) -> float | None:
        """When the oldest undecided anchor must be decided (processing time), if ever."""
        if self.max_wait is None or not self.anchors:
            return None
        return self.anchors[0].arrived + self.max_wait

    # -- offering -------------------------------------------------------------------------

    def offer(self, sample: Sample, now: float) -> list[Outcome]:
        """Take one arriving sample; what is decided because of it, in order."""
        if self.policy == "latest":
            return self._offer_latest(sample)
        out: list[Outcome] = []
        source = sample.source
        if sample.stamp <= self.newest[source] and source == self.anchor:
            return [self._late(sample, "it is not newer than an earlier anchor sample")]
        if source != self.anchor:
            if sample.stamp <= self.last_used[source] or sample.stamp < self.newest[source]:
                return [self._late(sample, "a set with a newer sample of it was already decided")]
            if self._floor() - sample.stamp > self.tolerance:
                return [self._late(sample, "every anchor it could match was already decided")]
        self.newest[source] = sample.stamp
        if source == self.anchor:
            self.anchors.append(sample)
            if len(self.anchors) > self.limits[source]:
                self._decide_head(out)  # full: the oldest anchor is decided with what is here
        else:
            parked = self.parked[source]
            parked.append(sample)
            if len(parked) > self.limits[source]:
                evicted = parked.popleft()
                out.append(
                    Dropped(
                        evicted,
                        "evicted",
                        f"evicted: more than {self.limits[source]} {source!r} samples "
                        "waited for a partner (buffer)",
                    )
                )
        self.decide(now, out)
        return out

    def expire(self, now: float) -> list[Outcome]:
        """Decide the anchors whose ``max_wait`` has passed."""
        out: list[Outcome] = []
        self.decide(now, out)
        return out

    def flush(self) -> list[Outcome]:
        """Decide every anchor with what is here and drop every other waiting sample
        (the pipeline drains); the cache of ``latest`` is emptied."""
        out: list[Outcome] = []
        while self.anchors:
            self._decide_head(out)
        for source, parked in self.parked.items():
            while parked:
                out.append(
                    Dropped(
                        parked.popleft(),
                        "unmatched",
                        f"unmatched: no {self.anchor!r} sample came to pair this {source!r} "
                        "sample with before the pipeline drained",
                    )
                )
        self.cache.clear()
        return out

    # -- approximate / exact --------------------------------------------------------------

    def decide(self, now: float, out: list[Outcome]) -> None:
        """Decide anchors from the oldest while each is certain or overdue."""
        while self.anchors:
            head = self.anchors[0]
            certain = all(self._settled(s, head.stamp) for s in self.others)
            overdue = self.max_wait is not None and now >= head.arrived + self.max_wait
            if not (certain or overdue):
                break
            self._decide_head(out)
        self._prune(out)

    def _settled(self, source: str, stamp: float) -> bool:
        """True if no sample of ``source`` still to come can be nearer to ``stamp`` than one
        here: later ones are stamped at or after the newest, which is past ``stamp`` and
        still free (or past the tolerance)."""
        newest = self.newest[source]
        if newest - stamp > self.tolerance:
            return True
        return newest >= stamp and newest > self.last_used[source]

    def _decide_head(self, out: list[Outcome]) -> None:
        head = self.anchors.popleft()
        chosen: dict[str, Sample | None] = {}
        reasons: dict[str, str] = {}
        for source in self.others:
            best = self._nearest(source, head.stamp)
            chosen[source] = best
            if best is None:
                reasons[source] = self._no_partner(source)
        if reasons and self.missing == "drop":
            first = next(iter(reasons.values()))
            out.append(Dropped(head, "unmatched", first))
        else:
            for source, sample in chosen.items():
                if sample is not None:
                    self._take(source, sample, out)
            out.append(Matched(head, chosen, reasons))
        self._prune(out)

    def _nearest(self, source: str, stamp: float) -> Sample | None:
        best: Sample | None = None
        for sample in self.parked[source]:
            gap = abs(sample.stamp - stamp)
            if gap <= self.tolerance and (best is None or gap < abs(best.stamp - stamp)):
                best = sample
            elif sample.stamp - stamp > self.tolerance:
                break
        return best

    def _take(self, source: str, chosen: Sample, out: list[Outcome]) -> None:
        """``chosen`` joins a set: older samples of its source can never join one."""
        parked = self.parked[source]
        while parked:
            sample = parked.popleft()
            if sample is chosen:
                break
            out.append(Dropped(sample, "unmatched", self._passed_over(source)))
        self.last_used[source] = chosen.stamp

    def _floor(self) -> float:
        """No anchor stamped below this can come or is waiting."""
        if self.anchors:
            return self.anchors[0].stamp
        return self.newest[self.anchor]

    def _prune(self, out: list[Outcome]) -> None:
        """Drop parked samples no waiting or future anchor can match."""
        floor = self._floor()
        for source, parked in self.parked.items():
            while parked and floor - parked[0].stamp > self.tolerance:
                out.append(Dropped(parked.popleft(), "unmatched", self._passed_over(source)))

    def _late(self, sample: Sample, why: str) -> Dropped:
        return Dropped(
            sample,
            "late",
            f"late: {sample.source!r} sample stamped {sample.stamp:g} came after {why} "
            f"(tolerance {_ms(self.tolerance)})",
        )

    def _no_partner(self, source: str) -> str:
        return f"unmatched: no {source!r} sample within {_ms(self.tolerance)}"

    def _passed_over(self, source: str) -> str:
        return (
            f"unmatched: no {self.anchor!r} sample within {_ms(self.tolerance)} took this "
            f"{source!r} sample (a nearer one was taken, or none came)"
        )

    # -- latest ---------------------------------------------------------------------------

    def _offer_latest(self, sample: Sample) -> list[Outcome]:
        source = sample.source
        if source != self.anchor:
            cached = self.cache.get(source)
            if cached is not None and sample.stamp < cached.stamp:
                return [self._late(sample, "a newer one was already cached")]
            self.cache[source] = sample
            self._cache_uses[source] = 0
            self.newest[source] = sample.stamp
            return [Cached(sample)]
        chosen: dict[str, Sample | None] = {}
        reasons: dict[str, str] = {}
        for other in self.others:
            cached = self.cache.get(other)
            if cached is not None and abs(sample.stamp - cached.stamp) <= self.tolerance:
                chosen[other] = cached
            else:
                chosen[other] = None
                reasons[other] = (
                    f"unmatched: no {other!r} sample within {_ms(self.tolerance)} before it"
                )
        if reasons and self.missing == "drop":
            return [Dropped(sample, "unmatched", next(iter(reasons.values())))]
        for other, cached in chosen.items():
            if cached is not None:
                if self._cache_uses[other]:
                    self.reused += 1
                self._cache_uses[other] += 1
        return [Matched(sample, chosen, reasons)]
