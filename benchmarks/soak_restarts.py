"""Soak test: stages restarted and replaced 550 times while 100,000 items flow, none lost.

A four-stage pipeline (``parallelize(capacity=64, on_full="block")``) carries
``(seq, hops)`` tuples; each stage appends ``(its index, its instance's generation)`` to
``hops``. The third stage is a pool of ``POOL_WORKERS`` workers. One producer thread
submits ``--items`` items in order. A controller thread, paced by the producer's progress
(not by a clock), calls ``restart_stage`` ``--restarts`` times and ``replace_stage``
``--replaces`` times on stages picked by ``random.Random(seed)``, spread evenly over the
run. Every ``--hold-every``-th call first catches the second stage mid-call (its next call
blocks until released) and is made with a short timeout: it returns False and its
hand-over queues behind the busy call, with later calls queued behind it, until the
controller releases the call. Every stage is a ``Stage`` class, so each restart gets a
fresh instance; replacements alternate between a fresh instance and the class itself.

What it shows, each as a PASS/FAIL line:

- every future resolves with its own item, and ``handle.results()`` yields exactly the
  input sequence: zero items lost, duplicated or reordered;
- every item passed the four stages exactly once, in order;
- the hand-over keeps order: along the output sequence each single-actor stage's instance
  generation never goes back (no item reached an old instance after a newer one took over);
- every requested restart and replacement happened, ``status()`` counts the restarts and
  every stage is "running" at the end; every stage instance was cleaned up as often as it
  was set up;
- after ``cleanup()`` (and ``gc.collect()``) the thread count is back to where it was
  before the pipeline was built, no pykka actor is left, and the RSS is within
  ``RSS_TOLERANCE_MB`` of the start.

Outputs are verified as they arrive rather than kept, so the RSS figures reflect the
library rather than this script's bookkeeping. ``results_buffer`` is set to ``--items``
so a results reader that lags behind (it competes for the GIL) never has outputs dropped
from under it; a lag shows up in the peak RSS instead. Threads and RSS are sampled every
``SAMPLE_EVERY`` items and after every control call; the peak thread count includes this
script's three helper threads (producer, controller, results reader).

    python benchmarks/soak_restarts.py                 # print the figures
    python benchmarks/soak_restarts.py --items 20000 --restarts 100 --replaces 10
    python benchmarks/soak_restarts.py --check         # also exit 1 if a check fails
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import queue
import random
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import pykka

import pystream_actors as ps

ITEMS = 100_000
RESTARTS = 500
REPLACES = 50
SEED = 20240601
STAGES = 4
CAPACITY = 64
SUBMIT_TIMEOUT = 60.0
"""How long the producer may wait for room (``on_full="block"``) before failing."""
RESULT_TIMEOUT = 60.0
CONTROL_TIMEOUT = 30.0
HELD_CONTROL_TIMEOUT = 0.01
"""The timeout of a control call made while a stage is held mid-call: it returns early."""
HOLD_EVERY = 10
POOL_WORKERS = 3
POOLED_STAGE = 2
SAMPLE_EVERY = 250
RSS_TOLERANCE_MB = 20.0
MB = 1_000_000

Hop = tuple[int, int]
"""(stage index, generation of the stage instance that processed the item)."""
Packet = tuple[int, tuple[Hop, ...]]
"""What travels through the pipeline: (seq, hops so far)."""

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """This process's resident set size, in bytes (Linux)."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE_BYTES


# -- stages ----------------------------------------------------------------------------


class Ledger:
    """Every stage instance ever made, numbered in creation order (one counter for all)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generations = itertools.count()
        self.instances: list[HopStage] = []

    def enrol(self, stage: HopStage) -> int:
        with self._lock:
            self.instances.append(stage)
            return next(self._generations)

    def clear(self) -> None:
        with self._lock:
            self.instances.clear()


LEDGER = Ledger()


class HopStage(ps.Stage):
    """Appends ``(index, generation)`` to the item's hops; counts its setups and cleanups."""

    index: ClassVar[int] = -1

    def __init__(self) -> None:
        self.setups = 0
        self.cleanups = 0
        self.generation = LEDGER.enrol(self)

    def setup(self) -> None:
        self.setups += 1

    def __call__(self, data: Packet) -> Packet:
        seq, hops = data
        return seq, (*hops, (self.index, self.generation))

    def cleanup(self) -> None:
        self.cleanups += 1


class Hop0(HopStage):
    index = 0


class Hold:
    """Lets the controller catch the second stage mid-call: its next call waits until released."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requested = False
        self.entered = threading.Event()
        self.released = threading.Event()

    def request(self) -> None:
        with self._lock:
            self.entered.clear()
            self.released.clear()
            self._requested = True

    def maybe_hold(self) -> None:
        with self._lock:
            hold, self._requested = self._requested, False
        if hold:
            self.entered.set()
            self.released.wait(RESULT_TIMEOUT)

    def release(self) -> None:
        with self._lock:
            self._requested = False
        self.released.set()


HOLD = Hold()


class Hop1(HopStage):
    index = 1

    def __call__(self, data: Packet) -> Packet:
        HOLD.maybe_hold()
        return super().__call__(data)


class Hop2(HopStage):
    index = 2


class Hop3(HopStage):
    index = 3


STAGE_CLASSES: tuple[type[HopStage], ...] = (Hop0, Hop1, Hop2, Hop3)
STAGE_NAMES: tuple[str, ...] = tuple(cls.__name__ for cls in STAGE_CLASSES)
EXPECTED_INDICES: tuple[int, ...] = tuple(range(STAGES))


# -- shared state between the threads ----------------------------------------------------


class Probe:
    """Keeps the peak thread count and RSS seen by whoever samples."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.peak_threads = threading.active_count()
        self.peak_rss = rss_bytes()

    def sample(self) -> None:
        threads, rss = threading.active_count(), rss_bytes()
        with self._lock:
            self.peak_threads = max(self.peak_threads, threads)
            self.peak_rss = max(self.peak_rss, rss)


class Progress:
    """How many items the producer has submitted; the controller waits on it."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self.submitted = 0
        self.finished = False

    def advance(self, submitted: int) -> None:
        with self._cond:
            self.submitted = submitted
            self._cond.notify_all()

    def finish(self) -> None:
        with self._cond:
            self.finished = True
            self._cond.notify_all()

    def wait_for(self, submitted: int) -> bool:
        """Wait until ``submitted`` items went in; False if the producer ended before."""
        with self._cond:
            self._cond.wait_for(lambda: self.submitted >= submitted or self.finished)
            return self.submitted >= submitted


@dataclass(frozen=True)
class Operation:
    """One control call, due once ``at`` items have been submitted."""

    at: int
    kind: Literal["restart", "replace"]
    stage: int
    hold: bool = False
    """Catch the second stage mid-call first, and call with a short timeout."""


def plan(items: int, restarts: int, replaces: int, seed: int, hold_every: int) -> list[Operation]:
    """Restarts and replacements spread evenly over the run, on random stages."""
    rng = random.Random(seed)
    ops = [
        Operation((i + 1) * items // (restarts + 1), "restart", rng.randrange(STAGES))
        for i in range(restarts)
    ]
    ops += [
        Operation((i + 1) * items // (replaces + 1), "replace", rng.randrange(STAGES))
        for i in range(replaces)
    ]
    ops.sort(key=lambda op: op.at)
    if hold_every:  # a held call targets the held stage itself, or the pool after it
        ops = [
            Operation(op.at, op.kind, 1 + (n // hold_every) % 2, hold=True)
            if n % hold_every == hold_every - 1
            else op
            for n, op in enumerate(ops)
        ]
    return ops


@dataclass
class ControlLog:
    """What the controller did."""

    restarts: int = 0
    replaces: int = 0
    held: int = 0
    """Calls made while the second stage was held mid-call."""
    returned_early: int = 0
    """Calls that returned False: their hand-over completed later, in the background."""
    after_last_submit: int = 0
    """Calls that completed only after the producer had submitted every item."""
    seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def control(
    handle: ps.PipelineHandle, ops: list[Operation], progress: Progress, probe: Probe, items: int
) -> ControlLog:
    """Carry out the planned calls as the producer reaches each one's position."""
    log = ControlLog()
    for number, op in enumerate(ops):
        if not progress.wait_for(op.at):
            log.errors.append(f"producer stopped before item {op.at}; {len(ops) - number} skipped")
            break
        name = STAGE_NAMES[op.stage]
        timeout = CONTROL_TIMEOUT
        if op.hold:
            HOLD.request()
            if HOLD.entered.wait(RESULT_TIMEOUT):
                log.held += 1
                timeout = HELD_CONTROL_TIMEOUT
        started = time.perf_counter()
        try:
            if op.kind == "restart":
                done = handle.restart_stage(name, timeout)
                log.restarts += 1
            else:
                cls = STAGE_CLASSES[op.stage]
                # alternate the two ways to name a stage: a fresh instance, or its class
                # (a pool takes its class: each worker needs its own instance)
                fresh: HopStage | type[HopStage] = cls
                if log.replaces % 2 == 0 and op.stage != POOLED_STAGE:
                    fresh = cls()
                done = handle.replace_stage(name, fresh, timeout)
                log.replaces += 1
            log.returned_early += not done
        except Exception as exc:
            log.errors.append(f"{op.kind}_stage({name!r}) at item {op.at}: {exc!r}")
            continue
        finally:
            HOLD.release()
        log.seconds.append(time.perf_counter() - started)
        if progress.submitted >= items:
            log.after_last_submit += 1
        probe.sample()
    return log


def run_control(
    handle: ps.PipelineHandle,
    ops: list[Operation],
    progress: Progress,
    probe: Probe,
    items: int,
    logs: list[ControlLog],
) -> None:
    """Thread target: ``control`` and keep its log."""
    logs.append(control(handle, ops, progress, probe, items))


def produce(
    handle: ps.PipelineHandle,
    items: int,
    futures: queue.SimpleQueue[Future[Any] | None],
    progress: Progress,
    probe: Probe,
    errors: list[str],
) -> None:
    """Submit ``(seq, ())`` for seq = 0..items-1 in order, handing each future on."""
    try:
        for seq in range(items):
            futures.put(handle.submit((seq, ()), SUBMIT_TIMEOUT))
            progress.advance(seq + 1)
            if seq % SAMPLE_EVERY == 0:
                probe.sample()
    except Exception as exc:
        errors.append(f"producer stopped at item {progress.submitted}: {exc!r}")
    finally:
        progress.finish()
        futures.put(None)


def read_stream(stream: Iterator[Any], verdict: StreamVerdict) -> None:
    """Check the seq of every output ``handle.results()`` yields, in arrival order."""
    for seq, _hops in stream:
        verdict.add(seq)


# -- verification ---------------------------------------------------------------------


@dataclass
class FutureVerdict:
    """What the futures said, checked in submission order as they resolved."""

    resolved_ok: int = 0
    failed: int = 0
    wrong_item: int = 0
    """Futures that resolved with another item's output."""
    bad_hops: int = 0
    """Outputs that did not pass the four stages exactly once, in order."""
    generation_regressions: int = 0
    """Outputs processed by an older instance of a stage than an earlier output was."""
    generations_seen: list[set[int]] = field(default_factory=lambda: [set() for _ in range(STAGES)])
    examples: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.examples) < 5:
            self.examples.append(text)


def collect(futures: queue.SimpleQueue[Future[Any] | None]) -> FutureVerdict:
    """Wait for each future in turn and check its output against the expected one."""
    verdict = FutureVerdict()
    last_generation = [-1] * STAGES
    expected_seq = 0
    for future in iter(futures.get, None):
        seq_wanted, expected_seq = expected_seq, expected_seq + 1
        try:
            seq, hops = future.result(RESULT_TIMEOUT)
        except Exception as exc:
            verdict.failed += 1
            verdict.note(f"item {seq_wanted}: {exc!r}")
            continue
        if seq != seq_wanted:
            verdict.wrong_item += 1
            verdict.note(f"future #{seq_wanted} resolved with item {seq}")
            continue
        if tuple(index for index, _ in hops) != EXPECTED_INDICES:
            verdict.bad_hops += 1
            verdict.note(f"item {seq} hops {hops}")
            continue
        verdict.resolved_ok += 1
        for index, generation in hops:
            if index != POOLED_STAGE and generation < last_generation[index]:
                verdict.generation_regressions += 1
                verdict.note(
                    f"item {seq}: {STAGE_NAMES[index]} generation {generation} after "
                    f"{last_generation[index]}"
                )
            last_generation[index] = generation
            verdict.generations_seen[index].add(generation)
    return verdict


class StreamVerdict:
    """What ``handle.results()`` yielded, against the expected sequence 0..items-1.

    Checked as outputs arrive, with one byte per item, so nothing else is kept.
    """

    def __init__(self, items: int) -> None:
        self._seen = bytearray(items)
        self.received = 0
        self.duplicated = 0
        self.unknown = 0
        """Outputs whose seq is not one of the submitted items."""
        self.reordered = 0
        """Outputs that arrived after an output with a higher seq."""
        self._highest = -1

    def add(self, seq: int) -> None:
        self.received += 1
        if not 0 <= seq < len(self._seen):
            self.unknown += 1
            return
        if self._seen[seq]:
            self.duplicated += 1
        self._seen[seq] = 1
        if seq < self._highest:
            self.reordered += 1
        self._highest = max(self._highest, seq)

    @property
    def lost(self) -> int:
        return len(self._seen) - sum(self._seen)

    @property
    def exact(self) -> bool:
        return self.received == len(self._seen) and not (
            self.lost or self.duplicated or self.unknown or self.reordered
        )


# -- the run --------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=ITEMS, help=f"default {ITEMS}")
    parser.add_argument(
        "--restarts", type=int, default=RESTARTS, help=f"restart_stage calls (default {RESTARTS})"
    )
    parser.add_argument(
        "--replaces", type=int, default=REPLACES, help=f"replace_stage calls (default {REPLACES})"
    )
    parser.add_argument("--seed", type=int, default=SEED, help=f"default {SEED}")
    parser.add_argument(
        "--hold-every",
        type=int,
        default=HOLD_EVERY,
        help=f"hold the second stage mid-call for every n-th call, 0: never (default {HOLD_EVERY})",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if any check fails")
    args = parser.parse_args(argv)
    if args.items < 1:
        parser.error("--items must be at least 1")
    if args.restarts < 0 or args.replaces < 0:
        parser.error("--restarts and --replaces must be >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak, print the figures, and judge them only when asked to."""
    args = parse_args(argv)
    items: int = args.items
    ops = plan(items, args.restarts, args.replaces, args.seed, args.hold_every)

    gc.collect()
    threads_before = threading.active_count()
    rss_before = rss_bytes()
    probe = Probe()
    wall_started = time.perf_counter()

    pipeline = ps.Pipeline()
    for index, (cls, name) in enumerate(zip(STAGE_CLASSES, STAGE_NAMES)):
        pipeline.add(cls, name, workers=POOL_WORKERS if index == POOLED_STAGE else 1)
    # results_buffer=items: a reader starved of the GIL may lag but never loses an output
    pipeline.parallelize(
        capacity=CAPACITY, on_full="block", input_timeout=SUBMIT_TIMEOUT, results_buffer=items
    )
    handle = pipeline.handle
    probe.sample()

    futures: queue.SimpleQueue[Future[Any] | None] = queue.SimpleQueue()
    progress = Progress()
    producer_errors: list[str] = []
    stream = StreamVerdict(items)
    logs: list[ControlLog] = []
    reader = threading.Thread(
        target=read_stream, args=(handle.results(), stream), name="soak-reader", daemon=True
    )
    producer = threading.Thread(
        target=produce,
        args=(handle, items, futures, progress, probe, producer_errors),
        name="soak-producer",
        daemon=True,
    )
    controller = threading.Thread(
        target=run_control,
        args=(handle, ops, progress, probe, items, logs),
        name="soak-controller",
        daemon=True,
    )
    reader.start()
    started = time.perf_counter()
    producer.start()
    controller.start()
    verdict = collect(futures)
    run_seconds = time.perf_counter() - started
    producer.join()
    controller.join()
    probe.sample()

    log = logs[0] if logs else ControlLog(errors=["the controller thread died"])
    status = handle.status()
    stats = pipeline.statistics()
    pipeline.cleanup()
    reader.join(RESULT_TIMEOUT)
    wall_seconds = time.perf_counter() - wall_started

    unbalanced = [s for s in LEDGER.instances if s.setups != s.cleanups]
    never_set_up = [s for s in LEDGER.instances if s.setups == 0]
    instances = len(LEDGER.instances)
    generations_seen = [len(g) for g in verdict.generations_seen]
    LEDGER.clear()
    leaked_actors = len(pykka.ActorRegistry.get_all())
    del pipeline, handle
    gc.collect()
    threads_after = threading.active_count()
    rss_after = rss_bytes()
    rss_growth_mb = (rss_after - rss_before) / MB

    status_restarts = sum(s.restarts for s in status.values())
    not_running = {name: s.state for name, s in status.items() if s.state != "running"}
    control_ms = sorted(s * 1000 for s in log.seconds)

    print(
        f"{items} items through {STAGES} stages, parallelize(capacity={CAPACITY}, "
        f"on_full='block'), seed {args.seed}"
    )
    print(
        f"run: {run_seconds:.2f} s, {items / run_seconds:,.0f} items/s; "
        f"total with build and cleanup: {wall_seconds:.2f} s"
    )
    print(
        f"control: {log.restarts} of {args.restarts} restarts, {log.replaces} of "
        f"{args.replaces} replaces; {log.after_last_submit} completed after the last submit; "
        f"{log.held} made with {STAGE_NAMES[1]} held mid-call, {log.returned_early} returned "
        f"before their hand-over (it completed in the background); {STAGE_NAMES[POOLED_STAGE]} "
        f"is a pool of {POOL_WORKERS}"
    )
    if control_ms:
        print(
            f"control call time (ms): p50 {control_ms[len(control_ms) // 2]:.2f}, "
            f"max {control_ms[-1]:.2f}"
        )
    print(
        "status(): "
        + ", ".join(f"{name} {s.state} restarts={s.restarts}" for name, s in status.items())
        + f" (sum {status_restarts})"
    )
    print(
        f"statistics(): accepted {stats.accepted}, completed {stats.completed}, failed "
        f"{stats.failed}, dropped {stats.dropped}, results_dropped {stats.results_dropped}"
    )
    print(
        f"stage instances: {instances} made, instances seen per stage {generations_seen}, "
        f"{len(never_set_up)} never set up, {len(unbalanced)} with setups != cleanups"
    )
    print(
        f"futures: {verdict.resolved_ok} ok, {verdict.failed} failed, {verdict.wrong_item} "
        f"wrong item, {verdict.bad_hops} bad hops, {verdict.generation_regressions} "
        "generation regressions"
    )
    print(
        f"results(): {stream.received} received, {stream.lost} lost, {stream.duplicated} "
        f"duplicated, {stream.reordered} reordered, {stream.unknown} unknown"
    )
    print(
        f"threads: {threads_before} before, {probe.peak_threads} peak (incl. 3 helpers), "
        f"{threads_after} after cleanup; pykka actors left: {leaked_actors}"
    )
    print(
        f"RSS: {rss_before / MB:.1f} MB before, {probe.peak_rss / MB:.1f} MB peak, "
        f"{rss_after / MB:.1f} MB after cleanup ({rss_growth_mb:+.1f} MB)"
    )
    for text in [*producer_errors, *log.errors, *verdict.examples]:
        print(f"  note: {text}")

    checks = [
        (
            verdict.resolved_ok == items,
            f"every future resolved with its own item ({verdict.resolved_ok}/{items})",
        ),
        (
            stream.exact,
            f"results() yielded exactly 0..items-1 in order: {stream.lost} lost, "
            f"{stream.duplicated} duplicated, {stream.reordered} reordered",
        ),
        (verdict.bad_hops == 0, "every item passed the four stages exactly once, in order"),
        (
            verdict.generation_regressions == 0,
            "hand-overs kept order: no item reached an instance older than an earlier item's",
        ),
        (
            log.restarts == args.restarts and log.replaces == args.replaces and not log.errors,
            f"every control call succeeded ({log.restarts + log.replaces}/{len(ops)})",
        ),
        (
            status_restarts == log.restarts and not not_running,
            f"status() counts {status_restarts} restarts and every stage is running",
        ),
        (
            not unbalanced and not never_set_up,
            "every stage instance was set up and cleaned up as often",
        ),
        (
            threads_after == threads_before and leaked_actors == 0,
            f"threads back to {threads_before} and no actor left after cleanup()",
        ),
        (
            rss_growth_mb <= RSS_TOLERANCE_MB,
            f"RSS after cleanup within {RSS_TOLERANCE_MB:.0f} MB of the start "
            f"({rss_growth_mb:+.1f} MB)",
        ),
    ]
    for ok, text in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    failed = [text for ok, text in checks if not ok]
    if args.check and failed:
        print(f"FAIL: {len(failed)} check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
