"""The sync junction: where the samples of several sources meet and are joined by stamp.

Each source's items come out of their own chain into this actor. It offers each to the
matcher (``_sync_match``), and turns what is decided into messages: a set goes on
downstream as one envelope whose ``members`` are the items it joined (the coordinator
settles each of them with the set's outcome); a sample in no set goes home dropped, with
the reason; a cached context sample of ``latest`` goes home to resolve. So every accepted
sample has exactly one outcome, and none waits here longer than the rules allow.
"""

from __future__ import annotations

import logging
import time
from types import MappingProxyType
from typing import Any

import pykka

from ._actors import ActorGroup, PipelineActor
from ._combinators import Joined, JunctionSlot
from ._errors import ItemDropped, PyStreamError
from ._handover import relink, settle_ready
from ._messages import (
    EXPIRED,
    Cached,
    DrainSources,
    Item,
    Relink,
    Retire,
    Tick,
    WhenReady,
    send_home,
    send_or_return,
)
from ._statistics import JunctionCounters
from ._sync import Sync
from ._sync_match import Cached as CachedSample
from ._sync_match import Dropped, Matched, Outcome, Sample, SyncMatcher
from ._ticker import Ticker

logger = logging.getLogger("pystream_actors")


class SyncJunction(PipelineActor):
    """Matches samples from the source chains and sends each set on."""

    def __init__(
        self,
        group: ActorGroup,
        slot: JunctionSlot,
        downstream: pykka.ActorRef[Any],
        home: pykka.ActorRef[Any],
        counters: JunctionCounters,
        limits: dict[str, int],
    ) -> None:
        super().__init__(group, f"Junction-{slot.name}")
        sync = slot.combinator
        assert isinstance(sync, Sync)
        self.name = slot.name
        self.downstream = downstream
        self.home = home
        self.counters = counters
        self.matcher = SyncMatcher(
            sync.sources,
            sync.policy,
            sync.tolerance,
            sync.anchor,
            sync.max_wait,
            limits,
            sync.missing,
        )
        self._needs_ticker = sync.max_wait is not None
        self._ticker: Ticker | None = None
        self._draining = False
        self._came: dict[str, int] = dict.fromkeys(sync.sources, 0)  # items out of each chain
        self._expected: dict[str, int] | None = None  # set at drain

    def started(self) -> None:
        if self._needs_ticker:
            self._ticker = Ticker(self.actor_ref, self.name)

    def receive(self, message: Any) -> Any:
        if type(message) is Item:
            self._arrived(message)
        elif isinstance(message, Tick):
            self._apply(self.matcher.expire(time.perf_counter()))
        elif isinstance(message, Relink):
            if message.predecessor.actor_urn == self.downstream.actor_urn:
                self.downstream = relink(message)
            else:
                relink(message)
        elif isinstance(message, DrainSources):
            self._expected = message.sent
            self._settle_if_drained()
        elif isinstance(message, WhenReady):
            settle_ready(message.done, None)
        elif isinstance(message, Retire):
            if message.then_stop:
                self.finish()
        else:
            logger.warning("sync %r ignored an unexpected message %r", self.name, message)
        return None

    def _arrived(self, item: Item) -> None:
        self._came[item.source] += 1
        now = time.perf_counter()
        if item.is_live and now > item.expires_at:
            item.drop(EXPIRED)
        if item.is_live:
            outcomes = self.matcher.offer(Sample(item.source, item.stamp, now, item), now)
            if self._draining:  # settled already: nothing may wait any more
                outcomes += self.matcher.flush()
            self._apply(outcomes)
        else:  # failed or dropped in its source chain: it comes here only to be counted
            send_home(self.home, item)
        if self._expected is not None:
            self._settle_if_drained()

    def _settle_if_drained(self) -> None:
        """At drain, once every item sent into the source chains came out, decide what
        waits with what is here (no nearer sample can come any more)."""
        assert self._expected is not None
        if self._draining or any(self._came[s] < n for s, n in self._expected.items()):
            return
        self._draining = True
        self._apply(self.matcher.flush())

    def _apply(self, outcomes: list[Outcome]) -> None:
        now = time.perf_counter()
        for outcome in outcomes:
            if isinstance(outcome, Matched):
                self._send_set(outcome, now)
            elif isinstance(outcome, Dropped):
                item: Item = outcome.sample.token
                getattr(self.counters, outcome.kind)[item.source] += 1
                item.drop(outcome.reason)
                send_home(self.home, item)
            elif isinstance(outcome, CachedSample):
                send_home(self.home, Cached(outcome.sample.token))
        self.counters.pending = self.matcher.waiting
        self.counters.max_pending = max(self.counters.max_pending, self.counters.pending)
        self.counters.reused = self.matcher.reused
        deadline = self.matcher.next_deadline()
        if deadline is not None and self._ticker is not None:
            self._ticker.wake_at(deadline)

    def _send_set(self, matched: Matched, now: float) -> None:
        anchor: Item = matched.anchor.token
        items = {matched.anchor.source: anchor}
        stamps = {matched.anchor.source: anchor.stamp}
        missing: dict[str, PyStreamError] = {}
        last_arrival = matched.anchor.arrived
        skews = []
        for source, sample in matched.members.items():
            if sample is None:
                missing[source] = ItemDropped(anchor.seq, matched.reasons[source])
                continue
            items[source] = sample.token
            stamps[source] = sample.stamp
            last_arrival = max(last_arrival, sample.arrived)
            skews.append(abs(sample.stamp - anchor.stamp))
        outputs = {
            source: items[source].data if source in items else None
            for source in self.matcher.sources
        }
        joined = Item(
            Joined(
                MappingProxyType(outputs),
                MappingProxyType(missing),
                MappingProxyType(stamps),
                anchor.stamp,
            ),
            None,
            anchor.submitted_at,
        )
        joined.seq = anchor.seq
        joined.stamp = anchor.stamp
        # Context samples of ``latest`` are settled already: only the trigger is a member.
        members = (anchor,) if self.matcher.policy == "latest" else tuple(items.values())
        joined.members = members
        joined.expires_at = min(member.expires_at for member in members)
        joined.hops = 1
        joined.sent_at = now
        self.counters.set_decided(now, now - last_arrival, skews)
        send_or_return(self.downstream, self.home, joined, self.name)

    def crashed(self, exc: BaseException) -> None:
        reason = f"the sync {self.name!r} crashed ({type(exc).__name__})"
        for sample in [
            *self.matcher.anchors,
            *(s for q in self.matcher.parked.values() for s in q),
        ]:
            item: Item = sample.token
            item.drop(reason)
            send_home(self.home, item)
        self.matcher.anchors.clear()
        for parked in self.matcher.parked.values():
            parked.clear()

    def on_stop(self) -> None:
        super().on_stop()
        if self._ticker is not None:
            self._ticker.close()
        self.counters.pending = 0
