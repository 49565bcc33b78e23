"""A stage run by Ray actors, fronted by one pykka actor of ours (``executor="ray"``).

Design (a') of the Ray design study, "gated ref forwarding": ``RayStageActor`` stands in
the chain as the stage (it speaks the hand-over protocol, ``Endpoint``) and gives each
live item to one of its Ray actors (``StageHost``) without waiting. Each call answers with
a tiny *status* (ok / failed with the exception / held, and the service time measured in
the Ray actor); the actor learns it through a callback that sends it a message, never by
blocking, and forwards items in input order once their status is known. Between two Ray
stages the item carries the output's ``ObjectRef``, so the data goes from Ray actor to Ray
actor through the object store, never through this process; before any other stage (or the
coordinator) the value is fetched the same non-blocking way.

Between two Ray stages under ``on_error="skip"`` (the default) the item goes on at once,
with the output's ref, as soon as it is submitted (design (a)): the next Ray stage submits
without waiting for this hop, and this hop's status, still collected, only feeds statistics
and supervision (one status per Ray actor is awaited at a time: as a Ray actor runs its
calls in order, the earlier ones are then done and taken in one go). The next stage
then owns the item and settles it: a stage exception comes as a ``Failed`` envelope that
later hosts pass on unrun (``PASSED``), and the death of this stage's Ray actor as a Ray
error naming that actor, which maps back to this stage; either way the item fails once,
with ``StageError`` naming this stage, in its place in the order. Under ``restart`` or
``stop`` a failed Ray actor holds the items after the failure for its successor, so items
are gated by their status there, and so are ``drop_oldest`` items (their claim is released
when the hop ends) and any item behind one that is still gated.

Guarantees, as for local stages:

- *order*: one submitter per Ray actor (this actor), Ray actors that run one call at a time
  in call order, no Ray retries; outputs leave through a reorder buffer;
- *one outcome per item*: a gated item goes on only after its hop reported success; one
  forwarded at once is settled by the next stage, from the output, the ``Failed``
  envelope, or the Ray error that names the Ray actor of this stage; a stage's exception
  fails the item with ``StageError`` naming the stage that raised;
- *supervision*: a Ray actor that dies (killed, its node lost) fails the items it held
  (at most ``max_in_flight``): Ray cannot say which of them ran, as answers are lost with
  the process, so none is run twice; a stage that raised under ``restart`` runs nothing
  more and its queued items go, unstarted and in order, to the replacement, which our
  supervisor starts with its back-off (``max_restarts=0`` for Ray: one policy, one count);
- *bounded memory*: at most ``max_in_flight`` calls per Ray actor; the rest wait here, where
  ``drop_oldest`` and ``max_age`` still apply, and the pipeline's window bounds the whole.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from time import perf_counter
from typing import Any

import pykka

from ._actors import ActorGroup
from ._errors import MissingExtra, PipelineInitiationError, PipelineTerminated, StageError
from ._handover import Endpoint, settle_ready
from ._messages import (
    FailureNotice,
    Item,
    Notice,
    ReplaceWorker,
    WhenReady,
    send_home,
    send_or_return,
)
from ._ray_host import FAILED, OK, PASSED, RAY_MISSING, SERVICE, Failed, StageHost
from ._stage import StageSlot
from ._statistics import PipelineStatistics, PoolCounters, StageStatistics

logger = logging.getLogger("pystream_actors")

DEFAULT_MAX_IN_FLIGHT = 8
"""Calls one Ray actor may have queued at a time, unless ``ray_options["max_in_flight"]``."""
CLEANUP_TIMEOUT = 10.0  # seconds a retiring Ray actor gets to run cleanup() at a stop

_ray: Any = None
_object_ref: Any = None
_host_class: Any = None
_init_lock = threading.Lock()


def ray_module() -> Any:
    """The ``ray`` package, imported on first use; ``MissingExtra`` if it is not installed."""
    global _ray, _object_ref
    if _ray is None:
        try:
            import ray
        except ImportError:
            raise MissingExtra(RAY_MISSING) from None
        _object_ref = ray.ObjectRef
        _ray = ray
    return _ray


def ensure_ray() -> Any:
    """Ray, connected: the Ray this process initialised, else one started here (once)."""
    ray = ray_module()
    if ray.is_initialized():
        return ray
    with _init_lock:
        if not ray.is_initialized():
            address = os.environ.get("RAY_ADDRESS")
            if address:
                logger.warning("Ray was not initialised: connecting to RAY_ADDRESS=%s", address)
                ray.init(address=address)
            else:
                logger.warning(
                    "Ray was not initialised: starting a local Ray for executor='ray' stages "
                    "(call ray.init(address=...) before starting the pipeline to use a cluster)"
                )
                ray.init(address="local", include_dashboard=False)
    return ray


def connect_ray(address: str) -> Any:
    """Connect this process to the Ray at ``address`` (as ``ray.init(address=...)``), unless
    it is connected already; Ray stages started later run there."""
    ray = ray_module()
    with _init_lock:
        if not ray.is_initialized():
            ray.init(address=address)
    return ray


def _host() -> Any:
    global _host_class
    if _host_class is None:
        _host_class = ray_module().remote(StageHost)
    return _host_class


def when_done(ref: Any, callback: Callable[[Any], None]) -> None:
    """Call ``callback(value or Ray error)`` on a Ray thread once ``ref`` is ready; never
    blocks. ``ObjectRef._on_completed`` is what ``ref.future()`` is built on, minus the
    ``Future``; a Ray without it gets the ``Future``."""
    on_completed = getattr(ref, "_on_completed", None)
    if on_completed is not None:
        on_completed(callback)
        return

    def done(future: Any) -> None:
        error = future.exception()
        callback(error if error is not None else future.result())

    ref.future().add_done_callback(done)


def _is_ref(value: Any) -> bool:
    return _object_ref is not None and type(value) is _object_ref


def _plain(value: Any) -> Any:
    """What an error may carry as the stage's input: never a ref into Ray's object store."""
    return None if _is_ref(value) else value


_stage_of_actor: dict[str, str] = {}
"""Ray actor id (hex) -> the name of the Ray stage it runs: an error that an input's ref
carries from an earlier Ray stage (forwarded before its status was known) names the Ray
actor that died there, and the item fails naming that stage."""


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes: a call whose input was an error fails with a
    ``RayTaskError`` whose ``cause`` is that error, which may be one such in turn."""
    chain = [exc]
    for _ in range(64):
        cause = getattr(exc, "cause", None)
        if not isinstance(cause, BaseException) or cause is exc:
            break
        exc = cause
        chain.append(exc)
    return chain


def _root(exc: BaseException) -> BaseException:
    """The first error of a chain (the death of an earlier stage's Ray actor, say)."""
    return _chain(exc)[-1]


def _actor_id(exc: BaseException) -> str | None:
    try:
        actor_id = getattr(exc, "actor_id", None)
    except Exception:
        return None
    if actor_id is None:
        return None
    return actor_id if isinstance(actor_id, str) else actor_id.hex()


_DEATHS = ("RayActorError", "WorkerCrashedError", "OutOfMemoryError", "NodeDiedError")
_death_types: tuple[type[BaseException], ...] = ()


def _is_death(exc: BaseException) -> bool:
    """True if ``exc`` says the Ray actor (its process or node) is gone."""
    global _death_types
    if not _death_types:
        errors = ray_module().exceptions
        _death_types = tuple(getattr(errors, name) for name in _DEATHS if hasattr(errors, name))
    return isinstance(exc, _death_types)


class RayCounters(PoolCounters):
    """A Ray stage's counters: one set per Ray actor, the node each runs on, and the items
    waiting here or at the Ray actors (added to the mailbox depth)."""

    def __init__(self, name: str, workers: int, timed: bool = True) -> None:
        super().__init__(name, workers, timed)
        self.nodes: list[str] = [""] * workers
        self.pending = 0

    def snapshot(
        self,
        queue_depth: int,
        child: PipelineStatistics | None = None,
        since: float = 0.0,
    ) -> StageStatistics:
        return super().snapshot(queue_depth + self.pending, child, since)


class _Worker:
    """One Ray actor running the stage, as this actor sees it."""

    __slots__ = (
        "broken",
        "dead",
        "handle",
        "ident",
        "index",
        "load",
        "process",
        "process_value",
        "ready",
        "replace",
        "watched",
    )

    def __init__(self, handle: Any, index: int) -> None:
        self.handle = handle
        self.process = handle.process.remote  # bound once: Ray makes a method per access
        self.process_value = handle.process_value.remote
        self.index = index
        self.ident = handle._actor_id.hex()
        self.load = 0  # calls submitted and not answered
        self.broken = False  # failed under restart/stop, or dead: no new items
        self.dead = False
        self.replace = False  # the supervisor asked for a replacement while calls were out
        self.watched = -1  # the forwarded item whose status is awaited (-1: none)
        self.ready: Future[BaseException | None] = Future()


class _Hop:
    """One item at a Ray actor."""

    __slots__ = ("claimed", "item", "out", "ref", "worker")

    def __init__(self, item: Item, worker: _Worker, ref: Any, out: Any, claimed: bool) -> None:
        self.item = item
        self.worker = worker
        self.ref = ref  # what the callback waits on: the status, or (status, output)
        self.out = out  # the output's ref when forwarded by ref (None: in ``ref``)
        self.claimed = claimed


class _Sent:
    """One item at a Ray actor that was forwarded at once to the next Ray stage, with the
    ref of its output: it belongs to that stage now; only its status comes back here (for
    statistics and supervision), and nothing here touches the item again."""

    __slots__ = ("ref", "sent_at", "seq", "worker")

    def __init__(self, worker: _Worker, sent_at: float, seq: int, ref: Any) -> None:
        self.worker = worker
        self.sent_at = sent_at
        self.seq = seq
        self.ref = ref  # its status


class _Wake:
    """Ray thread -> actor: answers are waiting in ``RayStageActor._answers``."""


_WAKE = _Wake()


class _Fetched:
    __slots__ = ("local", "value")

    def __init__(self, local: int, value: Any) -> None:
        self.local = local
        self.value = value


def _on_fetched(actor: pykka.ActorRef[Any], local: int, value: Any) -> None:
    try:
        actor.tell(_Fetched(local, value))
    except pykka.ActorDeadError:
        pass


class RayStageActor(Endpoint):
    """Gives items to N Ray actors and forwards the answers in input order."""

    def __init__(
        self,
        group: ActorGroup,
        slot: StageSlot,
        downstream: pykka.ActorRef[Any],
        home: pykka.ActorRef[Any],
        counters: RayCounters,
        waiting: bool = False,
        settled_go_home: bool = True,
    ) -> None:
        super().__init__(
            group,
            f"StageActor-{slot.name}-ray",
            slot.name,
            downstream,
            home,
            waiting,
            settled_go_home,
        )
        self._slot = slot
        self._policy = slot.policy
        self._ordered = slot.scaling.ordered
        self._counters = counters
        self._timed = counters.timed
        options = dict(slot.scaling.ray_options or {})
        self._max_in_flight: int = options.pop("max_in_flight", DEFAULT_MAX_IN_FLIGHT)
        self._start_timeout: float | None = options.pop("start_timeout", None)
        options.setdefault("num_cpus", 1)  # explicit: a named resource would hold 1 CPU
        options.update(max_restarts=0, max_task_retries=0, max_concurrency=1)
        self._options = options
        self._workers: list[_Worker | None] = [None] * slot.scaling.workers
        self._queued: collections.deque[tuple[int, Item]] = collections.deque()
        self._in_hop: dict[int, _Hop] = {}
        self._sent: dict[int, _Sent] = {}  # forwarded before their status: see _submit
        self._forwards_early = self._policy.on_error == "skip"
        """Between two Ray stages, forward an item with its output's ref as soon as it is
        submitted (design (a) of the study), without waiting for the hop's status: only
        under ``skip``, where the Ray actor never holds an item for a successor (a failed
        item travels as a ``Failed`` envelope that later hosts pass on) and a death fails
        the items it held without taking them back."""
        self._finished: dict[int, Item | None] = {}  # ordered: done, waiting for their turn
        self._fetching: dict[int, Item] = {}  # outputs being fetched for a local downstream
        self._next_in = 0
        self._next_out = 0
        self._paused = False  # after Pause or a retirement: nothing more is submitted
        self._reviving = False  # handing over with items only this actor can finish
        self._ready_futures: list[Future[BaseException | None]] = []
        self._replacements = 0  # Ray actors waiting to be replaced once their calls are back
        self._answers: collections.deque[tuple[int, _Worker, Any]] = collections.deque()
        self._wake_pending = False

    # -- Endpoint hooks ---------------------------------------------------------------

    def start_work(self) -> None:
        self._paused = False
        try:
            ensure_ray()
            for index in range(len(self._workers)):
                self._spawn(index)
        except BaseException as exc:
            self.setup_error = exc
            level = logging.DEBUG if isinstance(exc, PipelineTerminated) else logging.ERROR
            logger.log(
                level, "stage %r: its Ray actors could not be made", self.stage_name, exc_info=exc
            )

    def _spawn(self, index: int) -> None:
        holds = self._policy.on_error != "skip"
        handle = (
            _host().options(**self._options).remote(self._slot.stage, self._policy.retries, holds)
        )
        worker = _Worker(handle, index)
        _stage_of_actor[worker.ident] = self.stage_name
        counters = self._counters
        timer: threading.Timer | None = None
        if self._start_timeout is not None:
            unplaced = PipelineInitiationError(
                f"stage {self.stage_name!r}: a Ray actor was not placed and set up within "
                f"{self._start_timeout}s; it asked for {self._slot.scaling.ray_options} (num_cpus "
                "defaults to 1; a custom resource must exist on some node)"
            )
            timer = threading.Timer(self._start_timeout, settle_ready, (worker.ready, unplaced))
            timer.daemon = True
            timer.name = "pystream-ray-start"
            timer.start()

        def on_ready(value: Any) -> None:  # on a Ray thread
            if timer is not None:
                timer.cancel()
            if isinstance(value, BaseException):
                error: BaseException | None = value
            else:
                node, _pid, error = value
                counters.nodes[index] = node
            settle_ready(worker.ready, error)

        when_done(handle.ready.remote(), on_ready)
        self._ready_futures = [f for f in self._ready_futures if not f.done()] + [worker.ready]
        self._workers[index] = worker

    def stop_work(self, final: bool) -> None:
        if not final:  # what arrived before a Pause runs before the cleanup Ray queues
            self._pump(unbounded=True)
        self._paused = True
        self._reviving = False
        for index, worker in enumerate(self._workers):
            if worker is not None:
                self._workers[index] = None
                self._retire_worker(worker, wait=final)

    def _retire_worker(self, worker: _Worker, wait: bool) -> None:
        """Run the stage's cleanup() in the Ray actor (after its queued calls), then end it."""
        worker.broken = True
        if worker.dead:
            return
        ray = ray_module()
        placed = worker.ready.done() and worker.ready.result() is None
        try:
            if wait and not placed:  # never set up (not placed, or setup raised): no cleanup
                ray.kill(worker.handle, no_restart=True)
                return
            ref = worker.handle.cleanup.remote()
            sent = sum(1 for one in self._sent.values() if one.worker is worker)
            if not wait or worker.load > sent:  # Ray ends it once its calls are done
                # (and it is dropped); calls whose items went on are done or about to be
                when_done(ref, self._log_cleanup)
                return
            try:
                self._log_cleanup(ray.get(ref, timeout=CLEANUP_TIMEOUT))
            except Exception as exc:
                logger.debug("stage %r: cleanup() in Ray: %r", self.stage_name, exc)
            ray.kill(worker.handle, no_restart=True)
        except Exception as exc:  # Ray is shut down, or the actor is gone
            logger.debug("stage %r: retiring a Ray actor: %r", self.stage_name, exc)

    def _log_cleanup(self, error: Any) -> None:
        if isinstance(error, str):
            logger.error("stage %r: cleanup() raised in its Ray actor: %s", self.stage_name, error)

    def on_stop(self) -> None:
        super().on_stop()
        for index, worker in enumerate(self._workers):
            if worker is not None and not worker.dead:
                self._workers[index] = None
                try:
                    ray_module().kill(worker.handle, no_restart=True)
                except Exception:
                    pass

    def busy(self) -> bool:
        return bool(
            self._in_hop or self._sent or self._fetching or (self._queued and self._finished)
        )

    def receive(self, message: Any) -> Any:
        kind = type(message)
        if kind is _Wake:
            self._take_answers()
            return None
        if kind is _Fetched:
            self._fetched(message)
            return None
        if kind is WhenReady and not self.waiting:
            self._answer_when_ready(message.done)
            return None
        return super().receive(message)

    def other_message(self, message: Any) -> Any:
        if isinstance(message, ReplaceWorker):
            self._replace_worker(message.index, message.actor_urn)
            return None
        return super().other_message(message)

    # -- items --------------------------------------------------------------------------

    def work(self, item: Item) -> None:
        local = self._next_in
        self._next_in = local + 1
        if self.setup_error is not None and not any(self._workers):
            self._fail(local, item, self.setup_error, item.data, None)
            self._after()
            return
        self._queued.append((local, item))
        self._after()

    def _pump(self, unbounded: bool = False) -> None:
        """Submit queued items to the least-loaded usable Ray actors."""
        if self._paused and not self._reviving:
            return
        queued = self._queued
        workers = self._workers
        limit = 1 << 30 if unbounded else self._max_in_flight
        while queued:
            best: _Worker | None = None
            for worker in workers:
                if (
                    worker is not None
                    and not worker.broken
                    and worker.load < limit
                    and (best is None or worker.load < best.load)
                ):
                    best = worker
            if best is None:
                return
            local, item = queued.popleft()
            self._submit(local, item, best)

    def _submit(self, local: int, item: Item, worker: _Worker) -> None:
        now = perf_counter()
        claimed = False
        if item.claim is None and now <= item.expires_at:  # no window may drop it
            item.hops += 1
        elif item.begin(now):  # drop_oldest: take the item from the window's reach
            claimed = True
        else:  # dropped by the window, or past its deadline
            if now > item.expires_at:
                self._counters.dropped += 1
            self._settle(local, item)
            return
        data = item.data
        by_ref = getattr(self.downstream, "actor_class", None) is RayStageActor
        try:
            if by_ref:
                ref, out = worker.process(data)
            else:
                ref, out = worker.process_value(data), None
        except Exception as exc:  # the input would not serialise, or Ray is shut down
            if claimed:
                item.release_claim()
            self._fail(local, item, exc, data, None)
            return
        worker.load += 1
        if by_ref and not claimed and self._forwards_early and self._in_turn(local):
            # On at once with the output's ref: the next Ray stage submits without waiting
            # for this hop (its Ray actor waits for the data instead). The item is theirs.
            self._sent[local] = _Sent(worker, item.sent_at, item.seq, ref)
            item.data = out
            item.sent_at = now
            if self._ordered:
                self._next_out = local + 1
            send_or_return(self.downstream, self.home, item, self.stage_name)
            if worker.watched < 0:
                self._watch(worker, local, ref)
            return
        self._in_hop[local] = _Hop(item, worker, ref, out, claimed)
        when_done(ref, lambda value: self._answered(local, worker, value))

    def _in_turn(self, local: int) -> bool:
        """True if every item before ``local`` has left (an ordered stage forwards in order)."""
        if not self._ordered:
            return True
        finished = self._finished
        while self._next_out in finished and finished[self._next_out] is None:
            del finished[self._next_out]  # a gap-filler: its item went home already
            self._next_out += 1
        return self._next_out == local

    def _answered(self, local: int, worker: _Worker, value: Any) -> None:
        """On a Ray thread: a hop answered (a status, a (status, output), or a Ray error).
        Answers queue here; one wake-up message takes every answer waiting."""
        self._answers.append((local, worker, value))
        if not self._wake_pending:
            self._wake_pending = True
            try:
                self.actor_ref.tell(_WAKE)
            except pykka.ActorDeadError:
                pass

    def _watch(self, worker: _Worker, local: int, ref: Any) -> None:
        worker.watched = local
        when_done(ref, lambda value: self._answered(local, worker, value))

    def _take_answers(self) -> None:
        self._wake_pending = False  # before taking: a later answer sends a new wake-up
        answers = self._answers
        while answers:
            local, worker, value = answers.popleft()
            self._hop_done(local, worker, value)
        self._after()

    def _hop_done(self, local: int, worker: _Worker, value: Any) -> None:
        hop = self._in_hop.get(local)
        if hop is None or hop.worker is not worker:
            sent = self._sent.get(local)
            if sent is not None and sent.worker is worker:
                self._sent_done(local, sent, value)
            return  # else a late answer from a Ray actor that died: its items were dealt with
        if isinstance(value, BaseException):
            upstream = self._upstream(value, worker)
            if upstream is not None:  # an earlier Ray stage's actor died with the input
                self._hop_over(local, hop)
                item = hop.item
                item.error = StageError(upstream, item.seq, _root(value))
                item.data = None
                self._settle(local, item)
            elif _is_death(value):
                self._worker_died(worker, value)
            else:  # its input was lost with a node, or the output would not serialise
                self._hop_over(local, hop)
                self._fail(local, hop.item, value, None, None)
            return
        self._hop_over(local, hop)
        item = hop.item
        if hop.out is None:
            status, out = value
        else:
            status, out = value, hop.out
        code, service, extra = _status(status)
        if code == OK:
            now = perf_counter()
            if self._timed:
                self._counters.workers[worker.index].record(
                    now - service, now, max(0.0, now - item.sent_at - service), True
                )
            else:
                self._counters.workers[worker.index].processed += 1
            item.data = out
            item.sent_at = now
            if self._ordered:
                self._finished[local] = item
            else:
                self._forward(local, item)
        elif code == FAILED:
            now = perf_counter()
            self._counters.workers[worker.index].record(
                now - service, now, max(0.0, now - item.sent_at - service), False
            )
            self._fail(local, item, extra.error, extra.data, worker)
        elif code == PASSED:  # an earlier Ray stage failed on it (its status came later)
            failed: Failed = extra
            item.error = StageError(failed.stage, item.seq, failed.error, _plain(failed.data))
            item.data = None
            self._settle(local, item)
        else:  # HELD: the Ray actor failed earlier; the item goes to its replacement
            worker.broken = True
            self._requeue([(local, item)])

    def _upstream(self, value: BaseException, worker: _Worker) -> str | None:
        """The Ray stage whose Ray actor failed to make this hop's input (died, say; its
        output was forwarded here before its status was known), or None: the error is
        this hop's own."""
        actor_id = None
        for link in reversed(_chain(value)):  # the deepest Ray actor the error names
            actor_id = _actor_id(link)
            if actor_id is not None:
                break
        if actor_id is None or actor_id == worker.ident:
            return None
        return _stage_of_actor.get(actor_id)

    def _sent_done(self, local: int, sent: _Sent, value: Any) -> None:
        """The status of a forwarded item: statistics and supervision only (the next Ray
        stage settles the item, from the output or the error it got).

        One status per Ray actor is awaited at a time, the newest when it is chosen: a Ray
        actor runs its calls in order, so once it answers, the earlier ones are done too,
        and their statuses are taken here in one go (fewer callbacks on this process)."""
        worker = sent.worker
        if worker.watched == local:
            worker.watched = -1
        if self._sent_status(local, sent, value):
            return
        earlier = [
            (at, one) for at, one in self._sent.items() if one.worker is worker and at < local
        ]
        for (at, one), status in zip(earlier, _ready([one.ref for _, one in earlier])):
            if status is not _NOT_READY and self._sent_status(at, one, status):
                return
        if worker.watched < 0 and not worker.dead:
            left = [at for at, one in self._sent.items() if one.worker is worker]
            if left:
                newest = max(left)
                self._watch(worker, newest, self._sent[newest].ref)

    def _sent_status(self, local: int, sent: _Sent, value: Any) -> bool:
        """Count one forwarded item's status; True if it says its Ray actor died."""
        worker = sent.worker
        if isinstance(value, BaseException):
            if self._upstream(value, worker) is None and _is_death(value):
                self._worker_died(worker, value)
                return True
            del self._sent[local]
            worker.load -= 1
            return False
        del self._sent[local]
        worker.load -= 1
        code, service, extra = _status(value)
        if code == PASSED:
            return False
        now = perf_counter()
        wait = max(0.0, now - sent.sent_at - service)
        if code == OK:
            if self._timed:
                self._counters.workers[worker.index].record(now - service, now, wait, True)
            else:
                self._counters.workers[worker.index].processed += 1
        else:
            self._counters.workers[worker.index].record(now - service, now, wait, False)
            logger.warning(
                "stage %r failed on item #%d: %s", self.stage_name, sent.seq, extra.error
            )
        return False

    def _hop_over(self, local: int, hop: _Hop) -> None:
        del self._in_hop[local]
        hop.worker.load -= 1
        if hop.claimed:
            hop.item.release_claim()

    def _worker_died(self, worker: _Worker, cause: BaseException) -> None:
        """The Ray actor is gone: every item it held fails (at most once: a call may have
        run although its answer was lost with the process, so none is re-run elsewhere);
        the first carries the restart request, later items go to the replacement."""
        hops = sorted((local, hop) for local, hop in self._in_hop.items() if hop.worker is worker)
        for local, hop in hops:
            self._hop_over(local, hop)
        sent = [(local, one) for local, one in self._sent.items() if one.worker is worker]
        # forwarded already: the next Ray stage fails them, naming us; those that answered
        # before the death count as processed (their outputs are in the object store)
        for (local, one), status in zip(sent, _ready([one.ref for _, one in sent])):
            if status is _NOT_READY or isinstance(status, BaseException):
                del self._sent[local]
                worker.load -= 1
                self._counters.workers[worker.index].failed += 1
            else:
                self._sent_status(local, one, status)
        worker.dead = worker.broken = True
        logger.warning("stage %r: a Ray actor died: %s", self.stage_name, cause)
        for number, (local, hop) in enumerate(hops):
            self._fail(local, hop.item, cause, hop.item.data, worker, died=True, notify=not number)
        if sent and not hops:  # no item here carries the restart request: it goes alone
            action = "stop" if self._policy.on_error == "stop" else "restart"
            notice = FailureNotice(
                self.stage_name, action, worker.ident, worker.index, self.actor_urn
            )
            send_home(self.home, Notice(notice))
        try:
            ray_module().kill(worker.handle, no_restart=True)
        except Exception:
            pass

    def _requeue(self, pairs: list[tuple[int, Item]]) -> None:
        if pairs:
            self._queued = collections.deque(sorted([*pairs, *self._queued], key=_by_local))

    def _fail(
        self,
        local: int,
        item: Item,
        cause: BaseException,
        data: Any,
        worker: _Worker | None,
        died: bool = False,
        notify: bool = True,
    ) -> None:
        """``item`` failed here; ``worker`` set: the stage's policy applies to that Ray actor."""
        item.error = StageError(self.stage_name, item.seq, cause, _plain(data))
        item.data = None
        if worker is None:
            self._counters.failed += 1
        elif died:
            self._counters.workers[worker.index].failed += 1
        logger.warning("stage %r failed on item #%d: %s", self.stage_name, item.seq, cause)
        action = self._policy.on_error
        if died and action == "skip":
            action = "restart"  # a dead Ray actor cannot serve the next item
        if worker is not None and action != "skip":
            worker.broken = True  # it takes no more items until replaced
            if notify:
                item.failure_action = FailureNotice(
                    self.stage_name, action, worker.ident, worker.index, self.actor_urn
                )
        elif worker is None and self.setup_error is not None and action != "skip":
            item.failure_action = FailureNotice(self.stage_name, action, self.actor_urn)
            self.hold()
        self._settle(local, item)

    def _settle(self, local: int, item: Item) -> None:
        """``item``'s outcome is known: it goes home now, and leaves a gap-filler for order."""
        self.send_settled(item)
        if self._ordered:
            self._finished[local] = None

    def _forward(self, local: int, item: Item) -> bool:
        """Send a processed item on; False if its output must be fetched first."""
        if (
            item.dropped is None
            and _is_ref(item.data)
            and getattr(self.downstream, "actor_class", None) is not RayStageActor
        ):
            if local not in self._fetching:
                self._fetching[local] = item
                actor = self.actor_ref
                when_done(item.data, lambda value: _on_fetched(actor, local, value))
            return False
        send_or_return(self.downstream, self.home, item, self.stage_name)
        return True

    def _fetched(self, message: _Fetched) -> None:
        item = self._fetching.pop(message.local, None)
        if item is None:
            return
        value = message.value
        if isinstance(value, BaseException):
            item.error = StageError(self.stage_name, item.seq, value)
            item.data = None
            self._counters.failed += 1
            self.send_settled(item)
            if self._ordered:
                self._finished[message.local] = None
        else:
            item.data = value
            if not self._ordered:
                self._forward(message.local, item)
        self._after()

    def _after(self) -> None:
        """After any change: forward what is in order, submit more, hand over if idle."""
        if self._ordered:
            finished = self._finished
            while self._next_out in finished:
                item = finished[self._next_out]
                if item is not None and not self._forward(self._next_out, item):
                    break  # its output is being fetched: later items wait behind it
                del finished[self._next_out]
                self._next_out += 1
        self._pump()
        if self._replacements:
            self._replace_idle_workers()
        self._counters.pending = len(self._in_hop) + len(self._sent) + len(self._queued)
        if self._successor is not None:
            self.hand_over_when_idle()

    # -- Ray actors: readiness, replacement, hand-over ------------------------------------

    def _answer_when_ready(self, done: Future[BaseException | None]) -> None:
        pending = [f for f in self._ready_futures if not f.done()]
        if not pending:
            settle_ready(done, self._first_error())
            return
        remaining = [len(pending)]
        lock = threading.Lock()

        def one_ready(_: Future[BaseException | None]) -> None:
            with lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                settle_ready(done, self._first_error())

        for future in pending:
            future.add_done_callback(one_ready)

    def _first_error(self) -> BaseException | None:
        if self.setup_error is not None:
            return self.setup_error
        for future in self._ready_futures:
            if future.done() and future.result() is not None:
                return future.result()
        return None

    def _replace_worker(self, index: int, ident: str) -> None:
        """The supervisor's restart of one Ray actor (after its back-off)."""
        if index >= len(self._workers):
            return
        worker = self._workers[index]
        if worker is None or worker.ident != ident:
            return  # already replaced, or retired since the failure
        worker.replace = True
        self._replacements += 1
        self._after()

    def _replace_idle_workers(self) -> None:
        """Replace the Ray actors the supervisor asked to, once none of their calls is out
        (a held item must come back before its successor takes later ones: order)."""
        for index, worker in enumerate(self._workers):
            if worker is None or not worker.replace or worker.load:
                continue
            self._replacements -= 1
            self._workers[index] = None
            self._retire_worker(worker, wait=False)
            if self._paused and not self._reviving:
                continue
            try:
                self._spawn(index)
            except BaseException as exc:
                logger.error(
                    "stage %r: a Ray actor could not be replaced", self.stage_name, exc_info=exc
                )
                self.setup_error = exc
            self._pump()

    def hand_over_when_idle(self) -> None:
        if self._successor is None:
            return
        if (
            self._queued
            and self._finished
            and not self._in_hop
            and not self._sent
            and not self._fetching
        ):
            # Items finished here wait behind queued ones: finish those here, in order.
            self._revive()
            return
        if not self.busy() and self._queued:
            queued = [item for _, item in self._queued]
            self._queued.clear()
            self.held = [*queued, *(self.held or ())]
        super().hand_over_when_idle()

    def _revive(self) -> None:
        self._reviving = True
        for index, worker in enumerate(self._workers):
            if worker is None or worker.broken:
                self._workers[index] = None
                if worker is not None:
                    self._retire_worker(worker, wait=False)
                try:
                    self._spawn(index)
                except BaseException as exc:
                    reason = f"stage {self.stage_name!r} could not finish its items: {exc!r}"
                    for local, item in self._queued:
                        item.drop(reason)
                        self._settle(local, item)
                    self._queued.clear()
                    self._after()
                    return
        self._pump()

    def flush(self, reason: str) -> None:
        super().flush(reason)
        queued, self._queued = self._queued, collections.deque()
        for local, item in queued:
            item.drop(reason)
            self._settle(local, item)
        self._after()

    def crashed(self, exc: BaseException) -> None:
        reason = f"the actor of stage {self.stage_name!r} crashed ({type(exc).__name__})"
        items = [
            *(item for _, item in self._queued),
            *(hop.item for hop in self._in_hop.values()),
            *(item for item in self._finished.values() if item is not None),
            *self._fetching.values(),
        ]
        self._queued.clear()
        self._in_hop.clear()
        self._finished.clear()
        self._fetching.clear()
        for item in items:
            item.drop(reason)
            self.send_settled(item)
        for index, worker in enumerate(self._workers):
            if worker is not None:
                self._workers[index] = None
                try:
                    ray_module().kill(worker.handle, no_restart=True)
                except Exception:
                    pass
        super().crashed(exc)


_NOT_READY = object()


def _ready(refs: list[Any]) -> list[Any]:
    """The values of ``refs`` that are ready now (a Ray error as a value), else
    ``_NOT_READY``; never waits."""
    if not refs:
        return []
    ray = ray_module()
    try:
        ready = set(ray.wait(refs, num_returns=len(refs), timeout=0)[0])
    except Exception:  # Ray is shutting down: none is known to be ready
        return [_NOT_READY] * len(refs)
    done = [ref for ref in refs if ref in ready]
    try:
        values = dict(zip(done, ray.get(done)))
    except Exception:  # one of them is an error: take them one by one
        values = {}
        for ref in done:
            try:
                values[ref] = ray.get(ref)
            except Exception as exc:
                values[ref] = exc
    return [values.get(ref, _NOT_READY) for ref in refs]


def _status(status: Any) -> tuple[int, float, Any]:
    """(code, service seconds, extra) from a status as the Ray actor sent it."""
    if type(status) is bytes:
        return OK, SERVICE.unpack(status)[0], None
    code, service, extra = status
    return code, service, extra


def _by_local(pair: tuple[int, Item]) -> int:
    return pair[0]
