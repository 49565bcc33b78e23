"""Run every benchmark: the suite's one table first, then each stand-alone benchmark script.

What it shows: everything ``make bench`` reports, one script after another with their
own output, then a summary line per script with its exit code and run time. Scripts that
do not exist (yet) are skipped; any other ``benchmarks/*.py`` script with a ``__main__``
guard runs after the known ones.

``--quick`` makes every run short: the suite gets ``--quick``, the others get their own
size options turned down (only those their ``--help`` lists, so a changed script never
breaks the run). ``--check`` is passed to every script that has it, and the exit code is
non-zero if any script exited non-zero.

    python benchmarks/run_all.py            # make bench
    python benchmarks/run_all.py --quick    # make bench-quick / CI smoke
    python benchmarks/run_all.py --check    # fail if a target is missed
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent

SUITE = "suite.py"
KNOWN = (
    "parallel_speedup.py",
    "overload.py",
    "cleanup_latency.py",
    "soak_restarts.py",
    "statistics_overhead.py",
)
"""Run after the suite, in this order."""
HELPERS = frozenset(
    {
        "run_all.py",
        SUITE,
        "cpu_stages.py",
        "graph_rows.py",
        "harness.py",
        "machine.py",
        "overload_row.py",
        "pystream_remote.py",
        "pystream_workloads.py",
        "report.py",
        "runners.py",
        "stage_sets.py",
        "sync_rows.py",
        "workloads.py",
    }
)
"""Modules that are not stand-alone benchmarks (the suite's parts)."""

QUICK_OPTIONS: dict[str, tuple[tuple[str, str | None], ...]] = {
    SUITE: (("--quick", None),),
    "parallel_speedup.py": (("--items", "60"),),
    "overload.py": (("--duration", "2"),),
    "cleanup_latency.py": (("--repetitions", "10"),),
    "soak_restarts.py": (("--items", "20000"), ("--restarts", "100"), ("--replaces", "10")),
    "statistics_overhead.py": (("--items", "100000"), ("--rounds", "3")),
}
"""Per script: the options (and values) that shorten it under ``--quick``."""
GENERIC_QUICK: tuple[tuple[str, str | None], ...] = (("--quick", None), ("--duration", "2"))
"""For scripts not listed above: the first of these their ``--help`` offers."""


@dataclass(frozen=True)
class Outcome:
    """How one script ended."""

    script: str
    exit_code: int | None  # None: did not finish in time
    seconds: float
    arguments: tuple[str, ...]


def discover() -> list[Path]:
    """The suite, the known scripts that exist, then any other stand-alone script."""
    scripts = [HERE / SUITE] + [HERE / name for name in KNOWN if (HERE / name).exists()]
    for path in sorted(HERE.glob("*.py")):
        if path.name in HELPERS or path.name in KNOWN or path.name.startswith("_"):
            continue
        if re.search(r"^if __name__ == .__main__.:", path.read_text(encoding="utf-8"), re.M):
            scripts.append(path)
    return scripts


def options_of(script: Path) -> set[str]:
    """The long options a script's ``--help`` lists (empty if it has no argparse help)."""
    try:
        done = subprocess.run(
            [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", done.stdout))


def arguments_for(script: Path, quick: bool, check: bool, json_path: str | None) -> list[str]:
    """The command-line arguments for ``script`` under the given run options."""
    offered = options_of(script)
    arguments: list[str] = []
    if quick:
        wanted = QUICK_OPTIONS.get(script.name)
        if wanted is None:  # an unknown script: the first generic option it offers
            wanted = next(((o,) for o in GENERIC_QUICK if o[0] in offered), ())
        for option, value in wanted:
            if option in offered:
                arguments += [option] if value is None else [option, value]
    if check and "--check" in offered:
        arguments.append("--check")
    if json_path and script.name == SUITE:
        arguments += ["--json", json_path]
    return arguments


def run(script: Path, arguments: Sequence[str], timeout: float) -> Outcome:
    """Run one script with its output going straight to ours."""
    print(f"\n=== {script.name} {' '.join(arguments)}".rstrip(), flush=True)
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, str(script), *arguments], timeout=timeout)
        code: int | None = done.returncode
    except subprocess.TimeoutExpired:
        print(f"{script.name}: stopped after {timeout:.0f} s", flush=True)
        code = None
    return Outcome(script.name, code, time.perf_counter() - started, tuple(arguments))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short runs of every script")
    parser.add_argument(
        "--check", action="store_true", help="pass --check on; exit 1 if a script fails"
    )
    parser.add_argument("--json", help="where suite.py writes its results (its default if unset)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        help="seconds one script may run before it is stopped (default 1800)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scripts one after another and summarise their exit codes."""
    args = parse_args(argv)
    outcomes = [
        run(script, arguments_for(script, args.quick, args.check, args.json), args.timeout)
        for script in discover()
    ]
    skipped = [name for name in KNOWN if not (HERE / name).exists()]
    print("\n=== summary")
    for outcome in outcomes:
        status = "timed out" if outcome.exit_code is None else f"exit {outcome.exit_code}"
        verdict = "ok" if outcome.exit_code == 0 else "FAILED"
        print(f"{outcome.script:<22} {status:<10} {outcome.seconds:7.1f} s  {verdict}")
    for name in skipped:
        print(f"{name:<22} skipped (not present)")
    return 0 if all(outcome.exit_code == 0 for outcome in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
