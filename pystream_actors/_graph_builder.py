"""Spawning a pipeline's graph of actors, and booking each step for the supervisor.

A chain is built last step first, so each actor is started knowing its downstream. A
junction is started before its branches, whose last stages send to it; it then learns
its branch heads (``LinkBranches``) before any item can reach it. A ``Route`` with a
factory grows branches while running (on its own thread) and retires idle ones.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pykka

from ._actors import ActorGroup
from ._combinators import Chain, JunctionSlot, Slot, Tap, check_unique, walk
from ._junction import spawn_junction
from ._messages import LinkBranches, Retire
from ._statistics import JunctionCounters
from ._supervisor import StageRecord, Supervisor
from ._sync import Sync
from ._sync_junction import SyncJunction
from ._worker_pool import counters_for, spawn_stage

logger = logging.getLogger("pystream_actors")


class GraphBuilder:
    """Starts the actors for a tree of slots and keeps the supervisor's records in order."""

    def __init__(
        self,
        group: ActorGroup,
        coordinator: pykka.ActorRef[Any],
        supervisor: Supervisor,
        timed: bool,
        sync_limits: dict[str, int] | None = None,
    ) -> None:
        self._group = group
        self._coordinator = coordinator
        self._supervisor = supervisor
        self._timed = timed
        self._sync_limits = sync_limits or {}
        self.entries: dict[str, pykka.ActorRef[Any]] = {}
        """With a ``Sync`` first: the head of each source chain, by source."""
        self.sync: pykka.ActorRef[Any] | None = None
        """With a ``Sync`` first: its junction."""

    def build(self, slots: list[Slot]) -> pykka.ActorRef[Any]:
        """Start the pipeline's own chain (and every branch in it); the first actor's ref."""
        booked: list[StageRecord] = []
        head = self._chain(slots, self._coordinator, None, "", booked)
        order = {path: index for index, (path, _) in enumerate(walk(slots))}
        booked.sort(key=lambda record: order[record.path])
        with self._supervisor.records_lock:
            self._supervisor.records.extend(booked)
        return head

    def _chain(
        self,
        slots: list[Slot],
        downstream: pykka.ActorRef[Any],
        owner: StageRecord | None,
        prefix: str,
        booked: list[StageRecord],
    ) -> pykka.ActorRef[Any]:
        chain: list[StageRecord] = []
        for slot in reversed(slots):
            path = f"{prefix}{slot.name}"
            ref: pykka.ActorRef[Any]
            if isinstance(slot, JunctionSlot) and isinstance(slot.combinator, Sync):
                junction_counters = JunctionCounters(slot.name, slot.kind, tuple(slot.branches))
                ref = self._group.spawn(
                    SyncJunction,
                    slot,
                    downstream,
                    self._coordinator,
                    junction_counters,
                    self._sync_limits,
                )
                record = StageRecord(slot, ref, junction_counters, path, chain, slots, owner)
                self.sync = ref
                self.entries = {
                    key: self._chain(branch.slots, ref, record, f"{path}/{key}/", booked)
                    for key, branch in slot.branches.items()
                }
            elif isinstance(slot, JunctionSlot):
                junction_counters = JunctionCounters(slot.name, slot.kind, tuple(slot.branches))
                ref = spawn_junction(
                    self._group,
                    slot,
                    downstream,
                    self._coordinator,
                    junction_counters,
                    settled_go_home=_settles_home(owner),
                    grow=self.grow,
                    prune=self.prune,
                )
                record = StageRecord(slot, ref, junction_counters, path, chain, slots, owner)
                heads = {
                    key: self._chain(branch.slots, ref, record, f"{path}/{key}/", booked)
                    for key, branch in slot.branches.items()
                }
                ref.tell(LinkBranches(heads))
            else:
                counters = counters_for(slot, self._timed)
                ref = spawn_stage(
                    self._group,
                    slot,
                    downstream,
                    self._coordinator,
                    counters,
                    settled_go_home=_settles_home(owner),
                )
                record = StageRecord(slot, ref, counters, path, chain, slots, owner)
            chain.insert(0, record)
            booked.append(record)
            downstream = ref
        return downstream

    # -- a Route's branches made and retired while running (on the junction's thread) ---

    def grow(self, junction: str, key: str, chain: Chain) -> pykka.ActorRef[Any]:
        """Start a new branch ``key`` of junction ``junction``; its head's ref."""
        owner = self._find(junction)
        with self._supervisor.records_lock:
            taken = {record.slot.name for record in self._supervisor.records}
        check_unique(chain.slots, taken)
        booked: list[StageRecord] = []
        prefix = f"{owner.path}/{key}/"
        head = self._chain(chain.slots, owner.ref, owner, prefix, booked)
        order = {path: index for index, (path, _) in enumerate(walk(chain.slots, prefix))}
        booked.sort(key=lambda record: order[record.path])
        with self._supervisor.records_lock:
            records = self._supervisor.records
            at = 1 + max(  # after the junction's other branches: graph order
                i
                for i, r in enumerate(records)
                if r is owner or r.path.startswith(f"{owner.path}/")
            )
            records[at:at] = booked
        return head

    def prune(self, junction: str, key: str) -> None:
        """Retire branch ``key`` of ``junction``: each stage cleans up on its own thread."""
        prefix = f"{self._find(junction).path}/{key}/"
        with self._supervisor.records_lock:
            gone = [r for r in self._supervisor.records if r.path.startswith(prefix)]
            self._supervisor.records[:] = [
                r for r in self._supervisor.records if not r.path.startswith(prefix)
            ]
        for record in gone:
            try:
                record.ref.tell(Retire(then_stop=True))
            except pykka.ActorDeadError:
                pass

    def _find(self, name: str) -> StageRecord:
        with self._supervisor.records_lock:
            for record in self._supervisor.records:
                if record.slot.name == name:
                    return record
        raise LookupError(name)


def _settles_home(owner: StageRecord | None) -> bool:
    """Settled items go home from the pipeline's own chain; from a branch or a ``Sync``
    source they go on to the junction (which must see every child or sample once)."""
    return owner is None


def sync_of(slots: list[Slot]) -> Sync | None:
    """The pipeline's ``Sync``, if its first step is one."""
    first = slots[0] if slots else None
    if isinstance(first, JunctionSlot) and isinstance(first.combinator, Sync):
        return first.combinator
    return None


def tap_outputs(slots: list[Slot]) -> frozenset[str]:
    """The names of every tap output in the graph (``results(output=...)`` reads them)."""
    return frozenset(
        key
        for _, slot in walk(slots)
        if isinstance(slot, JunctionSlot) and isinstance(slot.combinator, Tap)
        for key in slot.branches
    )


def branch_chains(
    records: list[StageRecord], junction: StageRecord
) -> dict[str, list[StageRecord]]:
    """The chains of ``junction``'s branches (also those a Route made while running)."""
    chains: dict[str, list[StageRecord]] = {}
    for record in records:
        if record.owner is junction:
            key = record.path[len(junction.path) + 1 :].split("/", 1)[0]
            chains[key] = record.chain
    return chains


def on_a_tap(record: StageRecord) -> bool:
    """True for a step inside a tap branch (the main path never waits for it)."""
    owner = record.owner
    while owner is not None:
        if isinstance(owner.slot, JunctionSlot) and owner.slot.kind == "tap":
            return True
        owner = owner.owner
    return False


def critical_path(
    records: list[StageRecord],
    chain: list[StageRecord],
    waited_on: Mapping[str, Mapping[str, float]],
    service: Mapping[str, float],
) -> tuple[str, ...]:
    """The stages a latency follows along ``chain``: at a ``Parallel`` the branch that held
    its joins up most, at a ``Route`` the branch whose stages take longest per item; a tap
    is skipped (the main path never waits for it)."""
    path: list[str] = []
    for record in chain:
        slot = record.slot
        if not isinstance(slot, JunctionSlot):
            path.append(slot.name)
            continue
        branches = branch_chains(records, record)
        if slot.kind == "tap" or not branches:
            continue
        if slot.kind == "parallel":
            shares = waited_on.get(slot.name, {})
            key = max(branches, key=lambda k: shares.get(k, 0.0))
        else:
            key = max(
                branches, key=lambda k: sum(service.get(r.slot.name, 0.0) for r in branches[k])
            )
        path.extend(critical_path(records, branches[key], waited_on, service))
    return tuple(path)
