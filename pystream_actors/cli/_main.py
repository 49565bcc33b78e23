"""The argument parser and ``main``: which subcommand runs, and errors as one line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from .._window import ON_FULL_POLICIES
from ._errors import CliError
from ._graph import graph_command
from ._run import run_command
from ._scripts import bench_command, demo_command


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
    demo.set_defaults(handler=demo_command)


def _add_run(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        help="feed a pipeline at a steady rate and watch its stages live",
        description="Build the pipeline with MODULE:FACTORY (a dotted module or a .py path), "
        "feed it --rate items/s from its input generator and show each stage's figures, "
        "the bottleneck marked.",
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
    run.add_argument(
        "--ray-address",
        dest="ray_address",
        metavar="ADDRESS",
        help="connect to this Ray cluster (ray.init(address=...)) for executor='ray' stages",
    )
    run.set_defaults(handler=run_command)


def _add_graph(commands: Any) -> None:
    graph = commands.add_parser("graph", help="print a pipeline's topology without running it")
    graph.add_argument("target", metavar="MODULE:FACTORY")
    graph.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
    graph.set_defaults(handler=graph_command)


def _add_bench(commands: Any) -> None:
    bench = commands.add_parser(
        "bench",
        help="run the benchmarks of the source tree",
        description="Run benchmarks/run_all.py, else every benchmarks/*.py in turn; "
        "the other arguments go to each script (put them after -- to pass --help).",
    )
    bench.set_defaults(handler=bench_command)


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
