"""Graphs as compositions: a chain whose steps are stages or combinators with branches.

A combinator (``Parallel``, ``Route``, ``Tap``) is one step of the chain it is added to;
each of its branches is a ``Chain`` built with the same ``add`` as a ``Pipeline``. So a
graph is series-parallel: no cross edges, no cycles, and a join always knows what it
waits for (every child envelope comes back to its junction, failed or dropped).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Union

from . import _arguments as check
from ._errors import InvalidArgument, InvalidStageName, PyStreamError
from ._policy import FailurePolicy, OnError
from ._scaling import Executor, Scaling
from ._stage import Stage, StageCallable, StageSlot, check_stage_name

BranchOnFull = Literal["drop_oldest", "reject", "block"]


@dataclass(frozen=True)
class BranchOptions:
    """How a branch treats the children it gets (see ``Chain``)."""

    required: bool = True
    max_age: float | None = None
    capacity: int | None = None
    on_full: BranchOnFull | None = None
    """None: ``"drop_oldest"`` (a ``Tap``'s own ``on_full`` for a tap branch; the
    pipeline's ``on_full`` for a ``Sync`` source). ``"block"`` only for a ``Sync`` source."""
    select: Callable[[Any], Any] | None = None


class Chain:
    """A branch: a linear list of stages (or nested combinators), built with ``add``.

    ``required=False`` makes the branch optional in a ``Parallel``: when it fails or drops
    an item, the join goes on without it (``Joined.missing`` says why). ``max_age`` drops a
    child older than that many seconds since acceptance before a branch stage starts it.
    ``capacity`` caps the children inside the branch; past it ``on_full="drop_oldest"``
    drops the oldest one no stage has started, ``"reject"`` the new one (a junction never
    blocks). As a ``Sync`` source, ``capacity``/``on_full`` are that source's own window
    (``"block"`` allowed; None: the pipeline's settings). ``select(item)`` gives the branch only the part of the item it needs; it runs
    on the junction's thread, so keep it cheap.
    """

    def __init__(
        self,
        *,
        required: bool = True,
        max_age: float | None = None,
        capacity: int | None = None,
        on_full: BranchOnFull | None = None,
        select: Callable[[Any], Any] | None = None,
    ) -> None:
        check.flag("required", required)
        if max_age is not None:
            check.positive_seconds("max_age", max_age)
        if capacity is not None:
            check.whole_number("capacity", capacity, 1)
        if on_full is not None:
            check.one_of("on_full", on_full, ("drop_oldest", "reject", "block"))
        if select is not None and not callable(select):
            raise InvalidArgument(f"select must be a one-argument callable, got {select!r}")
        self.options = BranchOptions(required, max_age, capacity, on_full, select)
        self.slots: list[Slot] = []

    def add(
        self,
        stage: Any = None,
        name: str | None = None,
        *,
        factory: Callable[[], StageCallable] | None = None,
        on_error: OnError = "skip",
        retries: int = 0,
        restart_backoff: tuple[float, float] = (0.01, 1.0),
        max_restarts: int = 5,
        restart_window: float = 60.0,
        workers: int = 1,
        ordered: bool = True,
        executor: Executor = "thread",
        thread_safe: bool = False,
        ray_options: Mapping[str, Any] | None = None,
    ) -> Chain:
        """Append a stage (the options of ``Pipeline.add``) or a combinator; returns the chain.

        A stage inside a branch needs a name (its own ``name`` attribute, or ``name=``):
        names are unique across the whole graph, so runtime control and statistics find it.
        """
        if name is None:
            name = getattr(stage, "name", "") if not isinstance(stage, type) else ""
            if not name:
                raise InvalidStageName(
                    "a stage inside a Chain needs a name: pass name=... (names are unique "
                    "across the whole pipeline, so control calls and statistics can find it)"
                )
        if getattr(stage, "kind", "") == "sync":
            raise InvalidArgument(
                f"{name!r}: a Sync is a pipeline's first step, not a step inside a Chain"
            )
        slot = make_slot(
            stage,
            name,
            factory,
            FailurePolicy(on_error, retries, restart_backoff, max_restarts, restart_window),
            Scaling(workers, ordered, executor, thread_safe, ray_options),
        )
        _check_unique([slot], {n for s in self.slots for n in names_in(s)})
        self.slots.append(slot)
        return self

    def __repr__(self) -> str:
        return f"Chain({[slot.name for slot in self.slots]})"


class Combinator:
    """A step with branches; added to a chain with ``add(combinator, name)``."""

    kind = ""

    def __init__(self, branches: Mapping[str, Any]) -> None:
        self.branches: dict[str, Chain] = {}
        for key, branch in branches.items():
            self.branches[str(key)] = as_chain(str(key), branch)
        taken: set[str] = set()
        for key, chain in self.branches.items():
            if chain.options.on_full == "block" and self.kind != "sync":
                raise InvalidArgument(
                    f"branch {key!r}: on_full='block' is for a Sync source only (a junction "
                    "never blocks); use 'drop_oldest' or 'reject'"
                )
            _check_unique(chain.slots, taken)
            taken |= {n for s in chain.slots for n in names_in(s)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(self.branches)})"


class Parallel(Combinator):
    """Every item goes to every branch at once; the outputs are joined by item.

    The item's outcome: a ``Joined`` mapping ``{branch: output}`` when every required
    branch succeeded; else the ``StageError`` of the first failing required branch (in
    declaration order; siblings not yet started skip the item) or ``ItemDropped``. An
    optional branch that fails or drops is left out, and ``Joined.missing`` says why.
    Branches get the same object: treat it as read-only and return new values.
    """

    kind = "parallel"

    def __init__(self, **branches: Any) -> None:
        if len(branches) < 1:
            raise InvalidArgument("Parallel needs at least one branch, e.g. Parallel(a=f, b=g)")
        super().__init__(branches)


class Route(Combinator):
    """Each item goes to one branch, chosen by ``key(item)``.

    ``branches`` maps keys to chains; an unknown key goes to the ``default`` branch key, or
    (``default=None``) the item is dropped with a reason naming the key. With ``factory``
    each new key gets its own chain, ``factory(key)``, made on first sight; past ``max_keys``
    the least recently used idle one is retired (its stages clean up on their own threads).
    ``ordered=True`` keeps input order across branches; ``ordered=False`` keeps per-key
    order only, so a slow branch never delays another.
    """

    kind = "route"

    def __init__(
        self,
        key: Callable[[Any], Hashable],
        branches: Mapping[Hashable, Any] | None = None,
        *,
        factory: Callable[[Any], Chain] | None = None,
        max_keys: int | None = None,
        default: Hashable | None = None,
        ordered: bool = True,
    ) -> None:
        if not callable(key):
            raise InvalidArgument(f"key must be a one-argument callable, got {key!r}")
        if (branches is None) == (factory is None):
            raise InvalidArgument("Route needs either branches={key: chain} or factory=...")
        if factory is not None and not callable(factory):
            raise InvalidArgument(f"factory must be a callable taking the key, got {factory!r}")
        if max_keys is not None:
            check.whole_number("max_keys", max_keys, 1)
            if factory is None:
                raise InvalidArgument("max_keys only applies with factory=...")
        check.flag("ordered", ordered)
        given = dict(branches or {})
        self.keys: dict[str, Hashable] = {str(k): k for k in given}
        if len(self.keys) != len(given):
            raise InvalidArgument("two branch keys of this Route have the same str()")
        if default is not None and default not in given:
            raise InvalidArgument(
                f"default={default!r} is not one of the branch keys {list(given)}"
            )
        super().__init__({str(k): v for k, v in given.items()})
        self.key = key
        self.factory = factory
        self.max_keys = max_keys
        self.default = default
        self.ordered = ordered


class Tap(Combinator):
    """Side outputs the main path never waits for: the item passes on unchanged at once,
    and a copy goes to each tap branch, read with ``handle.results(output=name)`` or
    ``handle.latest(output=name)``.

    Each tap branch holds at most ``capacity`` copies; past it ``on_full="drop_oldest"``
    drops the oldest copy no stage has started, ``"reject"`` the new copy. Drops are
    counted in the tap's statistics, failures go to the dead letters.
    """

    kind = "tap"

    def __init__(
        self, *, capacity: int = 4, on_full: BranchOnFull = "drop_oldest", **outputs: Any
    ) -> None:
        if not outputs:
            raise InvalidArgument("Tap needs at least one output, e.g. Tap(record=writer)")
        self.capacity = check.whole_number("capacity", capacity, 1)
        self.on_full = check.one_of("on_full", on_full, ("drop_oldest", "reject"))
        super().__init__(outputs)


class JunctionSlot:
    """A combinator as one step of a chain: its name and its branches."""

    def __init__(self, name: str, combinator: Combinator) -> None:
        self.name = check_stage_name(name)
        self.combinator = combinator

    @property
    def kind(self) -> str:
        return self.combinator.kind

    @property
    def branches(self) -> dict[str, Chain]:
        return self.combinator.branches


Slot = Union[StageSlot, JunctionSlot]


@dataclass(frozen=True)
class Joined(Mapping[str, Any]):
    """The joined outputs of one item: read-only, ``joined["detect"]``.

    ``missing`` maps each optional branch left out to why (its ``StageError`` or
    ``ItemDropped``). From a ``Sync``: one entry per source (None for a source without a
    partner under ``missing="none"``, with the reason in ``missing``), ``stamps`` maps each
    source present to its sample's stamp and ``stamp`` is the anchor's (trigger's).
    """

    outputs: Mapping[str, Any]
    missing: Mapping[str, PyStreamError]
    stamps: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    stamp: float | None = None

    def __getitem__(self, branch: str) -> Any:
        return self.outputs[branch]

    def __iter__(self) -> Iterator[str]:
        return iter(self.outputs)

    def __len__(self) -> int:
        return len(self.outputs)

    def __repr__(self) -> str:
        missing = f", missing={sorted(self.missing)}" if self.missing else ""
        return f"Joined({dict(self.outputs)!r}{missing})"


def as_chain(key: str, branch: Any) -> Chain:
    """A branch as given: a ``Chain``, or a stage that becomes a one-stage chain named ``key``."""
    if isinstance(branch, Chain):
        if not branch.slots:
            raise InvalidArgument(f"branch {key!r} is an empty Chain; add a stage to it")
        return branch
    return Chain().add(branch, key)


def make_slot(
    stage: Any,
    name: str,
    factory: Callable[[], StageCallable] | None,
    policy: FailurePolicy,
    scaling: Scaling,
) -> Slot:
    """The slot for one ``add``: a combinator's junction, or a stage."""
    check_stage_name(name)
    if isinstance(stage, Combinator):
        if factory is not None or policy != FailurePolicy() or scaling != Scaling():
            raise InvalidArgument(
                f"{name!r} is a {type(stage).__name__}: stage options (on_error, workers, "
                "executor, ...) belong to the stages inside its branches"
            )
        return JunctionSlot(name, stage)
    slot = StageSlot.build(name, stage, factory, policy, scaling)
    instance = slot.stage
    if isinstance(instance, Stage) or hasattr(instance, "name"):
        try:
            instance.name = name
        except AttributeError:
            pass
    return slot


def names_in(slot: Slot) -> Iterator[str]:
    """Every name a slot brings into the graph: its own and its branches' stages'."""
    yield slot.name
    if isinstance(slot, JunctionSlot):
        for chain in slot.branches.values():
            for inner in chain.slots:
                yield from names_in(inner)


def _check_unique(slots: list[Slot], taken: set[str]) -> None:
    seen = set(taken)
    for slot in slots:
        for name in names_in(slot):
            if name in seen:
                raise InvalidStageName(
                    f"a stage named {name!r} is already in this graph; names are unique "
                    "across the whole pipeline, branches included"
                )
            seen.add(name)


def check_unique(slots: list[Slot], taken: set[str]) -> None:
    """Refuse ``slots`` if any name in them (branches included) is taken or repeated."""
    _check_unique(slots, taken)


def walk(slots: list[Slot], prefix: str = "") -> Iterator[tuple[str, Slot]]:
    """(path, slot) for every slot, branches after their junction, in order.

    Paths join junction names, branch keys and stage names with ``/``:
    ``Perceive/segment/Segment``.
    """
    for slot in slots:
        path = f"{prefix}{slot.name}"
        yield path, slot
        if isinstance(slot, JunctionSlot):
            for key, chain in slot.branches.items():
                yield from walk(chain.slots, f"{path}/{key}/")
