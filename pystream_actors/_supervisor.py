"""Supervision and runtime control: replacing stage actors without losing an item.

A stopped pykka actor can never start again, so every restart, start, or replacement
spawns a new actor and re-links refs. The protocol keeps order with FIFO mailboxes only:

1. spawn the successor ``N`` holding its items (``held=True``);
2. tell the stage's upstream ``Relink(old, N)``: the upstream sends to ``N`` from now on
   and tells the old actor ``Handover(N)``, which lands behind every item it sent before;
3. the old actor finishes (or holds) what came before, cleans up, sends
   ``Resume(held items)`` to ``N`` and stops; ``N`` sets up, processes the inherited items,
   then its own.

Operations on one pipeline run one at a time under a lock; failure restarts run on the
supervisor's own thread, which starts when first needed and is joined at stop.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import pykka

from ._errors import PipelineTerminated, PipelineUndefined, StageBusy
from ._messages import FailureNotice, Pause, Ready, Relink, ReplaceWorker
from ._stage import StageCallable, StageSlot
from ._statistics import StageCounters
from ._worker_pool import spawn_stage

logger = logging.getLogger("pystream_actors")

StageState = Literal["running", "restarting", "stopped", "failed"]
CONTROL_TIMEOUT = 30.0  # seconds a runtime-control call waits for a hand-over by default


@dataclass(frozen=True)
class StageStatus:
    """Where one stage stands: its state and how often it was restarted."""

    name: str
    state: StageState
    restarts: int


@dataclass
class StageRecord:
    """The supervisor's book on one stage: its current actor and history."""

    slot: StageSlot
    ref: pykka.ActorRef[Any]
    thread: threading.Thread | None
    counters: StageCounters
    state: StageState = "running"
    busy_predecessor: threading.Thread | None = None
    """An old actor still in a stage call, that the current one waits to take over from."""
    restart_times: collections.deque[float] = field(default_factory=collections.deque)


class Supervisor:
    """Restarts failed stages by their policy and carries out runtime control calls."""

    def __init__(
        self,
        records: list[StageRecord],
        coordinator: pykka.ActorRef[Any],
        terminate: Callable[[str], None],
    ) -> None:
        self.records = records
        self._coordinator = coordinator
        self._terminate = terminate
        self._control = threading.RLock()
        self._notices: queue.SimpleQueue[FailureNotice | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self.retired_threads: list[threading.Thread] = []

    # -- failure notices (from the coordinator's thread: never block) -----------------

    def notify(self, notice: FailureNotice) -> None:
        """A stage failed under "restart" or "stop": act on it on the supervisor thread."""
        if self._closing.is_set():
            return
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._serve, name="pystream-supervisor", daemon=True
            )
            self._thread.start()
        self._notices.put(notice)

    def _serve(self) -> None:
        while True:
            notice = self._notices.get()
            if notice is None or self._closing.is_set():
                return
            try:
                self._on_failure(notice)
            except Exception:
                logger.exception("supervisor: handling the failure of %r failed", notice.stage)

    def _on_failure(self, notice: FailureNotice) -> None:
        index = self._index(notice.stage)
        record = self.records[index]
        if notice.worker < 0 and record.ref.actor_urn != notice.actor_urn:
            return  # that actor was already replaced
        policy = record.slot.policy
        if notice.action == "stop":
            record.state = "failed"
            self._terminate(f"stage {notice.stage!r} failed and its policy is on_error='stop'")
            return
        now = time.monotonic()
        recent = record.restart_times
        while recent and now - recent[0] > policy.restart_window:
            recent.popleft()
        if len(recent) >= policy.max_restarts:
            record.state = "failed"
            self._terminate(
                f"stage {notice.stage!r} failed after {len(recent)} restarts within "
                f"{policy.restart_window}s (max_restarts={policy.max_restarts}); stopping"
            )
            return
        record.state = "restarting"
        if self._closing.wait(policy.backoff(len(recent))):
            return
        recent.append(time.monotonic())
        record.counters.restarts += 1
        if notice.worker >= 0:  # one worker of a pool: the pool replaces it
            record.ref.tell(ReplaceWorker(notice.worker, notice.actor_urn))
            record.state = "running"
            return
        self._replace(index, record.slot.renewed(), CONTROL_TIMEOUT)

    # -- runtime control (from callers' threads) ----------------------------------

    def stop_stage(self, name: str, timeout: float | None = CONTROL_TIMEOUT) -> None:
        """Stop a stage: it cleans up and holds every later item until started again."""
        with self._control:
            record = self.records[self._index(name)]
            if record.state == "stopped":
                return
            self._ensure_handed_over(record, timeout)
            record.ref.tell(Pause())
            record.state = "stopped"

    def start_stage(self, name: str, timeout: float | None = CONTROL_TIMEOUT) -> None:
        """Start a stopped stage on a new actor; the items it held go first."""
        with self._control:
            index = self._index(name)
            if self.records[index].state == "running":
                return
            self._replace(index, self.records[index].slot, timeout)

    def restart_stage(self, name: str, timeout: float | None = CONTROL_TIMEOUT) -> None:
        """Replace a stage's actor (and instance, if a class or factory was given)."""
        with self._control:
            index = self._index(name)
            self.records[index].counters.restarts += 1
            self._replace(index, self.records[index].slot.renewed(), timeout)

    def replace_stage(
        self,
        name: str,
        stage: StageCallable | type | None,
        timeout: float | None = CONTROL_TIMEOUT,
        factory: Callable[[], StageCallable] | None = None,
    ) -> None:
        """Swap in another stage (instance, Stage class, or ``factory``) under the same name."""
        with self._control:
            index = self._index(name)
            slot = self.records[index].slot.replaced_by(stage, factory)
            self._replace(index, slot, timeout)

    def status(self) -> dict[str, StageStatus]:
        """Each stage's state and restart count, in pipeline order."""
        return {
            r.slot.name: StageStatus(r.slot.name, r.state, r.counters.restarts)
            for r in self.records
        }

    def _replace(self, index: int, slot: StageSlot, timeout: float | None) -> None:
        with self._control:
            if self._closing.is_set():
                raise PipelineTerminated("the pipeline is stopping; no stage can be replaced")
            record = self.records[index]
            self._ensure_handed_over(record, timeout)
            old, old_thread = record.ref, record.thread
            downstream = (
                self.records[index + 1].ref if index + 1 < len(self.records) else self._coordinator
            )
            upstream = self.records[index - 1].ref if index > 0 else self._coordinator
            new = spawn_stage(slot, downstream, record.counters, held=True)
            new_thread, _ = new.ask(Ready(), timeout=timeout)  # held: no setup has run yet
            record.ref, record.slot, record.thread = new, slot, new_thread
            record.state = "restarting"
            upstream.tell(Relink(old, new))
            if old_thread is not None:
                old_thread.join(timeout)
                if old_thread.is_alive():
                    self.retired_threads.append(old_thread)
                    record.busy_predecessor = old_thread
                    logger.warning(
                        "stage %r: the old actor is still busy after %ss; the new one takes "
                        "over when it finishes",
                        slot.name,
                        timeout,
                    )
                    return
            _, error = new.ask(Ready(), timeout=timeout)  # behind Resume: setup has run
            record.state = "failed" if error is not None else "running"

    def _ensure_handed_over(self, record: StageRecord, timeout: float | None) -> None:
        """Refuse to touch a stage whose actor still waits for a busy predecessor.

        Replacing or pausing it then could strand the items the busy actor will hand over.
        """
        busy = record.busy_predecessor
        if busy is None:
            return
        busy.join(timeout)
        if busy.is_alive():
            raise StageBusy(
                f"stage {record.slot.name!r} is still handing over from an actor busy in a "
                f"stage call ({busy.name}); retry once that call returns"
            )
        record.busy_predecessor = None
        _, error = record.ref.ask(Ready(), timeout=timeout)
        record.state = "failed" if error is not None else "running"

    def _index(self, name: str) -> int:
        for index, record in enumerate(self.records):
            if record.slot.name == name:
                return index
        raise PipelineUndefined(
            f"no stage named {name!r}; stages are {[r.slot.name for r in self.records]}"
        )

    def close(self, timeout: float | None) -> None:
        """Stop acting on failures and join the supervisor thread."""
        self._closing.set()
        self._notices.put(None)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
