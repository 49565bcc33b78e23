"""The variants that run in this process: three plain baselines and our pipeline.

Each ``*_chain`` function returns a maker: given a workload's ``Plan`` it builds the
chain and wraps it for the harness. What each one buffers between stages differs; the
workloads state it beside every row.

  (a) a for-loop calling the stages in turn, in the caller's thread;
  (b) a thread per stage joined by ``queue.Queue(maxsize)``, the practical floor;
  (c) a raw pykka chain: a ``ThreadingActor`` per stage ``tell``-ing the next, the last
      one resolving a future; mailboxes are unbounded;
  ours: ``pystream_actors``, fed with ``submit`` and read through the futures.
"""

from __future__ import annotations

import inspect
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import pykka
import stage_sets
from harness import RESULT_TIMEOUT, Local, Timed, Unavailable
from stage_sets import Stage

import pystream_actors as ps


@dataclass(frozen=True)
class Plan:
    """A workload's stages, as (name, stage name) pairs, and its payload kind."""

    stages: tuple[tuple[str, str], ...]
    payload: str = "int"

    def functions(self) -> list[Stage]:
        return [stage_sets.stage(name) for _, name in self.stages]

    def timed(self, chain: Any) -> Timed:
        return Local(chain, stage_sets.PAYLOADS[self.payload], stage_sets.key)


Maker = Callable[[Plan], Timed]


class LoopChain:
    """(a) The stages called in turn by the caller."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = tuple(stages)

    def batch(self, payloads: Sequence[Any]) -> tuple[float, list[Any]]:
        started = time.perf_counter()
        outputs = [self.one(payload) for payload in payloads]
        return time.perf_counter() - started, outputs

    def one(self, payload: Any) -> Any:
        for stage in self.stages:
            payload = stage(payload)
        return payload

    def close(self) -> None:
        pass


_STOP: Any = object()


class ThreadChain:
    """(b) A thread per stage, joined by ``Queue(maxsize)``; the caller reads the last queue."""

    def __init__(self, stages: Sequence[Stage], maxsize: int) -> None:
        self.queues: list[queue.Queue[Any]] = [queue.Queue(maxsize) for _ in range(len(stages) + 1)]
        self.threads = [
            threading.Thread(target=self._work, args=(stage, inbox, outbox), daemon=True)
            for stage, inbox, outbox in zip(stages, self.queues, self.queues[1:])
        ]
        for thread in self.threads:
            thread.start()

    @staticmethod
    def _work(stage: Stage, inbox: queue.Queue[Any], outbox: queue.Queue[Any]) -> None:
        get, put = inbox.get, outbox.put
        while (data := get()) is not _STOP:
            put(stage(data))
        put(_STOP)

    def batch(self, payloads: Sequence[Any]) -> tuple[float, list[Any]]:
        first, get = self.queues[0].put, self.queues[-1].get
        feeder = threading.Thread(target=lambda: [first(p) for p in payloads], daemon=True)
        started = time.perf_counter()
        feeder.start()
        outputs = [get() for _ in payloads]
        wall = time.perf_counter() - started
        feeder.join()
        return wall, outputs

    def one(self, payload: Any) -> Any:
        self.queues[0].put(payload)
        return self.queues[-1].get()

    def close(self) -> None:
        self.queues[0].put(_STOP)
        self.queues[-1].get()
        for thread in self.threads:
            thread.join()


@dataclass
class _Expect:
    """To the pykka sink: resolve ``done`` with the next ``count`` outputs."""

    count: int
    done: Future[list[Any]] = field(default_factory=Future)


class _Forward(pykka.ThreadingActor):
    """(c) One stage of the raw pykka chain: run the stage, tell the result downstream."""

    use_daemon_thread = True

    def __init__(self, stage: Stage, downstream: pykka.ActorRef[Any]) -> None:
        super().__init__()
        self.stage, self.downstream = stage, downstream

    def on_receive(self, message: Any) -> None:
        self.downstream.tell(self.stage(message))


class _Sink(pykka.ThreadingActor):
    """The end of the raw pykka chain: collects outputs, resolves the expecting future."""

    use_daemon_thread = True
    expect: _Expect | None = None
    outputs: list[Any]

    def on_receive(self, message: Any) -> None:
        if isinstance(message, _Expect):
            self.expect, self.outputs = message, []
            return
        self.outputs.append(message)
        if self.expect is not None and len(self.outputs) == self.expect.count:
            self.expect.done.set_result(self.outputs)


class PykkaChain:
    """(c) ``ThreadingActor`` per stage, each telling the next; the sink resolves a future."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.refs: list[pykka.ActorRef[Any]] = [_Sink.start()]
        for stage in reversed(stages):
            self.refs.append(_Forward.start(stage, self.refs[-1]))

    def _expect(self, count: int) -> Future[list[Any]]:
        expect = _Expect(count)
        self.refs[0].tell(expect)  # queued at the sink before any output
        return expect.done

    def batch(self, payloads: Sequence[Any]) -> tuple[float, list[Any]]:
        done, tell = self._expect(len(payloads)), self.refs[-1].tell
        started = time.perf_counter()
        for payload in payloads:
            tell(payload)
        outputs = done.result(RESULT_TIMEOUT)
        return time.perf_counter() - started, outputs

    def one(self, payload: Any) -> Any:
        done = self._expect(1)
        self.refs[-1].tell(payload)
        return done.result(RESULT_TIMEOUT)[0]

    def close(self) -> None:
        for ref in reversed(self.refs):
            ref.stop()


class OursChain:
    """pystream_actors: ``submit`` every item, then wait on every future; or (``feed="tell"``,
    like the raw pykka chain's sink) ``tell`` every item and read the outputs through one
    ``results()`` reader, with no future per item."""

    def __init__(
        self,
        plan: Plan,
        mode: str,
        capacity: int | None,
        options: dict[str, dict[str, Any]],
        feed: str = "submit",
    ) -> None:
        self.feed = feed
        self.pipeline = ps.Pipeline()
        accepted = inspect.signature(self.pipeline.add).parameters
        for (name, _), stage in zip(plan.stages, plan.functions()):
            extra = options.get(name, {})
            missing = [option for option in extra if option not in accepted]
            if missing:
                raise Unavailable(f"Pipeline.add() has no {', '.join(missing)} (not built yet)")
            self.pipeline.add(stage, name, **extra)
        # the reader keeps every output of a batch, like the raw pykka chain's sink
        kept = {"results_buffer": 1 << 20} if feed == "tell" else {}
        if mode == "serial":
            self.pipeline.serialize(**kept)
        else:
            self.pipeline.parallelize(capacity=capacity, **kept)
        self.handle = self.pipeline.handle

    def batch(self, payloads: Sequence[Any]) -> tuple[float, list[Any]]:
        if self.feed == "tell":
            return self._told(payloads)
        submit = self.handle.submit
        started = time.perf_counter()
        futures = [submit(payload, RESULT_TIMEOUT) for payload in payloads]
        outputs = [future.result(RESULT_TIMEOUT) for future in futures]
        return time.perf_counter() - started, outputs

    def _told(self, payloads: Sequence[Any]) -> tuple[float, list[Any]]:
        with self.handle.results(RESULT_TIMEOUT) as reader:  # subscribed before the first
            tell = self.handle.tell
            started = time.perf_counter()
            for payload in payloads:
                tell(payload, RESULT_TIMEOUT)
            outputs = [next(reader) for _ in payloads]
            return time.perf_counter() - started, outputs

    def one(self, payload: Any) -> Any:
        return self.handle.ask(payload, RESULT_TIMEOUT)

    def close(self) -> None:
        self.pipeline.cleanup()


def loop_chain() -> Maker:
    """(a) The for-loop."""
    return lambda plan: plan.timed(LoopChain(plan.functions()))


def thread_chain(maxsize: int, length: int | None = None) -> Maker:
    """(b) The thread chain; ``length`` repeats the first stage that many times instead."""

    def make(plan: Plan) -> Timed:
        stages = plan.functions()
        return plan.timed(ThreadChain(stages if length is None else stages[:1] * length, maxsize))

    return make


def pykka_chain() -> Maker:
    """(c) The raw pykka chain."""
    return lambda plan: plan.timed(PykkaChain(plan.functions()))


def ours(
    mode: str = "parallel",
    capacity: int | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    feed: str = "submit",
) -> Maker:
    """Our pipeline; ``options`` are extra ``add()`` keywords by stage name; ``feed`` is
    ``"submit"`` (a future per item) or ``"tell"`` (outputs read through ``results()``)."""
    return lambda plan: plan.timed(OursChain(plan, mode, capacity, options or {}, feed))
