"""The ``pystream-actors`` command line (also ``python -m pystream_actors``).

``run`` feeds a pipeline from a factory at a steady rate and shows each stage's figures
live, so a bottleneck is visible without writing any code; ``graph`` prints a pipeline's
topology; ``demo`` and ``bench`` run the scripts that ship with the source tree. Only the
standard library is needed; ``rich`` (``pip install 'pystream-actors[cli]'``) makes the
live view a redrawn table instead of plain text.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import itertools
import os
import runpy
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TextIO

from ._errors import PipelineTerminated, PipelineUndefined
from ._loop import InputLoop
from ._pipeline import Pipeline, PipelineStage
from ._statistics import PipelineStatistics
from ._window import ON_FULL_POLICIES

if TYPE_CHECKING:
    from rich.console import RenderableType

SOURCE_ROOT = Path(__file__).resolve().parent.parent
"""The source tree the package was installed from: ``examples/`` and ``benchmarks/`` live here."""

CLI_HINT = "pip install 'pystream-actors[cli]'"
BOTTLENECK_MARK = "<- bottleneck"
RICH_BOTTLENECK_MARK = "◀ bottleneck"
SETTLE_ITEMS = 10
"""Items every stage must have finished before the bottleneck is named: after only one
or two the utilization window is too short to compare, and the last stage to start
looks busiest."""
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A mistake in the command line or the target; printed without a traceback."""


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the subcommand, return its exit code."""
    parser = _build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "bench":
        args.script_args = extra[1:] if extra[:1] == ["--"] else extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except CliError as error:
        print(f"pystream-actors: error: {error}", file=sys.stderr)
        return 2


# -- the parser -----------------------------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pystream-actors",
        description="Run, watch and draw pystream_actors pipelines.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_demo(commands)
    _add_run(commands)
    _add_graph(commands)
    _add_bench(commands)
    return parser


def _add_demo(commands: Any) -> None:
    demo = commands.add_parser("demo", help="run the OpenCV demo (serial vs parallel)")
    demo.add_argument("--frames", type=_positive_int, help="frames per mode (demo default 200)")
    demo.set_defaults(handler=_cmd_demo)


def _add_run(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        help="feed a pipeline at a steady rate and watch its stages live",
        description="Build the pipeline with MODULE:FACTORY (a dotted module or a .py path), "
        "feed it --rate items/s and show each stage's figures, the bottleneck marked.",
    )
    run.add_argument("target", metavar="MODULE:FACTORY")
    run.add_argument("--mode", choices=("serial", "parallel"), default="parallel")
    run.add_argument("--rate", type=_positive_float, default=100.0, help="items/s (default 100)")
    run.add_argument(
        "--duration", type=_positive_float, help="seconds to feed (default: until Ctrl-C)"
    )
    run.add_argument("--capacity", type=_positive_int, help="items inside the pipeline at once")
    run.add_argument("--on-full", choices=ON_FULL_POLICIES, default="block", dest="on_full")
    run.add_argument(
        "--refresh", type=_positive_float, default=0.5, help="seconds between views (0.5)"
    )
    run.add_argument("--plain", action="store_true", help="plain text tables, no live redraw")
    run.set_defaults(handler=_cmd_run)


def _add_graph(commands: Any) -> None:
    graph = commands.add_parser("graph", help="print a pipeline's topology without running it")
    graph.add_argument("target", metavar="MODULE:FACTORY")
    graph.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
    graph.set_defaults(handler=_cmd_graph)


def _add_bench(commands: Any) -> None:
    bench = commands.add_parser(
        "bench",
        help="run the benchmarks of the source tree",
        description="Run benchmarks/run_all.py, else every benchmarks/*.py in turn; "
        "the other arguments go to each script (put them after -- to pass --help).",
    )
    bench.set_defaults(handler=_cmd_bench)


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text}")
    return value


# -- loading a pipeline ------------------------------------------------------------------------


def load_pipeline(target: str) -> Pipeline:
    """Call the factory named by ``MODULE:FACTORY`` and check it made a ``Pipeline``."""
    module_name, _, factory_name = target.rpartition(":")
    if not module_name or not factory_name:
        raise CliError(f"expected MODULE:FACTORY (e.g. examples/app.py:build), got {target!r}")
    module = _import_target(module_name)
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise CliError(f"{module_name} has no callable named {factory_name!r}")
    pipeline = factory()
    if not isinstance(pipeline, Pipeline):
        raise CliError(f"{target}() returned a {type(pipeline).__name__}, not a Pipeline")
    return pipeline


def _import_target(name: str) -> ModuleType:
    """A ``.py`` path is loaded from the file; anything else is imported like ``python -m``."""
    if name.endswith(".py") or os.sep in name or "/" in name:
        return _import_file(Path(name))
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as ``python -m`` would; console scripts do not
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as missing:
        if missing.name and name.startswith(missing.name):
            raise CliError(f"no module named {name!r} (a file path must end in .py)") from None
        raise


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise CliError(f"no such file: {path}")
    module_name = f"pystream_actors_app_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise CliError(f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look classes up here
    spec.loader.exec_module(module)
    return module


def _stages_of(pipeline: Pipeline) -> list[tuple[str, object]]:
    """(name, stage object) in order."""
    return list(pipeline.stages)


def _cleanup_tree(pipeline: Pipeline) -> None:
    """Stop a pipeline and the nested ones a factory started for ``as_stage()``."""
    for _, stage in _stages_of(pipeline):
        if isinstance(stage, PipelineStage):
            _cleanup_tree(stage.pipeline)
    pipeline.cleanup()


# -- demo and bench ------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    script = SOURCE_ROOT / "examples" / "demo_pipeline.py"
    if not script.is_file():
        print(
            f"The demo is not here ({script} is missing): it ships with the source tree, "
            "not the installed package. Clone the repository and run "
            "`python examples/demo_pipeline.py`.",
            file=sys.stderr,
        )
        return 1
    argv = [] if args.frames is None else ["--frames", str(args.frames)]
    try:
        namespace = runpy.run_path(str(script), run_name="pystream_actors_demo")
        return int(namespace["main"](argv) or 0)
    except SystemExit as stop:  # the demo exits 2 when OpenCV is missing
        return stop.code if isinstance(stop.code, int) else 1


def _cmd_bench(args: argparse.Namespace) -> int:
    folder = SOURCE_ROOT / "benchmarks"
    if not folder.is_dir():
        print(
            f"No benchmarks here ({folder} is missing): they ship with the source tree, "
            "not the installed package. Clone the repository to run them.",
            file=sys.stderr,
        )
        return 1
    run_all = folder / "run_all.py"
    scripts = [run_all] if run_all.is_file() else sorted(folder.glob("*.py"))
    worst = 0
    for script in scripts:
        print(f"== {script.name}", flush=True)
        code = subprocess.call([sys.executable, str(script), *args.script_args])
        worst = worst or code
    return worst


# -- graph ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """One stage in the drawing; a nested pipeline has ``children`` and is drawn as a box."""

    id: str
    label: str
    children: tuple[Node, ...] = ()

    @property
    def entry(self) -> str:
        """The node an incoming edge points at (a nested pipeline's first stage)."""
        return self.children[0].entry if self.children else self.id

    @property
    def exit(self) -> str:
        """The node an outgoing edge starts from (a nested pipeline's last stage)."""
        return self.children[-1].exit if self.children else self.id


def topology(pipeline: Pipeline, prefix: str = "s") -> tuple[Node, ...]:
    """The stages in order, nested pipelines (``PipelineStage``) expanded."""
    nodes = []
    for index, (name, stage) in enumerate(_stages_of(pipeline), start=1):
        node_id = f"{prefix}{index}"
        if isinstance(stage, PipelineStage):
            mode = stage.pipeline.mode
            label = f"{name} ({mode})" if mode else name
            nodes.append(Node(node_id, label, topology(stage.pipeline, f"{node_id}_")))
        else:
            nodes.append(Node(node_id, name))
    return tuple(nodes)


def _edges(nodes: Sequence[Node]) -> Iterator[tuple[str, str]]:
    """Every edge: input -> stages -> output, then the chain inside each nested pipeline."""
    yield from _chain([Node("input", ""), *nodes, Node("output", "")])


def _chain(nodes: Sequence[Node]) -> Iterator[tuple[str, str]]:
    for left, right in itertools.pairwise(nodes):
        yield left.exit, right.entry
    for node in nodes:
        yield from _chain(node.children)


def to_mermaid(pipeline: Pipeline) -> str:
    """A Mermaid ``flowchart LR``; nested pipelines are subgraphs."""
    nodes = topology(pipeline)
    lines = ["flowchart LR"]
    if pipeline.name:
        lines.append(f"    %% pipeline {pipeline.name}")
    lines.append('    input(["input"])')
    lines.extend(_mermaid_nodes(nodes, indent=1))
    lines.append('    output(["output"])')
    lines.extend(f"    {left} --> {right}" for left, right in _edges(nodes))
    return "\n".join(lines) + "\n"


def _mermaid_nodes(nodes: Sequence[Node], indent: int) -> Iterator[str]:
    pad = "    " * indent
    for node in nodes:
        label = node.label.replace('"', "#quot;")
        if node.children:
            yield f'{pad}subgraph {node.id} ["{label}"]'
            yield f"{pad}    direction LR"
            yield from _mermaid_nodes(node.children, indent + 1)
            yield f"{pad}end"
        else:
            yield f'{pad}{node.id}["{label}"]'


def to_dot(pipeline: Pipeline) -> str:
    """A Graphviz ``digraph``; nested pipelines are clusters."""
    nodes = topology(pipeline)
    lines = [
        f"digraph {_dot_quote(pipeline.name or 'pipeline')} {{",
        "    rankdir=LR;",
        "    node [shape=box];",
        '    input [shape=oval, label="input"];',
    ]
    lines.extend(_dot_nodes(nodes, indent=1))
    lines.append('    output [shape=oval, label="output"];')
    lines.extend(f"    {left} -> {right};" for left, right in _edges(nodes))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_nodes(nodes: Sequence[Node], indent: int) -> Iterator[str]:
    pad = "    " * indent
    for node in nodes:
        if node.children:
            yield f"{pad}subgraph cluster_{node.id} {{"
            yield f"{pad}    label={_dot_quote(node.label)};"
            yield from _dot_nodes(node.children, indent + 1)
            yield f"{pad}}}"
        else:
            yield f"{pad}{node.id} [label={_dot_quote(node.label)}];"


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _cmd_graph(args: argparse.Namespace) -> int:
    pipeline = load_pipeline(args.target)
    try:
        render = to_dot if args.format == "dot" else to_mermaid
        sys.stdout.write(render(pipeline))
    finally:
        _cleanup_tree(pipeline)  # a factory may have started nested pipelines
    return 0


# -- run: feeding ------------------------------------------------------------------------------


class Feed:
    """Feeds the pipeline on a drift-free clock for a while and says when time is up.

    Each tick pushes the input generator's next output (or the tick number) with
    ``tell``; with ``on_full="block"`` it waits at most one period for room, so the
    clock never stalls behind a slow stage. Refused items are the handle's ``rejected``.
    """

    def __init__(self, pipeline: Pipeline, rate: float, duration: float | None) -> None:
        self.pipeline = pipeline
        self.period = 1.0 / rate
        self.duration = duration
        self._generate = pipeline.input_generator or itertools.count().__next__
        self._over = threading.Event()
        self.started = time.monotonic()
        self._loop = InputLoop(self._push, self.period)

    def _push(self) -> None:
        if self.duration is not None and self.elapsed >= self.duration:
            self._over.set()
            return
        try:
            self.pipeline.handle.tell(self._generate(), timeout=self.period)
        except (PipelineTerminated, PipelineUndefined):
            self._over.set()  # a stage stopped: nothing more to feed

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def missed_ticks(self) -> int:
        """Ticks skipped because a push ran late (the source could not keep up)."""
        return self._loop.missed_ticks

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True once feeding is over."""
        if self.duration is not None:
            timeout = min(timeout, max(0.0, self.duration - self.elapsed))
        return self._over.wait(timeout) or (
            self.duration is not None and self.elapsed >= self.duration
        )

    def stop(self) -> None:
        self._loop.stop()


# -- run: the tables -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One stage line of the table (nested stages indented under their pipeline)."""

    name: str
    processed: int
    throughput: float
    p50_ms: float
    p99_ms: float
    queue_depth: int
    utilization_pct: float
    bottleneck: bool


COLUMNS = ("stage", "processed", "items/s", "p50 ms", "p99 ms", "queue", "util %", "")


def stage_rows(stats: PipelineStatistics, depth: int = 0) -> list[Row]:
    """The table rows; only the outer pipeline's bottleneck is marked."""
    rows = []
    for stage in stats.stages:
        indent = "  " * depth + ("└ " if depth else "")
        rows.append(
            Row(
                name=indent + stage.name,
                processed=stage.processed,
                throughput=stage.throughput,
                p50_ms=stage.service_time.p50 * 1000,
                p99_ms=stage.service_time.p99 * 1000,
                queue_depth=stage.queue_depth,
                utilization_pct=stage.utilization * 100,
                bottleneck=depth == 0 and stage.name == settled_bottleneck(stats),
            )
        )
        if stage.child is not None:
            rows.extend(stage_rows(stage.child, depth + 1))
    return rows


def _cells(row: Row, mark: str) -> tuple[str, ...]:
    return (
        row.name,
        f"{row.processed}",
        f"{row.throughput:.1f}",
        f"{row.p50_ms:.2f}",
        f"{row.p99_ms:.2f}",
        f"{row.queue_depth}",
        f"{row.utilization_pct:.0f}",
        mark if row.bottleneck else "",
    )


def totals_line(stats: PipelineStatistics, feed: Feed) -> str:
    """The pipeline's own figures under the table (two lines)."""
    return (
        f"accepted {stats.accepted}  completed {stats.completed}  failed {stats.failed}  "
        f"dropped {stats.dropped}  refused {feed.pipeline.handle.rejected}  "
        f"in flight {stats.in_flight}  late ticks {feed.missed_ticks}\n"
        f"e2e p50 {stats.latency.p50 * 1000:.2f} ms  p99 {stats.latency.p99 * 1000:.2f} ms  "
        f"{stats.throughput:.1f} items/s  bottleneck: {settled_bottleneck(stats) or '-'}"
    )


def settled_bottleneck(stats: PipelineStatistics) -> str | None:
    """The snapshot's bottleneck once every stage has done ``SETTLE_ITEMS`` items, else None."""
    if any(stage.processed + stage.failed < SETTLE_ITEMS for stage in stats.stages):
        return None
    return stats.bottleneck


def title_line(label: str, target: str, feed: Feed, mode: str) -> str:
    duration = "until Ctrl-C" if feed.duration is None else f"of {feed.duration:g} s"
    return (
        f"pystream-actors run {target}  [{label}]  {mode}, {1 / feed.period:g} items/s, "
        f"{min(feed.elapsed, feed.duration or feed.elapsed):.1f} s {duration}"
    )


def plain_table(stats: PipelineStatistics, title: str, totals: str) -> str:
    """The table as aligned text, for logs, pipes and terminals without rich."""
    body = [COLUMNS, *(_cells(row, BOTTLENECK_MARK) for row in stage_rows(stats))]
    widths = [max(len(line[col]) for line in body) for col in range(len(COLUMNS))]
    lines = [title]
    for line in body:
        cells = [
            cell.ljust(width) if col in (0, len(COLUMNS) - 1) else cell.rjust(width)
            for col, (cell, width) in enumerate(zip(line, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    lines.append(totals)
    return "\n".join(lines) + "\n"


def rich_view(stats: PipelineStatistics, title: str, totals: str) -> RenderableType:
    """The same table for rich: the bottleneck row in bold red (text as is, no markup)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table()
    for col, header in enumerate(COLUMNS):
        table.add_column(header, justify="left" if col in (0, len(COLUMNS) - 1) else "right")
    for row in stage_rows(stats):
        cells = (Text(cell) for cell in _cells(row, RICH_BOTTLENECK_MARK))
        table.add_row(*cells, style="bold red" if row.bottleneck else None)
    return Group(Text(title, style="bold"), table, Text(totals))


# -- run: the views --------------------------------------------------------------------------------


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


class Session:
    """One ``run``: the pipeline, its feed, and the tables drawn from its snapshots."""

    def __init__(self, pipeline: Pipeline, args: argparse.Namespace) -> None:
        self.pipeline = pipeline
        self.target = args.target
        self.mode = args.mode
        _start(pipeline, args)
        self.feed = Feed(pipeline, args.rate, args.duration)

    def parts(self, label: str) -> tuple[PipelineStatistics, str, str]:
        stats = self.pipeline.statistics()
        title = title_line(label, self.target, self.feed, self.mode)
        return stats, title, totals_line(stats, self.feed)

    def stop(self) -> None:
        """Stop feeding, let what is inside finish, stop every stage."""
        self.feed.stop()
        _cleanup_tree(self.pipeline)


def _start(pipeline: Pipeline, args: argparse.Namespace) -> None:
    if args.mode == "serial":
        pipeline.serialize(capacity=args.capacity or 1, on_full=args.on_full)
    else:
        pipeline.parallelize(capacity=args.capacity, on_full=args.on_full)


def _watch_plain(session: Session, refresh: float) -> None:
    while not session.feed.wait(refresh):
        print(plain_table(*session.parts("live")), flush=True)


def _watch_rich(session: Session, refresh: float) -> None:
    from rich.live import Live

    with Live(rich_view(*session.parts("live")), auto_refresh=False, transient=True) as live:
        while not session.feed.wait(refresh):
            live.update(rich_view(*session.parts("live")), refresh=True)


def _cmd_run(args: argparse.Namespace) -> int:
    pipeline = load_pipeline(args.target)
    fancy = _use_rich(args, sys.stdout)
    try:
        session = Session(pipeline, args)
    except BaseException:
        _cleanup_tree(pipeline)
        raise
    code = 0
    try:
        (_watch_rich if fancy else _watch_plain)(session, args.refresh)
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    finally:
        session.stop()
    _print_final(session, fancy)
    return code


def _print_final(session: Session, fancy: bool) -> None:
    parts = session.parts("final")
    if fancy:
        from rich.console import Console

        Console().print(rich_view(*parts))
    else:
        print(plain_table(*parts), flush=True)
