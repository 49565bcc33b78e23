"""The benchmark suite: one table of figures and ratios, every baseline measured in the same run.

What it shows: how much the actor pipeline costs over the plain ways of running the same
stages, and whether scaling one stage up (``workers=N``, ``executor="process"``) pays.
Every ratio compares two figures taken in this run on this machine, so it does not depend
on the machine's speed (it does depend on its load: the suite prints the load average).

Baselines
  (a) a plain for-loop calling the stages in turn, in the caller's thread;
  (b) a chain of threads joined by ``queue.Queue(maxsize=4)``: the practical floor;
  (c) a plain pykka chain: a ``ThreadingActor`` per stage, each ``tell``-ing the next, the
      last one resolving a future;
  (d) PyStream 0.2.0, run by ``pystream_workloads.py`` in its own virtualenv
      ``.venv-pystream`` (created here on first use; PyStream needs numpy<2).

Workloads
  (1) per-item overhead, four no-op stages: items/s and microseconds per hop;
  (2) one-at-a-time latency, four no-op stages (submit one, wait, repeat): p50/p99; a
      diagnostic row adds a 6-stage thread chain, which hands an item between threads as
      often as ours does (7 times: in, 4 stages, out through the coordinator);
  (3) four 2 ms sleeping stages (ideal 500 items/s): throughput;
  (4) four GIL-releasing OpenCV stages on a 480x720 frame (a few ms each): throughput;
  (5) an 8 ms sleeping stage between two 1 ms ones: ``workers=4`` vs ``workers=1``;
  (6) an 8 ms OpenCV stage between two no-op stages: ``workers=2`` vs ``workers=1``;
  (7) a pure-Python 20 ms CPU stage: ``executor="process", workers=2`` vs one thread;
  (8) overload: a short ``overload.py`` run (drop_oldest vs an unbounded queue chain).

Definitions
  - throughput: items / wall time from the first item offered to the last output
    received (all items offered at once, back-pressure permitting); best of ``repeats``
    runs, each after a warm-up batch;
  - turns: all variants of a workload are built first and then take turns (run r of
    each before run r+1 of any; latency in chunks of 100 samples), so a change in the
    machine's load hits them alike. PyStream runs in its own process, before the rest;
  - hop: one stage-to-stage transfer; ``us/hop`` = wall time / (items x 4) for the
    four-stage workload (1), the same formula for every row;
  - latency: from offering one item to receiving its output, with nothing else in
    flight; percentiles over the samples of all repeats together (nearest rank).

    python benchmarks/suite.py                 # the full run (about 2 minutes)
    python benchmarks/suite.py --quick         # a short smoke run (CI)
    python benchmarks/suite.py --check         # exit 1 if a target is missed
    python benchmarks/suite.py --json out.json # where to write all results (default
                                               #   bench-results.json in the repo root)
"""

from __future__ import annotations

import argparse
import functools
import gc
import inspect
import json
import math
import os
import platform
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import pykka

import pystream_actors as ps

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

try:
    import cpu_stages
except ImportError:  # run as a module from elsewhere: put this folder on the path
    sys.path.insert(0, str(HERE))
    import cpu_stages

STAGES = 4
RESULT_TIMEOUT = 120.0
PYSTREAM_VENV = ROOT / ".venv-pystream"
PYSTREAM_PACKAGES = ("pystream-pipeline==0.2.0", "numpy<2")
PYSTREAM_OPTIONAL = ("opencv-python-headless<4.11",)
"""Installed best-effort so PyStream can run workload (4) too; numpy<2 needs OpenCV 4.10."""
PIP_TIMEOUT = 900.0
PYSTREAM_RUN_TIMEOUT = 600.0
NOT_SUPPORTED = "n/a (not supported yet)"

# targets from the issue
HOP_TARGET = 1.5
"""ours/thread chain, parallel per-hop overhead: at most."""
LATENCY_TARGET = 1.3
"""ours serial/thread chain, one-at-a-time p50: at most."""
THROUGHPUT_TARGET = 0.95
"""ours/thread chain, sleeping and OpenCV stages: at least."""
IO_WORKERS_TARGET = 3.5
CV_WORKERS_TARGET = 1.6
PROCESS_TARGET = 1.7


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does."""

    repeats: int
    overhead_items: int
    latency_samples: int
    sleep_items: int
    opencv_items: int
    io_items: int
    cv_workers_items: int
    cpu_items: int
    overload_seconds: float


FULL = Sizes(3, 5000, 1000, 250, 120, 200, 100, 60, 3.0)
QUICK = Sizes(1, 1000, 300, 100, 40, 80, 40, 12, 1.5)


# -- stages -------------------------------------------------------------------------------


def noop(data: Any) -> Any:
    """A stage that does nothing."""
    return data


def sleep_1ms(data: Any) -> Any:
    """A simulated 1 ms I/O stage (a sleep releases the GIL)."""
    time.sleep(0.001)
    return data


def sleep_2ms(data: Any) -> Any:
    """A simulated 2 ms I/O stage."""
    time.sleep(0.002)
    return data


def sleep_8ms(data: Any) -> Any:
    """A simulated 8 ms I/O stage."""
    time.sleep(0.008)
    return data


Stage = Callable[[Any], Any]


# -- the table ----------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table."""

    label: str
    items_per_s: float | None = None
    us_per_hop: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    ratio: float | None = None
    ratio_text: str = ""
    target: str = ""
    result: str = ""
    note: str = ""


@dataclass
class Section:
    """One workload: a title and its rows."""

    key: str
    title: str
    rows: list[Row] = field(default_factory=list)


@dataclass(frozen=True)
class Target:
    """One of the issue's targets, judged."""

    name: str
    result: str  # PASS, FAIL or n/a
    detail: str


def judge(ratio: float | None, threshold: float, at_least: bool, extra_ok: bool = True) -> str:
    """PASS/FAIL for a ratio against its threshold; n/a without a ratio."""
    if ratio is None or math.isnan(ratio):
        return "n/a"
    ok = ratio >= threshold if at_least else ratio <= threshold
    return "PASS" if ok and extra_ok else "FAIL"


def fmt_rate(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}" if value >= 1000 else f"{value:.1f}"


def fmt_us(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return ""
    if value < 0.1:
        return f"{value:.4f}"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


COLUMNS = (
    ("workload / variant", 44, "<"),
    ("items/s", 9, ">"),
    ("us/hop", 8, ">"),
    ("p50 ms", 8, ">"),
    ("p99 ms", 8, ">"),
    ("ratio", 17, ">"),
    ("target", 9, ">"),
    ("result", 6, "<"),
    ("note", 0, "<"),
)


def format_line(cells: Sequence[str]) -> str:
    parts = []
    for (_, width, align), cell in zip(COLUMNS, cells):
        parts.append(f"{cell:{align}{width}}" if width else cell)
    return "  ".join(parts).rstrip()


def print_table(sections: Sequence[Section], targets: Sequence[Target]) -> None:
    """The one table, then the targets summary."""
    header = format_line([name for name, _, _ in COLUMNS])
    rule = "-" * max(len(header), 140)
    print(header)
    print(rule)
    for section in sections:
        print(f"({section.key}) {section.title}")
        for row in section.rows:
            print(
                format_line(
                    [
                        "  " + row.label,
                        fmt_rate(row.items_per_s),
                        fmt_us(row.us_per_hop),
                        fmt_ms(row.p50_ms),
                        fmt_ms(row.p99_ms),
                        row.ratio_text,
                        row.target,
                        row.result,
                        row.note,
                    ]
                )
            )
    print(rule)
    for target in targets:
        print(f"{target.result:<5} {target.name}: {target.detail}")


# -- runners: one way of running a chain of stages ----------------------------------------


class Runner(Protocol):
    """A built chain of stages that can take a batch or a single item."""

    def batch(self, payloads: Sequence[Any]) -> tuple[float, list[Any]]:
        """Offer every payload, wait for every output: (wall seconds, outputs in order)."""
        ...

    def one(self, payload: Any) -> Any:
        """Offer one payload and wait for its output."""
        ...

    def close(self) -> None:
        """Stop every thread the runner started."""
        ...


class LoopRunner:
    """(a) A for-loop calling the stages in turn, in the caller's thread."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = tuple(stages)

    def batch(self, payloads: Sequence[Any]) -> tuple[float, list[Any]]:
        stages = self.stages
        outputs = []
        started = time.perf_counter()
        for payload in payloads:
            data = payload
            for stage in stages:
                data = stage(data)
            outputs.append(data)
        return time.perf_counter() - started, outputs

    def one(self, payload: Any) -> Any:
        data = payload
        for stage in self.stages:
            data = stage(data)
        return data

    def close(self) -> None:
        pass


_STOP: Any = object()


class ThreadChainRunner:
    """(b) A thread per stage, joined by ``queue.Queue(maxsize=4)``; the caller reads the last."""

    def __init__(self, stages: Sequence[Stage], maxsize: int = 4) -> None:
        self.queues: list[queue.Queue[Any]] = [queue.Queue(maxsize) for _ in range(len(stages) + 1)]
        self.threads = [
            threading.Thread(
                target=self._work,
                args=(stage, self.queues[index], self.queues[index + 1]),
                name=f"chain-{index + 1}",
                daemon=True,
            )
            for index, stage in enumerate(stages)
        ]
        for thread in self.threads:
            thread.start()

    @staticmethod
    def _work(stage: Stage, inbox: queue.Queue[Any], outbox: queue.Queue[Any]) -> None:
        get, put = inbox.get, outbox.put
        while True:
            data = get()
            if data is _STOP:
                put(_STOP)
                return
            put(stage(data))

    def batch(self, payloads: Sequence[Any]) -> tuple[float, list[Any]]:
        first, get = self.queues[0].put, self.queues[-1].get

        def feed() -> None:
            for payload in payloads:
                first(payload)

        feeder = threading.Thread(target=feed, name="chain-feeder", daemon=True)
        started = time.perf_counter()
        feeder.start()
        outputs = [get() for _ in range(len(payloads))]
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
class Expect:
    """To the pykka sink: resolve ``done`` with the next ``count`` outputs."""

    count: int
    done: Future[list[Any]]


class ForwardActor(pykka.ThreadingActor):
    """(c) One stage of the plain pykka chain: run the stage, tell the result downstream."""

    use_daemon_thread = True

    def __init__(self, stage: Stage, downstream: pykka.ActorRef[Any]) -> None:
        super().__init__()
        self.stage = stage
        self.downstream = downstream

    def on_receive(self, message: Any) -> None:
        self.downstream.tell(self.stage(message))


class SinkActor(pykka.ThreadingActor):
    """The end of the plain pykka chain: collects outputs, resolves the expecting future."""

    use_daemon_thread = True

    def __init__(self) -> None:
        super().__init__()
        self.remaining = 0
        self.outputs: list[Any] = []
        self.done: Future[list[Any]] | None = None

    def on_receive(self, message: Any) -> None:
        if isinstance(message, Expect):
            self.remaining, self.outputs, self.done = message.count, [], message.done
            return
        self.outputs.append(message)
        self.remaining -= 1
        if self.remaining == 0 and self.done is not None:
            self.done.set_result(self.outputs)


class PykkaChainRunner:
    """(c) ``ThreadingActor`` per stage, each telling the next; the sink resolves a future."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.sink = SinkActor.start()
        self.refs: list[pykka.ActorRef[Any]] = [self.sink]
        downstream: pykka.ActorRef[Any] = self.sink
        for stage in reversed(stages):
            downstream = ForwardActor.start(stage, downstream)
            self.refs.append(downstream)
        self.first = downstream

    def _expect(self, count: int) -> Future[list[Any]]:
        done: Future[list[Any]] = Future()
        self.sink.tell(Expect(count, done))  # queued at the sink before any output
        return done

    def batch(self, payloads: Sequence[Any]) -> tuple[float, list[Any]]:
        done = self._expect(len(payloads))
        tell = self.first.tell
        started = time.perf_counter()
        for payload in payloads:
            tell(payload)
        outputs = done.result(RESULT_TIMEOUT)
        return time.perf_counter() - started, outputs

    def one(self, payload: Any) -> Any:
        done = self._expect(1)
        self.first.tell(payload)
        return done.result(RESULT_TIMEOUT)[0]

    def close(self) -> None:
        for ref in reversed(self.refs):
            ref.stop()


class Unsupported(Exception):
    """``Pipeline.add()`` refused a keyword this suite needs (the feature is not there yet)."""


@dataclass(frozen=True)
class StageSpec:
    """One stage of one of our pipelines, with the extra ``add()`` keywords it needs."""

    name: str
    stage: Stage
    options: dict[str, Any] = field(default_factory=dict)


class OursRunner:
    """pystream_actors: ``submit`` every item, then await every future."""

    def __init__(self, specs: Sequence[StageSpec], mode: str = "parallel") -> None:
        self.pipeline = ps.Pipeline()
        accepted = inspect.signature(self.pipeline.add).parameters
        for spec in specs:
            missing = [key for key in spec.options if key not in accepted]
            if missing:
                raise Unsupported(f"Pipeline.add() has no {', '.join(missing)} keyword")
            add: Callable[..., None] = self.pipeline.add
            try:
                add(spec.stage, spec.name, **spec.options)
            except TypeError as exc:
                if "unexpected keyword argument" in str(exc):
                    raise Unsupported(str(exc)) from exc
                raise
        if mode == "serial":
            self.pipeline.serialize()
        else:
            self.pipeline.parallelize()
        self.handle = self.pipeline.handle

    def batch(self, payloads: Sequence[Any]) -> tuple[float, list[Any]]:
        submit = self.handle.submit
        started = time.perf_counter()
        futures = [submit(payload, RESULT_TIMEOUT) for payload in payloads]
        outputs = [future.result(RESULT_TIMEOUT) for future in futures]
        return time.perf_counter() - started, outputs

    def one(self, payload: Any) -> Any:
        return self.handle.ask(payload, RESULT_TIMEOUT)

    def close(self) -> None:
        self.pipeline.cleanup()


def ours(stages: Sequence[Stage], mode: str = "parallel") -> OursRunner:
    """Our pipeline of plain stages named S1..Sn."""
    return OursRunner([StageSpec(f"S{i + 1}", stage) for i, stage in enumerate(stages)], mode)


# -- measuring ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    """Best-of-repeats wall time for one batch size."""

    items: int
    seconds: float
    in_order: bool

    @property
    def items_per_s(self) -> float:
        return self.items / self.seconds

    @property
    def us_per_hop(self) -> float:
        return self.seconds / (self.items * STAGES) * 1e6


@dataclass(frozen=True)
class Latency:
    """Percentiles over every sample of every repeat."""

    samples: int
    p50_ms: float
    p99_ms: float


T = TypeVar("T")


@dataclass(frozen=True)
class Measured(Generic[T]):
    """A figure, or why there is none: not supported yet (n/a) or an error (a failure)."""

    value: T | None = None
    note: str = ""
    failed: bool = False


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return math.nan
    return sorted_values[max(1, math.ceil(fraction * len(sorted_values))) - 1]


def close_quietly(runner: Runner) -> None:
    try:
        runner.close()
    except Exception as exc:
        print(f"  (closing a runner failed: {error_text(exc)})", flush=True)


def build_all(
    makers: dict[str, Callable[[], Runner]],
) -> tuple[dict[str, Runner], dict[str, Measured[Any]]]:
    """Build every runner; those that cannot be built get a note instead."""
    runners: dict[str, Runner] = {}
    problems: dict[str, Measured[Any]] = {}
    for label, make in makers.items():
        try:
            runners[label] = make()
        except Unsupported:
            problems[label] = Measured(note=NOT_SUPPORTED)
        except Exception as exc:
            problems[label] = Measured(note=f"error: {error_text(exc)}", failed=True)
    return runners, problems


def compare_throughput(
    makers: dict[str, Callable[[], Runner]],
    payloads: Sequence[Any],
    repeats: int,
    warmup: int,
    order_key: Callable[[Any], Any] | None = None,
) -> dict[str, Measured[Throughput]]:
    """Time every runner on the same batch; keep each one's fastest of ``repeats``.

    The runners take turns (repeat r of every runner before repeat r+1 of any), so a
    change in the machine's load during the workload hits all of them alike.
    """
    runners, results = build_all(makers)
    best = dict.fromkeys(runners, math.inf)
    in_order = dict.fromkeys(runners, True)
    expected = None if order_key is None else [order_key(p) for p in payloads]

    def attempt(label: str, batch: Sequence[Any], timed: bool) -> None:
        runner = runners[label]
        gc.collect()
        try:
            wall, outputs = runner.batch(batch)
        except Exception as exc:
            results[label] = Measured(note=f"error: {error_text(exc)}", failed=True)
            close_quietly(runners.pop(label))
            return
        if timed:
            best[label] = min(best[label], wall)
            if order_key is not None and [order_key(o) for o in outputs] != expected:
                in_order[label] = False

    try:
        for label in list(runners):
            attempt(label, payloads[: max(1, min(warmup, len(payloads)))], timed=False)
        for _ in range(repeats):
            for label in list(runners):
                attempt(label, payloads, timed=True)
    finally:
        for runner in runners.values():
            close_quietly(runner)
    for label in runners:
        results[label] = Measured(Throughput(len(payloads), best[label], in_order[label]))
    return {label: results[label] for label in makers}


def compare_latency(
    makers: dict[str, Callable[[], Runner]], samples: int, repeats: int, chunk: int = 100
) -> dict[str, Measured[Latency]]:
    """One item at a time (offer it, wait for its output, repeat), ``samples x repeats`` each.

    The runners take turns in chunks of ``chunk`` samples, for the same reason as above.
    """
    runners, results = build_all(makers)
    latencies: dict[str, list[float]] = {label: [] for label in runners}

    def attempt(label: str, start: int, count: int, timed: bool) -> None:
        one = runners[label].one
        taken = latencies[label]
        try:
            for i in range(start, start + count):
                started = time.perf_counter()
                out = one(i)
                if timed:
                    taken.append(time.perf_counter() - started)
                if out != i:
                    raise RuntimeError(f"one-at-a-time run returned {out!r} for {i}")
        except Exception as exc:
            results[label] = Measured(note=f"error: {error_text(exc)}", failed=True)
            close_quietly(runners.pop(label))

    try:
        for label in list(runners):
            attempt(label, 0, min(200, samples), timed=False)
        total = samples * repeats
        for start in range(0, total, chunk):
            gc.collect()
            for label in list(runners):
                attempt(label, start, min(chunk, total - start), timed=True)
    finally:
        for runner in runners.values():
            close_quietly(runner)
    for label in runners:
        values = sorted(latencies[label])
        results[label] = Measured(
            Latency(len(values), percentile(values, 0.50) * 1000, percentile(values, 0.99) * 1000)
        )
    return {label: results[label] for label in makers}


def ratio_text(ratio: float | None, of: str) -> str:
    return "" if ratio is None else f"{ratio:.2f}x {of}"


def safe_ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return text if len(text) <= 90 else text[:87] + "..."


# -- the PyStream side ------------------------------------------------------------------------


def run_quiet(command: Sequence[str], timeout: float) -> tuple[bool, str]:
    """Run a command; (ok, the last meaningful line of its error output)."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, error_text(exc)
    lines = [
        line.strip()
        for line in (done.stderr + done.stdout).splitlines()
        if line.strip() and not line.startswith("WARNING: Location")
    ]
    return done.returncode == 0, (lines[-1] if lines else f"exit code {done.returncode}")


def ensure_pystream(create: bool) -> tuple[Path | None, str]:
    """The python of ``.venv-pystream`` with PyStream importable, or None and why not."""
    python = PYSTREAM_VENV / "bin" / "python"
    if not python.exists():
        if not create:
            return None, ".venv-pystream missing (a full run creates it)"
        base = shutil.which("python3") or sys.executable
        print(f"creating {PYSTREAM_VENV.name} for PyStream 0.2.0 (once) ...", flush=True)
        ok, why = run_quiet([base, "-m", "venv", str(PYSTREAM_VENV)], PIP_TIMEOUT)
        if not ok:
            shutil.rmtree(PYSTREAM_VENV, ignore_errors=True)
            return None, f"venv: {why}"
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        ok, why = run_quiet([*pip, *PYSTREAM_PACKAGES], PIP_TIMEOUT)
        if not ok:
            shutil.rmtree(PYSTREAM_VENV, ignore_errors=True)  # the next full run tries again
            return None, f"pip install: {why}"
        ok, why = run_quiet([*pip, *PYSTREAM_PACKAGES, *PYSTREAM_OPTIONAL], PIP_TIMEOUT)
        if not ok:
            print(f"  (no OpenCV for PyStream, workload 4 skips it: {why})", flush=True)
    ok, why = run_quiet([str(python), "-c", "import pystream"], 120.0)
    if not ok:
        return None, f"import pystream: {why}"
    return python, ""


def run_pystream(sizes: Sizes, create: bool) -> dict[str, Any]:
    """PyStream's figures from ``pystream_workloads.py``, or ``{"error": reason}``."""
    python, why = ensure_pystream(create)
    if python is None:
        return {"error": why}
    command = [
        str(python),
        str(HERE / "pystream_workloads.py"),
        f"--overhead-items={sizes.overhead_items}",
        f"--latency-samples={sizes.latency_samples}",
        f"--sleep-items={sizes.sleep_items}",
        f"--opencv-items={sizes.opencv_items}",
        f"--repeats={sizes.repeats}",
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=PYSTREAM_RUN_TIMEOUT, cwd=HERE
        )
    except subprocess.TimeoutExpired:
        return {"error": f"pystream_workloads.py took over {PYSTREAM_RUN_TIMEOUT:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    tail = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
    return {"error": f"pystream_workloads.py: {tail}"}


def pystream_part(results: dict[str, Any], key: str) -> tuple[dict[str, Any] | None, str]:
    """One workload's PyStream figures, or None and the note to print instead."""
    if "error" in results:
        return None, f"n/a: {results['error']}"
    part = results.get(key) or {"error": "missing from the output"}
    if "error" in part:
        return None, f"n/a: {part['error']}"
    return part, ""


# -- the workloads ------------------------------------------------------------------------------


CHAIN = "(b) thread chain, Queue(maxsize=4)"
PYKKA = "(c) pykka actor chain"
HANDOFFS_7 = "(b) with 6 no-op stages: 7 hand-offs"
"""Diagnostic: ours passes an item between threads 7 times (handle -> coordinator -> 4
stages -> coordinator -> caller), the 4-stage chain 5 times; this chain has 7 too."""


def target_from(
    name: str,
    measured: Measured[Any],
    ratio: float | None,
    threshold: float,
    at_least: bool,
    detail: str,
) -> Target:
    """The target's verdict: FAIL on an error, n/a when unsupported, else by the ratio."""
    if measured.failed:
        return Target(name, "FAIL", measured.note)
    if measured.value is None:
        return Target(name, "n/a", measured.note or "n/a")
    return Target(name, judge(ratio, threshold, at_least), detail)


def overhead(sizes: Sizes, pystream: dict[str, Any], targets: list[Target]) -> Section:
    """(1) Four no-op stages: what a hop costs."""
    n = sizes.overhead_items
    section = Section("1", f"per-item overhead: 4 no-op stages, {n} items, best of {sizes.repeats}")
    stages = [noop] * STAGES
    makers: dict[str, Callable[[], Runner]] = {
        "(a) for-loop": lambda: LoopRunner(stages),
        CHAIN: lambda: ThreadChainRunner(stages),
        PYKKA: lambda: PykkaChainRunner(stages),
        "ours, parallel": lambda: ours(stages),
    }
    measured = compare_throughput(makers, list(range(n)), sizes.repeats, 500, order_key=noop)
    chain = measured[CHAIN].value
    chain_hop = chain.us_per_hop if chain else None
    for label, result in measured.items():
        value = result.value
        if value is None:
            section.rows.append(Row(label, note=result.note))
        else:
            ratio = safe_ratio(value.us_per_hop, chain_hop)
            section.rows.append(
                Row(
                    label,
                    value.items_per_s,
                    value.us_per_hop,
                    ratio=ratio,
                    ratio_text=ratio_text(ratio, "of (b)"),
                    note="" if value.in_order else "OUT OF ORDER",
                )
            )
        if label == PYKKA:
            part, note = pystream_part(pystream, "overhead")
            if part is None:
                section.rows.append(Row("(d) PyStream 0.2.0, parallel", note=note))
            else:
                ratio_d = safe_ratio(part["us_per_hop"], chain_hop)
                section.rows.append(
                    Row(
                        "(d) PyStream 0.2.0, parallel",
                        part["items_per_s"],
                        part["us_per_hop"],
                        ratio=ratio_d,
                        ratio_text=ratio_text(ratio_d, "of (b)"),
                        note="own venv, own run; last stage counts (outputs are lossy)",
                    )
                )
    mine = measured["ours, parallel"]
    row = section.rows[-1]
    target = target_from(
        "parallel per-hop overhead vs thread chain",
        mine,
        row.ratio if mine.value is not None and mine.value.in_order else math.inf,
        HOP_TARGET,
        at_least=False,
        detail=f"{fmt_us(row.us_per_hop)} us vs {fmt_us(chain_hop)} us = "
        f"{ratio_text(row.ratio, '')}(target <= {HOP_TARGET}x)",
    )
    row.target, row.result = f"<= {HOP_TARGET}x", target.result
    targets.append(target)
    return section


def latency(sizes: Sizes, pystream: dict[str, Any], targets: list[Target]) -> Section:
    """(2) One item at a time through four no-op stages."""
    n = sizes.latency_samples * sizes.repeats
    section = Section("2", f"one-at-a-time latency: 4 no-op stages, {n} samples each")
    stages = [noop] * STAGES
    makers: dict[str, Callable[[], Runner]] = {
        "(a) for-loop": lambda: LoopRunner(stages),
        CHAIN: lambda: ThreadChainRunner(stages),
        PYKKA: lambda: PykkaChainRunner(stages),
        HANDOFFS_7: lambda: ThreadChainRunner([noop] * (STAGES + 2)),
        "ours, parallel: handle.ask()": lambda: ours(stages),
        "ours, serial: handle.ask()": lambda: ours(stages, "serial"),
    }
    measured = compare_latency(makers, sizes.latency_samples, sizes.repeats)
    chain = measured[CHAIN].value
    chain_p50 = chain.p50_ms if chain else None
    for label, result in measured.items():
        value = result.value
        if value is None:
            section.rows.append(Row(label, note=result.note))
        else:
            ratio = safe_ratio(value.p50_ms, chain_p50)
            section.rows.append(
                Row(
                    label,
                    p50_ms=value.p50_ms,
                    p99_ms=value.p99_ms,
                    ratio=ratio,
                    ratio_text=ratio_text(ratio, "p50 of (b)"),
                )
            )
        if label == HANDOFFS_7:
            section.rows[-1].note = "diagnostic: as many thread hand-offs as ours"
        if label == PYKKA:
            part, note = pystream_part(pystream, "latency")
            label_d = "(d) PyStream 0.2.0, serial"
            if part is None:
                section.rows.append(Row(label_d, note=note))
            else:
                ratio_d = safe_ratio(part["p50_ms"], chain_p50)
                section.rows.append(
                    Row(
                        label_d,
                        p50_ms=part["p50_ms"],
                        p99_ms=part["p99_ms"],
                        ratio=ratio_d,
                        ratio_text=ratio_text(ratio_d, "p50 of (b)"),
                        note="own run; runs the stages in the caller's thread",
                    )
                )
    row = section.rows[-1]
    target = target_from(
        "serial one-at-a-time p50 vs thread chain",
        measured["ours, serial: handle.ask()"],
        row.ratio,
        LATENCY_TARGET,
        at_least=False,
        detail=f"{fmt_ms(row.p50_ms)} ms vs {fmt_ms(chain_p50)} ms = "
        f"{ratio_text(row.ratio, '')}(target <= {LATENCY_TARGET}x)",
    )
    row.target, row.result = f"<= {LATENCY_TARGET}x", target.result
    targets.append(target)
    return section


def chain_throughput(
    key: str,
    title: str,
    stages: Sequence[Stage],
    payloads: Sequence[Any],
    sizes: Sizes,
    pystream: tuple[dict[str, Any] | None, str],
    target_name: str,
    targets: list[Target],
    order_key: Callable[[Any], Any] | None,
) -> Section:
    """(3), (4): ours in parallel mode against the thread chain, by throughput."""
    section = Section(key, title)
    makers: dict[str, Callable[[], Runner]] = {
        CHAIN: lambda: ThreadChainRunner(stages),
        PYKKA: lambda: PykkaChainRunner(stages),
        "ours, parallel": lambda: ours(stages),
    }
    measured = compare_throughput(makers, payloads, sizes.repeats, 20, order_key)
    chain = measured[CHAIN].value
    chain_rate = chain.items_per_s if chain else None
    for label, result in measured.items():
        value = result.value
        if value is None:
            section.rows.append(Row(label, note=result.note))
            continue
        ratio = safe_ratio(value.items_per_s, chain_rate)
        section.rows.append(
            Row(
                label,
                value.items_per_s,
                ratio=ratio,
                ratio_text=ratio_text(ratio, "of (b)"),
                note="" if value.in_order else "OUT OF ORDER",
            )
        )
    part, note = pystream
    label_d = "(d) PyStream 0.2.0, parallel"
    if part is None:
        section.rows.insert(2, Row(label_d, note=note))
    else:
        ratio_d = safe_ratio(part["items_per_s"], chain_rate)
        opencv = f", OpenCV {part['opencv']}" if "opencv" in part else ""
        section.rows.insert(
            2,
            Row(
                label_d,
                part["items_per_s"],
                ratio=ratio_d,
                ratio_text=ratio_text(ratio_d, "of (b)"),
                note=f"own venv, own run{opencv}",
            ),
        )
    mine = measured["ours, parallel"]
    row = section.rows[-1]
    in_order = mine.value is not None and mine.value.in_order
    target = target_from(
        target_name,
        mine,
        row.ratio if in_order else 0.0,
        THROUGHPUT_TARGET,
        at_least=True,
        detail=f"{fmt_rate(row.items_per_s)} vs {fmt_rate(chain_rate)} items/s = "
        f"{ratio_text(row.ratio, '')}(target >= {THROUGHPUT_TARGET}x)",
    )
    row.target, row.result = f">= {THROUGHPUT_TARGET}x", target.result
    targets.append(target)
    return section


def index_of(item: Any) -> Any:
    """The index of an ``(index, payload)`` item."""
    return item[0]


def scaled_stage(
    key: str,
    title: str,
    make_specs: Callable[[dict[str, Any]], list[StageSpec]],
    variants: tuple[tuple[str, dict[str, Any]], tuple[str, dict[str, Any]]],
    payloads: Sequence[Any],
    sizes: Sizes,
    threshold: float,
    target_name: str,
    targets: list[Target],
) -> Section:
    """(5), (6), (7): the same pipeline with one stage scaled up, against its baseline variant."""
    section = Section(key, title)
    makers: dict[str, Callable[[], Runner]] = {
        label: functools.partial(OursRunner, make_specs(options)) for label, options in variants
    }
    warmup = max(4, len(payloads) // 10)
    measured = compare_throughput(makers, payloads, sizes.repeats, warmup, index_of)
    (base_label, _), (scaled_label, _) = variants
    base, scaled = measured[base_label], measured[scaled_label]
    ratio = safe_ratio(
        scaled.value.items_per_s if scaled.value else None,
        base.value.items_per_s if base.value else None,
    )
    values = [m.value for m in (base, scaled) if m.value is not None]
    in_order = all(v.in_order for v in values)
    for label, result in measured.items():
        value = result.value
        note = result.note or ("order kept" if value and value.in_order else "OUT OF ORDER")
        section.rows.append(Row(label, value.items_per_s if value else None, note=note))
    # the baseline variant failing or missing makes the target fail or n/a as well
    worst = base if base.failed or base.value is None else scaled
    target = target_from(
        target_name,
        worst,
        ratio if in_order else 0.0,
        threshold,
        at_least=True,
        detail=f"{ratio_text(ratio, '')}(target >= {threshold}x"
        + (", order kept)" if in_order else ", ORDER NOT KEPT)"),
    )
    row = section.rows[-1]
    row.ratio, row.ratio_text = ratio, ratio_text(ratio, "of the above")
    row.target, row.result = f">= {threshold}x", target.result
    targets.append(target)
    return section


def io_workers(sizes: Sizes, targets: list[Target]) -> Section:
    """(5) An 8 ms sleeping stage between two 1 ms ones, scaled to four workers."""

    def specs(options: dict[str, Any]) -> list[StageSpec]:
        return [
            StageSpec("Before", sleep_1ms),
            StageSpec("Wait", sleep_8ms, options),
            StageSpec("After", sleep_1ms),
        ]

    n = sizes.io_items
    return scaled_stage(
        "5",
        f"1 ms -> 8 ms sleep -> 1 ms stages, {n} items (ideal 125 -> 500 items/s)",
        specs,
        (
            ("ours, workers=1", {"workers": 1, "ordered": True}),
            ("ours, workers=4 on the 8 ms stage", {"workers": 4, "ordered": True}),
        ),
        [(i, None) for i in range(n)],
        sizes,
        IO_WORKERS_TARGET,
        "workers=4 on an 8 ms I/O stage",
        targets,
    )


def cv_workers(sizes: Sizes, targets: list[Target], frame: Any) -> Section:
    """(6) An 8 ms OpenCV stage between two no-op stages, scaled to two workers."""
    repeats = cpu_stages.calibrate_opencv_repeats(0.008, frame)
    work = functools.partial(cpu_stages.cv_work, repeats=repeats)

    def specs(options: dict[str, Any]) -> list[StageSpec]:
        return [
            StageSpec("Before", noop),
            StageSpec("Blur", work, options),
            StageSpec("After", noop),
        ]

    n = sizes.cv_workers_items
    return scaled_stage(
        "6",
        f"no-op -> 8 ms OpenCV ({repeats} x GaussianBlur 15x15) -> no-op, {n} items",
        specs,
        (
            ("ours, workers=1", {"workers": 1, "ordered": True}),
            ("ours, workers=2 on the OpenCV stage", {"workers": 2, "ordered": True}),
        ),
        [(i, frame) for i in range(n)],
        sizes,
        CV_WORKERS_TARGET,
        "workers=2 on an 8 ms OpenCV stage",
        targets,
    )


def cpu_workers(sizes: Sizes, targets: list[Target]) -> Section:
    """(7) A pure-Python 20 ms stage: two worker processes against one thread."""
    iterations = cpu_stages.calibrate_spin(0.020)

    def specs(options: dict[str, Any]) -> list[StageSpec]:
        return [StageSpec("Spin", cpu_stages.spin, options)]

    n = sizes.cpu_items
    return scaled_stage(
        "7",
        f"pure-Python 20 ms CPU stage (cpu_stages.spin, {iterations:,} rounds), {n} items",
        specs,
        (
            ("ours, one thread (plain add)", {}),
            ('ours, executor="process", workers=2', {"workers": 2, "executor": "process"}),
        ),
        [(i, iterations) for i in range(n)],
        sizes,
        PROCESS_TARGET,
        'executor="process", workers=2 on a 20 ms CPU stage',
        targets,
    )


def overload(sizes: Sizes, targets: list[Target]) -> Section:
    """(8) A short ``overload.py``: drop_oldest against an unbounded queue chain."""
    seconds = sizes.overload_seconds
    section = Section("8", f"overload (overload.py, {seconds:g} s, source 3x too fast, 1 MB items)")
    try:
        module = import_module("overload")
    except ImportError as exc:
        section.rows.append(Row("overload.py", note=f"n/a: {error_text(exc)}"))
        targets.append(Target("overload: RSS growth and p99", "n/a", "overload.py missing"))
        return section
    try:
        ours_run = module.run_pipeline("drop_oldest", "drop_oldest", seconds)
        available = module.available_bytes()
        cap = module.BASELINE_RSS_CAP
        cap = cap if available is None else min(cap, available // 2)
        base_run = module.run_baseline("unbounded", seconds, cap)
    except Exception as exc:
        section.rows.append(Row("overload.py", note=f"error: {error_text(exc)}"))
        targets.append(Target("overload: RSS growth and p99", "FAIL", error_text(exc)))
        return section
    mb = float(module.MB)
    rss_target, p99_target = float(module.RSS_TARGET_MB), float(module.P99_TARGET_MS)
    for label, run in (
        ("unbounded queue.Queue() thread chain", base_run),
        ("ours, capacity=4, on_full=drop_oldest", ours_run),
    ):
        section.rows.append(
            Row(
                label,
                run.completed / run.source.seconds if run.source.seconds else None,
                p50_ms=run.latency_ms(0.50),
                p99_ms=run.latency_ms(0.99),
                note=f"RSS growth {run.rss_growth / mb:.1f} MB; completed {run.completed}, "
                f"dropped {run.dropped}, left {run.unfinished}",
            )
        )
    growth = ours_run.rss_growth / mb
    p99 = ours_run.latency_ms(0.99)
    ok = growth < rss_target and p99 < p99_target and ours_run.balanced
    row = section.rows[-1]
    row.ratio = safe_ratio(base_run.latency_ms(0.99), p99)
    row.ratio_text = ratio_text(row.ratio, "lower p99")
    row.target = f"<{rss_target:.0f}MB,<{p99_target:.0f}ms"
    row.result = "PASS" if ok else "FAIL"
    targets.append(
        Target(
            "overload drop_oldest: RSS growth, p99, accounting",
            row.result,
            f"RSS +{growth:.1f} MB (< {rss_target:.0f}), p99 {fmt_ms(p99)} ms "
            f"(< {p99_target:.0f}), balanced {ours_run.balanced}; unbounded chain: "
            f"RSS +{base_run.rss_growth / mb:.0f} MB, p99 {fmt_ms(base_run.latency_ms(0.99))} ms",
        )
    )
    return section


# -- the machine --------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """Where the figures were taken."""
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    memory = None
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            memory = next(
                (int(ln.split()[1]) * 1024 for ln in info if ln.startswith("MemTotal:")), None
            )
    except OSError:
        pass
    versions: dict[str, str] = {"pystream_actors": ps.__version__}
    for package in ("pykka", "numpy", "opencv-python-headless"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count() or 0
    return {
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpu_model": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "usable_cores": affinity,
        "memory_bytes": memory,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "versions": versions,
    }


def describe(info: dict[str, Any]) -> str:
    memory = info["memory_bytes"]
    load = info["load_average"]
    return (
        f"{info['cpu_model']}, {info['usable_cores']} cores, "
        f"{memory / 2**30:.1f} GiB; {info['python']} on {info['platform']}; "
        + ", ".join(f"{k} {v}" for k, v in info["versions"].items())
        + (f"; load average {load[0]:.2f}" if load else "")
    )


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short run (CI smoke)")
    parser.add_argument(
        "--json",
        default=str(ROOT / "bench-results.json"),
        help="write every result and the machine description here "
        "(default: bench-results.json in the repo root)",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a target is missed (default: exit 0)"
    )
    parser.add_argument(
        "--no-pystream", action="store_true", help="skip PyStream 0.2.0 (baseline d)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every workload, print the table, write the JSON, judge only when asked."""
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    # worker processes must import cpu_stages, whatever their start method
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p
    )
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    cpu_stages.single_threaded_opencv()
    frame = cpu_stages.make_frame()
    info = machine()
    started = time.perf_counter()
    print(f"machine: {describe(info)}", flush=True)
    load = info["load_average"]
    if load and load[0] > 0.5 * info["usable_cores"]:
        print(
            f"warning: load average {load[0]:.2f} on {info['usable_cores']} cores: other "
            "work competes with the benchmark, figures will be noisy",
            flush=True,
        )

    if args.no_pystream:
        pystream: dict[str, Any] = {"error": "skipped (--no-pystream)"}
    else:
        print("running PyStream 0.2.0's workloads in .venv-pystream ...", flush=True)
        pystream = run_pystream(sizes, create=not args.quick)
    info["pystream_venv_versions"] = pystream.get("versions")
    targets: list[Target] = []
    steps: list[tuple[str, Callable[[], Section]]] = [
        ("1", lambda: overhead(sizes, pystream, targets)),
        ("2", lambda: latency(sizes, pystream, targets)),
        (
            "3",
            lambda: chain_throughput(
                "3",
                f"4 x 2 ms sleeping stages, {sizes.sleep_items} items (ideal 500 items/s)",
                [sleep_2ms] * STAGES,
                list(range(sizes.sleep_items)),
                sizes,
                pystream_part(pystream, "sleep"),
                "2 ms sleeping stages: throughput vs thread chain",
                targets,
                noop,
            ),
        ),
        (
            "4",
            lambda: chain_throughput(
                "4",
                "4 OpenCV stages (blur, Lab, bilateral, Canny) on 480x720, "
                f"{sizes.opencv_items} items",
                cpu_stages.OPENCV_STAGES,
                [frame] * sizes.opencv_items,
                sizes,
                pystream_part(pystream, "opencv"),
                "OpenCV stages: throughput vs thread chain",
                targets,
                None,
            ),
        ),
        ("5", lambda: io_workers(sizes, targets)),
        ("6", lambda: cv_workers(sizes, targets, frame)),
        ("7", lambda: cpu_workers(sizes, targets)),
        ("8", lambda: overload(sizes, targets)),
    ]
    sections: list[Section] = []
    for key, step in steps:
        step_started = time.perf_counter()
        try:
            sections.append(step())
        except Exception as exc:
            sections.append(Section(key, "failed", [Row("(workload)", note=error_text(exc))]))
            targets.append(Target(f"workload ({key})", "FAIL", error_text(exc)))
        print(f"  workload ({key}) took {time.perf_counter() - step_started:.1f} s", flush=True)
    elapsed = time.perf_counter() - started

    print()
    print(
        "throughput = items / wall time (first item offered -> last output), best of "
        f"{sizes.repeats}; us/hop = wall / (items x 4 stages); latency percentiles over "
        "all samples; ratios against the row named, measured in this run"
    )
    print_table(sections, targets)
    print(f"suite ran in {elapsed:.0f} s{' (--quick)' if args.quick else ''}")

    report = {
        "machine": info,
        "quick": args.quick,
        "sizes": asdict(sizes),
        "seconds": elapsed,
        "sections": [asdict(section) for section in sections],
        "targets": [asdict(target) for target in targets],
        "pystream": pystream,
    }
    try:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"results written to {args.json}")
    except OSError as exc:
        print(f"could not write {args.json}: {exc}", file=sys.stderr)
    missed = [t for t in targets if t.result == "FAIL"]
    if args.check and missed:
        print(f"FAIL: {len(missed)} target(s) missed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
