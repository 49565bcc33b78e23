"""``run``: feed a pipeline through its own input loop and redraw its table.

The feed is the pipeline's ``start_loop``: the same drift-free clock, the same
one-period wait for room under ``on_full="block"`` and the same ``missed_ticks`` a
program gets, so what the view shows is what the pipeline does when it runs on its own.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, ModuleType
from typing import TextIO

from .._pipeline import Pipeline
from .._statistics import PipelineStatistics
from ._errors import CliError
from ._loading import cleanup_tree, load_pipeline
from ._table import graph_order, plain_table, rich_view, settled_bottleneck

CLI_HINT = "pip install 'pystream-actors[cli]'"
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process ended by it
NO_INPUT_GENERATOR = (
    "{target}() built a pipeline without an input generator; `run` feeds it through "
    "Pipeline.start_loop(), which draws items from it: build it with "
    "Pipeline(input_generator=...) (e.g. itertools.count().__next__ for 0, 1, 2, ...)"
)


class Session:
    """One ``run``: the started pipeline fed by its input loop, and the clock of the run."""

    def __init__(self, pipeline: Pipeline, args: argparse.Namespace) -> None:
        if pipeline.input_generator is None:
            raise CliError(NO_INPUT_GENERATOR.format(target=args.target))
        self.pipeline = pipeline
        self.target: str = args.target
        self.mode: str = args.mode
        self.rate: float = args.rate
        self.duration: float | None = args.duration
        if args.mode == "serial":
            pipeline.serialize(capacity=args.capacity or 1, on_full=args.on_full)
        else:
            pipeline.parallelize(capacity=args.capacity, on_full=args.on_full)
        self.order = graph_order(pipeline)
        self.started = time.monotonic()
        pipeline.start_loop(1.0 / args.rate)

    @property
    def elapsed(self) -> float:
        """Seconds since feeding began, never past the requested duration."""
        elapsed = time.monotonic() - self.started
        return elapsed if self.duration is None else min(elapsed, self.duration)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True once the run is over (time is up, or a
        stage's failure stopped the pipeline, so nothing more can be fed)."""
        if self.duration is not None:
            timeout = min(timeout, self.duration - self.elapsed)
        time.sleep(max(0.0, timeout))  # sleep-ok: the redraw period; Ctrl-C and kill interrupt it
        over = self.duration is not None and self.elapsed >= self.duration
        return over or self.pipeline.handle.state != "running"

    def parts(self, label: str) -> tuple[PipelineStatistics, str, str, tuple[str, ...]]:
        """A snapshot with the title and totals lines that go around its table, and the
        graph's order of its stages and junctions."""
        stats = self.pipeline.statistics()
        return stats, self._title(label), self._totals(stats), self.order

    def _title(self, label: str) -> str:
        duration = "until Ctrl-C" if self.duration is None else f"of {self.duration:g} s"
        return (
            f"pystream-actors run {self.target}  [{label}]  {self.mode}, {self.rate:g} items/s, "
            f"{self.elapsed:.1f} s {duration}"
        )

    def _totals(self, stats: PipelineStatistics) -> str:
        """Two lines of pipeline figures; a graph gets a third with its critical path (in a
        plain chain that is every stage, so it is left out)."""
        critical = (
            f"\ncritical path: {' -> '.join(stats.critical_path)}"
            if stats.junctions and stats.critical_path
            else ""
        )
        return (
            f"accepted {stats.accepted}  completed {stats.completed}  failed {stats.failed}  "
            f"dropped {stats.dropped}  refused {self.pipeline.handle.rejected}  "
            f"in flight {stats.in_flight}  late ticks {self.pipeline.missed_ticks}\n"
            f"e2e p50 {stats.latency.p50 * 1000:.2f} ms  p99 {stats.latency.p99 * 1000:.2f} ms  "
            f"{stats.throughput:.1f} items/s  bottleneck: {settled_bottleneck(stats) or '-'}"
            f"{critical}"
        )

    def stop(self) -> None:
        """Stop feeding, let what is inside finish, stop every stage."""
        self.pipeline.stop_loop()
        cleanup_tree(self.pipeline)


def run_command(args: argparse.Namespace) -> int:
    """Feed and watch until the duration is over or Ctrl-C, then print the final table."""
    if getattr(args, "ray_address", None):
        _connect_ray(args.ray_address)
    pipeline = load_pipeline(args.target)
    fancy = _use_rich(args, sys.stdout)
    try:
        session = Session(pipeline, args)
    except BaseException:
        cleanup_tree(pipeline)
        raise
    code = 0
    try:
        with _sigterm_stops_like_ctrl_c():
            (_watch_rich if fancy else _watch_plain)(session, args.refresh)
    except _Terminated:
        code = EXIT_TERMINATED
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    finally:
        session.stop()
    parts = session.parts("final")
    if fancy:
        from rich.console import Console

        Console().print(rich_view(*parts))
    else:
        print(plain_table(*parts), flush=True)
    return code


class _Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop as after Ctrl-C (drain, clean up, print the final table)."""


@contextmanager
def _sigterm_stops_like_ctrl_c() -> Iterator[None]:
    """While watching, ``kill`` (SIGTERM) ends the run cleanly; during the stop that
    follows, the default comes back, so a second ``kill`` ends the process at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _connect_ray(address: str) -> None:
    """Connect this process to the Ray cluster at ``address`` before the pipeline is built."""
    from .._errors import MissingExtra
    from .._ray_stage import connect_ray

    try:
        connect_ray(address)
    except MissingExtra as exc:
        raise CliError(str(exc)) from exc
    except Exception as exc:  # Ray's own: no cluster there, a version mismatch...
        raise CliError(f"could not connect to Ray at {address!r}: {exc}") from exc


def _rich_or_none() -> ModuleType | None:
    try:
        import rich
    except ImportError:
        return None
    return rich


def _use_rich(args: argparse.Namespace, out: TextIO) -> bool:
    """Rich when available, wanted and on a terminal; explain how to get it when missing."""
    if args.plain:
        return False
    if _rich_or_none() is None:
        print(
            f"rich is not installed, so the live view is plain text; for the live table: {CLI_HINT}",
            file=sys.stderr,
        )
        return False
    return out.isatty()


def _watch_plain(session: Session, refresh: float) -> None:
    while not session.wait(refresh):
        print(plain_table(*session.parts("live")), flush=True)


def _watch_rich(session: Session, refresh: float) -> None:
    from rich.live import Live

    with Live(rich_view(*session.parts("live")), auto_refresh=False, transient=True) as live:
        while not session.wait(refresh):
            live.update(rich_view(*session.parts("live")), refresh=True)
