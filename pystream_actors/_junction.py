"""The junction actor: where a combinator forks items into its branches and joins them.

To the chain around it a junction is one step: items come from upstream, outcomes go
downstream, and it answers ``Relink`` like any upstream (for its downstream and for each
branch head). To its branches it is what the coordinator is to the chain: it sends each
branch a child envelope and takes every child back, live, failed or dropped, because
every stage inside a branch passes settled children on instead of sending them home.
So a join never waits for something that will not come, and releases parents in order
(by ``jseq``, like a pool's ``pool_seq``).

No user code runs here except ``Route``'s ``key`` and a branch's ``select``; stage work,
statistics and supervision stay in the branches' own actors.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import pykka

from ._actors import ActorGroup, PipelineActor
from ._combinators import BranchOptions, Chain, Joined, JunctionSlot, Route, Tap
from ._errors import ItemDropped, PyStreamError, StageError
from ._handover import relink, settle_ready
from ._messages import (
    SIBLING_FAILED,
    ClaimGroup,
    DeadLetter,
    Item,
    LinkBranches,
    Notice,
    Relink,
    Retire,
    TapOutput,
    WhenReady,
    send_home,
    send_or_return,
)
from ._statistics import JunctionCounters

logger = logging.getLogger("pystream_actors")

Grow = Callable[[str, str, Chain], pykka.ActorRef[Any]]
"""Runtime hook: (junction name, branch key, chain) -> the new branch's head actor."""
Prune = Callable[[str, str], None]
"""Runtime hook: (junction name, branch key): retire that branch's actors."""


@dataclass(eq=False)
class Join:
    """One parent inside the junction: its children out, and those back."""

    parent: Item
    group: ClaimGroup | None
    jseq: int
    """This junction's number for the parent (the parent's own ``jseq`` belongs to the
    junction that forked it, if any: junctions nest)."""
    children: dict[str, Item] = field(default_factory=dict)
    back: dict[str, Item] = field(default_factory=dict)
    first_back: float = 0.0
    window_claim: bool = False  # the parent had a window token before it forked


class JunctionActor(PipelineActor):
    """What every junction shares: branch heads, relinks, forking, ordered release."""

    def __init__(
        self,
        group: ActorGroup,
        slot: JunctionSlot,
        downstream: pykka.ActorRef[Any],
        home: pykka.ActorRef[Any],
        counters: JunctionCounters,
        settled_go_home: bool,
        grow: Grow | None = None,
        prune: Prune | None = None,
    ) -> None:
        super().__init__(group, f"Junction-{slot.name}")
        self.name = slot.name
        self.combinator = slot.combinator
        self.downstream = downstream
        self.home = home
        self.counters = counters
        self._settled_go_home = settled_go_home
        self._grow = grow
        self._prune = prune
        self.heads: dict[str, pykka.ActorRef[Any]] = {}
        self.options: dict[str, BranchOptions] = {
            key: chain.options for key, chain in slot.branches.items()
        }
        self.inside: dict[str, collections.deque[Item]] = collections.defaultdict(collections.deque)
        self.joins: dict[int, Join] = {}
        self._ready: dict[int, Item | None] = {}  # released out of order, waiting their turn
        self._next_in = 0
        self._next_out = 0

    # -- messages -----------------------------------------------------------------------

    def receive(self, message: Any) -> Any:
        if type(message) is Item:
            join = self.joins.get(message.jseq)
            if join is not None and join.children.get(message.branch) is message:
                self._back(join, message)
            elif message.is_live:
                self.arrived(message)
            else:
                self.settled(message)
        elif isinstance(message, Relink):
            self._relink(message)
        elif isinstance(message, LinkBranches):
            self.heads.update(message.heads)
        elif isinstance(message, WhenReady):
            settle_ready(message.done, None)
        elif isinstance(message, Retire):
            if message.then_stop:
                self.finish()
        else:
            logger.warning("junction %r ignored an unexpected message %r", self.name, message)
        return None

    def _relink(self, message: Relink) -> None:
        urn = message.predecessor.actor_urn
        if urn == self.downstream.actor_urn:
            self.downstream = relink(message)
            return
        for key, head in self.heads.items():
            if head.actor_urn == urn:
                self.heads[key] = relink(message)
                return
        relink(message)  # not ours (any more): still let the old actor hand over

    # -- forking ------------------------------------------------------------------------

    def arrived(self, parent: Item) -> None:
        """A live parent from upstream: fork it (each kind decides how)."""
        raise NotImplementedError

    def _back(self, join: Join, child: Item) -> None:
        """A child came back from its branch."""
        raise NotImplementedError

    def open_join(self, parent: Item, shared_claim: bool) -> Join | None:
        """Number ``parent`` and take it from the window's reach; None if the window
        dropped it first (then it is settled)."""
        claim = parent.claim
        had_token = isinstance(claim, list)
        if isinstance(claim, list):
            try:
                claim.pop()  # ours now: the window cannot drop it while we convert the claim
            except IndexError:
                parent.drop("on_full='drop_oldest': a newer item took its place")
                self.settled(parent)
                return None
        group = ClaimGroup(parent) if shared_claim else None
        if group is not None and had_token:
            parent.claim = group  # the window may now drop it only while no child works
        join = Join(parent, group, self._next_in, window_claim=had_token)
        self._next_in += 1
        self.joins[join.jseq] = join
        self.counters.entered()
        return join

    def send_child(self, join: Join, key: str, data: Any, claim: Any) -> None:
        """Fork one child for branch ``key`` and send it to the branch head."""
        parent = join.parent
        options = self.options.get(key, BranchOptions())
        expires = parent.expires_at
        if options.max_age is not None:
            expires = min(expires, parent.submitted_at + options.max_age)
        child = parent.fork(key, data, expires, claim, join.jseq)
        child.sent_at = time.perf_counter()
        join.children[key] = child
        if not self._room_for(key, child, options):
            self._back(join, child)
            return
        self.inside[key].append(child)
        try:
            self.heads[key].tell(child)
        except (KeyError, pykka.ActorDeadError):
            child.drop(f"branch {key!r} of {self.name!r} has no running head actor")
            self.inside[key].remove(child)
            self._back(join, child)

    def _room_for(self, key: str, child: Item, options: BranchOptions) -> bool:
        """Apply the branch's ``capacity``; False if ``child`` itself was dropped."""
        capacity = options.capacity
        inside = self.inside[key]
        if capacity is None or len(inside) < capacity:
            return True
        reason = f"branch {key!r} of {self.name!r} was full (capacity={capacity})"
        if options.on_full in (None, "drop_oldest"):
            for victim in inside:
                if _drop_unstarted(victim, reason):
                    self.counters.dropped[key] += 1
                    return True
        child.drop(reason)
        self.counters.dropped[key] += 1
        return False

    def child_back(self, join: Join, child: Item) -> None:
        """Book a returning child; forward its failure news to the coordinator."""
        inside = self.inside[child.branch]
        if inside and inside[0] is child:
            inside.popleft()
        elif child in inside:
            inside.remove(child)
        join.back[child.branch] = child
        self.counters.arrivals[child.branch] += 1
        if child.failure_action is not None:
            send_home(self.home, Notice(child.failure_action))
            child.failure_action = None

    # -- releasing ----------------------------------------------------------------------

    def close_join(self, join: Join, ordered: bool) -> None:
        """The parent's outcome is decided: release it (in ``jseq`` order if ``ordered``)."""
        del self.joins[join.jseq]
        self.counters.pending -= 1
        parent = join.parent
        if join.group is not None:
            join.group.close()  # from here the window cannot take it through the group
            if join.window_claim:
                parent.claim = [1]  # droppable again while it waits for the next stage
        parent.hops += 1  # the junction was one step of the chain around it
        parent.sent_at = time.perf_counter()  # the next stage's wait starts now
        if not ordered:
            self._send_on(parent)
            return
        self._ready[join.jseq] = parent
        while self._next_out in self._ready:
            ready = self._ready.pop(self._next_out)
            self._next_out += 1
            if ready is not None:
                self._send_on(ready)

    def skip_turn(self, jseq: int) -> None:
        """A numbered parent left without a join (it settled early): do not wait for it."""
        self._ready[jseq] = None
        while self._next_out in self._ready:
            ready = self._ready.pop(self._next_out)
            self._next_out += 1
            if ready is not None:
                self._send_on(ready)

    def _send_on(self, parent: Item) -> None:
        if parent.is_live:
            send_or_return(self.downstream, self.home, parent, self.name)
        else:
            self.settled(parent)

    def settled(self, item: Item) -> None:
        """An item whose outcome is known: home, or on through the branch around us."""
        if self._settled_go_home:
            send_home(self.home, item)
        else:
            send_or_return(self.downstream, self.home, item, self.name)

    def on_stop(self) -> None:
        super().on_stop()
        self.counters.pending = 0  # whatever was inside was settled by the stop

    def crashed(self, exc: BaseException) -> None:
        reason = f"the junction {self.name!r} crashed ({type(exc).__name__})"
        for join in list(self.joins.values()):
            join.parent.drop(reason)
            self.settled(join.parent)
        self.joins.clear()
        for item in self._ready.values():
            if item is not None:
                item.drop(reason)
                self.settled(item)
        self._ready.clear()


class ParallelJunction(JunctionActor):
    """Every parent to every branch; joined by item into ``Joined``."""

    def arrived(self, parent: Item) -> None:
        join = self.open_join(parent, shared_claim=True)
        if join is None:
            return
        for key in self.combinator.branches:
            data = parent.data
            select = self.options[key].select
            if select is not None:
                try:
                    data = select(data)
                except BaseException as exc:  # user code: fails this branch only
                    child = parent.fork(key, None, parent.expires_at, join.group, join.jseq)
                    child.error = StageError(self.name, parent.seq, exc, parent.data)
                    join.children[key] = child
                    self._back(join, child)
                    continue
            self.send_child(join, key, data, join.group)
            if join.jseq not in self.joins:
                return  # every branch already settled it (e.g. all rejected)

    def _back(self, join: Join, child: Item) -> None:
        now = time.perf_counter()
        if not join.back:
            join.first_back = now
        self.child_back(join, child)
        key = child.branch
        if not child.is_live and self.options[key].required and join.group is not None:
            join.group.cancel(SIBLING_FAILED)  # siblings not yet started skip the item
        if len(join.back) < len(join.children) or len(join.children) < len(self.options):
            return
        self.counters.held_up(key, now - join.first_back)
        self._decide(join)
        self.close_join(join, ordered=True)

    def _decide(self, join: Join) -> None:
        """The parent's outcome from its children, branches in declaration order."""
        parent = join.parent
        if not parent.is_live:
            return  # dropped by the window or an abort while its children were out
        outputs: dict[str, Any] = {}
        missing: dict[str, PyStreamError] = {}
        failure: Item | None = None
        for key in self.combinator.branches:
            child = join.back[key]
            if child.is_live:
                outputs[key] = child.data
                continue
            reason: PyStreamError = (
                child.error
                if isinstance(child.error, StageError)
                else ItemDropped(parent.seq, str(child.dropped or child.error))
            )
            if self.options[key].required:
                if failure is None and child.dropped != SIBLING_FAILED:
                    failure = child
            else:
                missing[key] = reason
                if isinstance(child.error, StageError):
                    send_home(self.home, DeadLetter(child.error))
        if failure is None:
            required_skipped = [
                k
                for k in self.combinator.branches
                if self.options[k].required and not join.back[k].is_live
            ]
            if required_skipped:  # only siblings that skipped: cannot happen without a failure
                failure = join.back[required_skipped[0]]
        if failure is not None:
            if failure.error is not None:
                parent.error = failure.error
                parent.data = None
            else:
                parent.drop(_in_branch(failure, self.name))
            return
        parent.data = Joined(MappingProxyType(outputs), MappingProxyType(missing))


class RouteJunction(JunctionActor):
    """Each parent to one branch, chosen by its key; merged back in order or per key."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        route = self.combinator
        assert isinstance(route, Route)
        self.route = route
        self._last_used: dict[str, float] = {}

    def arrived(self, parent: Item) -> None:
        try:
            key = self.route.key(parent.data)
        except BaseException as exc:  # user code: fails this item only
            parent.error = StageError(self.name, parent.seq, exc, parent.data)
            parent.data = None
            self.settled(parent)
            return
        branch = self._branch_for(key)
        if branch is None:
            parent.drop(f"{self.name!r} has no branch for key {key!r}")
            self.settled(parent)
            return
        join = self.open_join(parent, shared_claim=True)
        if join is None:
            return
        self.counters.per_key[branch] += 1
        self._last_used[branch] = time.monotonic()
        data = parent.data
        select = self.options[branch].select
        if select is not None:
            try:
                data = select(data)
            except BaseException as exc:
                child = parent.fork(branch, None, parent.expires_at, join.group, join.jseq)
                child.error = StageError(self.name, parent.seq, exc, parent.data)
                join.children[branch] = child
                self._back(join, child)
                return
        self.send_child(join, branch, data, join.group)

    def _branch_for(self, key: Any) -> str | None:
        name = str(key)
        if name in self.heads:
            return name
        if self.route.factory is not None and self._grow is not None:
            return self._new_branch(key, name)
        if self.route.default is not None:
            return str(self.route.default)
        return None

    def _new_branch(self, key: Any, name: str) -> str | None:
        try:
            chain = self.route.factory(key)  # type: ignore[misc]
            if not isinstance(chain, Chain):
                chain = Chain().add(chain, f"{self.name}_{name}")
            assert self._grow is not None
            self.heads[name] = self._grow(self.name, name, chain)
        except BaseException as exc:
            logger.error(
                "route %r: no branch could be made for key %r", self.name, key, exc_info=exc
            )
            return None
        self.options[name] = chain.options
        self._retire_idle()
        return name

    def _retire_idle(self) -> None:
        """Past ``max_keys``, retire the least recently used branches that hold nothing."""
        limit = self.route.max_keys
        if limit is None or len(self.heads) <= limit or self._prune is None:
            return
        idle = sorted((used, key) for key, used in self._last_used.items() if not self.inside[key])
        for _, key in idle[: len(self.heads) - limit]:
            del self.heads[key]
            del self._last_used[key]
            self.options.pop(key, None)
            self._prune(self.name, key)

    def _back(self, join: Join, child: Item) -> None:
        self.child_back(join, child)
        parent = join.parent
        if parent.is_live:
            if child.is_live:
                parent.data = child.data
            elif child.error is not None:
                parent.error = child.error
                parent.data = None
            else:
                parent.drop(_in_branch(child, self.name))
        self.close_join(join, ordered=self.route.ordered)
        self._retire_idle()


class TapJunction(JunctionActor):
    """Each parent passes on at once; a copy goes to each tap branch, on the side."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tap = self.combinator
        assert isinstance(tap, Tap)
        for key in self.options:  # the tap's own bound applies to each of its outputs
            self.options[key] = BranchOptions(
                required=False,
                max_age=self.options[key].max_age,
                capacity=self.options[key].capacity or tap.capacity,
                on_full=self.options[key].on_full or tap.on_full,
                select=self.options[key].select,
            )

    def arrived(self, parent: Item) -> None:
        for key in self.combinator.branches:
            self._copy(parent, key)
        parent.hops += 1
        parent.sent_at = time.perf_counter()
        send_or_return(self.downstream, self.home, parent, self.name)

    def _copy(self, parent: Item, key: str) -> None:
        data = parent.data
        select = self.options[key].select
        if select is not None:
            try:
                data = select(data)
            except BaseException as exc:
                send_home(self.home, DeadLetter(StageError(self.name, parent.seq, exc, data)))
                return
        join = Join(parent, None, self._next_in)  # a copy's join: the parent has gone on
        self._next_in += 1
        self.joins[join.jseq] = join
        self.counters.entered()
        self.send_child(join, key, data, [1])

    def _back(self, join: Join, child: Item) -> None:
        self.child_back(join, child)
        del self.joins[join.jseq]
        self.counters.pending -= 1
        if child.is_live:
            send_home(self.home, TapOutput(child.branch, child.data))
        elif isinstance(child.error, StageError):
            send_home(self.home, DeadLetter(child.error))
        elif child.dropped is not None and "was full" not in child.dropped:
            self.counters.dropped[child.branch] += 1

    def crashed(self, exc: BaseException) -> None:
        self.joins.clear()  # copies only: the main path never waited for them

    def on_stop(self) -> None:
        super().on_stop()
        for join in self.joins.values():  # copies still out when the pipeline stopped
            for key in join.children:
                self.counters.dropped[key] += 1
        self.joins.clear()
        self.counters.pending = 0


def _in_branch(child: Item, junction: str) -> str:
    """Why a parent dropped because its child did, naming the branch once."""
    reason = str(child.dropped)
    where = f"branch {child.branch!r} of {junction!r}"
    return reason if where in reason else f"{where}: {reason}"


def _drop_unstarted(child: Item, reason: str) -> bool:
    claim = child.claim
    if isinstance(claim, ClaimGroup):
        return claim.drop_unstarted(child, reason)
    if isinstance(claim, list) and child.is_live:
        try:
            claim.pop()  # the same token a stage takes to start it
        except IndexError:
            return False
        child.drop(reason)
        return True
    return False


JUNCTIONS: dict[str, type[JunctionActor]] = {
    "parallel": ParallelJunction,
    "route": RouteJunction,
    "tap": TapJunction,
}


def spawn_junction(
    group: ActorGroup,
    slot: JunctionSlot,
    downstream: pykka.ActorRef[Any],
    home: pykka.ActorRef[Any],
    counters: JunctionCounters,
    settled_go_home: bool,
    grow: Grow | None = None,
    prune: Prune | None = None,
) -> pykka.ActorRef[Any]:
    """Start the junction actor for ``slot``."""
    return group.spawn(
        JUNCTIONS[slot.kind], slot, downstream, home, counters, settled_go_home, grow, prune
    )
