"""What a stage is: PyStream's ``Stage`` base class, plain callables, and stage names."""

from __future__ import annotations

import abc
import functools
import inspect
import threading
import types
from collections.abc import Callable
from typing import Any

from ._errors import InvalidStage, InvalidStageName
from ._policy import FailurePolicy
from ._process_stage import ProcessStage
from ._scaling import Scaling

MAIN_PIPELINE_NAME = "MainPipeline"
"""The name of the outermost pipeline in profile keys (PyStream's constant)."""

FINAL_STAGE_NAME = "FinalStage"
"""Reserved: PyStream's name for its internal last stage."""

_RESERVED_NAMES = frozenset({MAIN_PIPELINE_NAME, FINAL_STAGE_NAME})

StageCallable = Callable[[Any], Any]
"""A stage is any one-argument callable; a ``Stage`` subclass adds cleanup and setup."""


class Stage(abc.ABC):
    """Base class for stages that hold state or resources.

    Subclasses define ``__call__(data) -> data`` and ``cleanup()``. ``setup()`` is an
    optional hook run in the stage's own thread before its first item, the place to open
    cameras or load models that must live on the thread that uses them.
    """

    name: str = ""

    @abc.abstractmethod
    def __call__(self, data: Any) -> Any:
        """Process one item and return the output for the next stage."""

    @abc.abstractmethod
    def cleanup(self) -> None:
        """Release what the stage holds; called once per ``setup()``, on the same thread
        (at stop, restart, or a rebuild in another mode)."""

    def setup(self) -> None:  # noqa: B027 - optional hook, empty on purpose
        """Prepare the stage in its own thread; runs before the first item."""


def check_stage_name(name: str) -> str:
    """Return ``name`` if it follows PyStream's rules, else raise ``InvalidStageName``."""
    if not isinstance(name, str) or not name:
        raise InvalidStageName(f"stage name must be a non-empty string, got {name!r}")
    if "-" in name or "__" in name:
        raise InvalidStageName(
            f"stage name {name!r} contains '-' or '__'; use single underscores, e.g. 'Detect_Cars'"
        )
    if name.startswith("_") or name.endswith("_"):
        raise InvalidStageName(
            f"stage name {name!r} starts or ends with '_'; remove the outer underscores"
        )
    if name in _RESERVED_NAMES:
        raise InvalidStageName(
            f"stage name {name!r} is reserved by the pipeline; choose another name"
        )
    return name


class StageSlot:
    """One named stage of a pipeline: its instance, how to make a fresh one, its policy.

        The slot outlives the actors that run it, so a pipeline rebuilt in another mode does
        keep a replaced stage; each actor that runs it sets it up on its own thread and cleans
    it up there, so ``cleanup()`` runs once per ``setup()``.
    """

    kind = "stage"  # a junction slot's kind names its combinator

    def __init__(
        self,
        name: str,
        stage: StageCallable,
        factory: Callable[[], StageCallable] | None = None,
        policy: FailurePolicy | None = None,
        scaling: Scaling | None = None,
        managed: bool = True,
    ) -> None:
        if not callable(stage):
            raise InvalidStage(
                f"stage {name!r} is a {type(stage).__name__}, which is not callable; "
                "pass a function taking one argument or a pystream_actors.Stage instance"
            )
        self.name = name
        self.stage = stage
        self.factory = factory
        self.policy = policy or FailurePolicy()
        self.scaling = scaling or Scaling()
        self.managed = managed  # False: a pool sets the shared instance up, not its workers
        self._lock = threading.Lock()
        self._is_set_up = False

    @classmethod
    def build(
        cls,
        name: str,
        stage: object,
        factory: Callable[[], StageCallable] | None,
        policy: FailurePolicy,
        scaling: Scaling,
    ) -> StageSlot:
        """The slot for what the user gave (an instance, a Stage class or a factory),
        wrapped for a worker process when ``scaling`` asks for one, and checked."""
        if scaling.executor == "ray":  # built in each Ray actor, never in this process
            from ._ray_host import RaySpec

            spec = RaySpec.build(name, stage, factory)
            return cls(name, spec, spec.renewed, policy, scaling)
        instance, factory = resolve_stage(name, stage, factory)
        if scaling.executor == "process":
            factory = ProcessStage.factory_for(name, instance, factory)
            instance = factory()
        slot = cls(name, instance, factory, policy, scaling)
        slot.check_workers_can_share()
        return slot

    def renewed(self) -> StageSlot:
        """The slot for a restart: a fresh instance from the factory, else this same slot."""
        if self.factory is None:
            return self
        return StageSlot(self.name, self.factory(), self.factory, self.policy, self.scaling)

    def replaced_by(
        self,
        stage: StageCallable | type | None,
        factory: Callable[[], StageCallable] | None = None,
    ) -> StageSlot:
        """A slot running ``stage`` (an instance or Stage class) or ``factory``'s products."""
        return StageSlot.build(self.name, stage, factory, self.policy, self.scaling)

    def worker_slots(self) -> list[StageSlot]:
        """The slots of a pool's workers: the instance made at ``add`` is the first worker's,
        the factory makes the others, so N workers set up exactly N instances. Without a
        factory every worker shares this slot's instance (the pool sets it up once)."""
        if self.factory is None:
            return [self.worker_slot() for _ in range(self.scaling.workers)]
        first = StageSlot(self.name, self.stage, self.factory, self.policy)
        return [first, *(self.worker_slot() for _ in range(self.scaling.workers - 1))]

    def worker_slot(self) -> StageSlot:
        """The slot of one new worker of a pooled stage: its own instance, or the shared one."""
        if self.factory is not None:
            return StageSlot(self.name, self.factory(), self.factory, self.policy)
        return StageSlot(self.name, self.stage, None, self.policy, managed=False)

    @property
    def shares_instance(self) -> bool:
        """True when a pooled stage's workers all call this slot's one instance."""
        return self.factory is None

    def check_workers_can_share(self) -> None:
        """Refuse one stateful instance for several worker threads unless declared safe."""
        if self.scaling.workers == 1 or self.factory is not None or self.scaling.thread_safe:
            return
        if isinstance(
            self.stage, (types.FunctionType, types.BuiltinFunctionType, functools.partial)
        ):
            return  # plain functions keep no state of their own
        raise InvalidStage(
            f"stage {self.name!r}: workers={self.scaling.workers} would share one "
            f"{type(self.stage).__name__} instance between threads; pass the Stage class or "
            "factory=... so each worker gets its own instance, or thread_safe=True if "
            "sharing is safe"
        )

    def ensure_setup(self) -> None:
        """Run the stage's ``setup()`` once, in the calling (actor) thread."""
        if not self.managed or (self.scaling.pooled and not self.shares_instance):
            return  # a pool's template instance is set up by the worker that uses it
        with self._lock:
            if self._is_set_up:
                return
            setup = getattr(self.stage, "setup", None)
            if callable(setup):
                setup()
            self._is_set_up = True

    def cleanup(self) -> None:
        """Run the stage's ``cleanup()`` if it was set up; a later start sets it up again."""
        if not self.managed or (self.scaling.pooled and not self.shares_instance):
            return
        with self._lock:
            if not self._is_set_up:
                return
            self._is_set_up = False
        cleanup = getattr(self.stage, "cleanup", None)
        if callable(cleanup):
            cleanup()


def resolve_stage(
    name: str, stage: object, factory: Callable[[], StageCallable] | None = None
) -> tuple[StageCallable, Callable[[], StageCallable] | None]:
    """(instance, factory) from what the user gave: an instance, a class, or a factory."""
    if isinstance(stage, type) and issubclass(stage, Stage):
        factory = stage  # a Stage class: each actor (and each restart) gets its own instance
        stage = None
    if stage is None:
        if factory is None:
            raise InvalidStage(f"stage {name!r}: pass a stage, a Stage class or factory=...")
        if not callable(factory):
            raise InvalidStage(f"stage {name!r}: factory must be a zero-argument callable")
        try:
            stage = factory()
        except Exception as exc:
            raise InvalidStage(f"stage {name!r}: its factory raised {exc!r}") from exc
    if not callable(stage):
        raise InvalidStage(
            f"stage {name!r} is a {type(stage).__name__}, which is not callable; "
            "pass a function taking one argument or a pystream_actors.Stage instance"
        )
    if _is_async(stage):
        raise InvalidStage(
            f"stage {name!r} is an async function; stages are called on their own thread and "
            "must return their output: use a plain def (run a coroutine inside it with "
            "asyncio.run(...) if you must)"
        )
    return stage, factory


def _is_async(stage: object) -> bool:
    if inspect.isfunction(stage) or inspect.ismethod(stage) or isinstance(stage, functools.partial):
        call: object = stage
    else:
        call = type(stage).__call__
    if isinstance(call, functools.partial):
        call = call.func
    return inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)
