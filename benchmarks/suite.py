"""The benchmark suite: one table of figures and ratios, every baseline measured in the same run.

What it shows: how much the actor pipeline costs over the plain ways of running the same
stages, how it compares with PyStream 0.2.0, and whether scaling one stage up
(``workers=N``, ``executor="process"``) pays. Every ratio compares two rows of this run on
this machine, so it does not depend on the machine's speed (it does on its load: the
suite prints the load average).

The parts: ``workloads.py`` declares every workload, its variants, what each buffers
and each row's targets, as data; ``harness.py`` times them (variants take turns, ratios
are medians of paired rounds); ``runners.py`` builds the baselines and ours;
``pystream_remote.py`` runs PyStream in ``.venv-pystream`` through the same harness;
``report.py`` prints the table; ``overload_row.py`` is the one workload with its own code.

Baselines
  (a) a plain for-loop calling the stages in turn, in the caller's thread;
  (b) a chain of threads joined by ``queue.Queue(maxsize)``: the practical floor;
  (c) a raw pykka chain: a ``ThreadingActor`` per stage, each ``tell``-ing the next;
  (d) PyStream 0.2.0, in its own virtualenv ``.venv-pystream`` (created by a full run).

Definitions
  - throughput: items / wall time from the first item offered to the last output
    delivered to the caller; the median of the paired rounds;
  - hop: one stage-to-stage transfer; ``us/hop`` = wall time / (items x stages);
  - latency: from offering one item to receiving its output, nothing else in flight;
    percentiles over every sample (nearest rank).

    python benchmarks/suite.py                 # the full run (a few minutes)
    python benchmarks/suite.py --quick         # a short smoke run (CI)
    python benchmarks/suite.py --only 1,2      # just those workloads
    python benchmarks/suite.py --check         # exit 1 if a target is missed
    python benchmarks/suite.py --json out.json # where to write all results (default
                                               #   bench-results.json in the repo root)
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run from elsewhere: the helper modules live here
    sys.path.insert(0, str(HERE))

import pystream_remote  # noqa: E402
import stage_sets  # noqa: E402
from harness import compare_latency, compare_throughput, error_text  # noqa: E402
from machine import describe, machine  # noqa: E402
from report import Row, Section, Verdict, print_table, section  # noqa: E402
from runners import Plan  # noqa: E402
from workloads import FULL, QUICK, Comparison, Custom, Sizes, workloads  # noqa: E402


def measure(workload: Comparison | Custom, sizes: Sizes) -> Section:
    """Run one workload and make its section of the table."""
    if isinstance(workload, Custom):
        return workload.run(sizes)
    items = workload.size(sizes)
    plan = Plan(workload.stages, workload.payload)
    makers = {variant.label: functools.partial(variant.make, plan) for variant in workload.variants}
    names = tuple(name for _, name in workload.stages)
    title = workload.title.format(items=items, calibration=stage_sets.describe(names))
    if workload.measure == "latency":
        return section(workload, compare_latency(makers, items), title)
    outcomes = compare_throughput(makers, items, sizes.rounds, min(workload.warmup, items))
    return section(workload, outcomes, f"{title}, {sizes.rounds} paired rounds")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short run (CI smoke)")
    parser.add_argument("--only", help="comma-separated workload numbers, e.g. 1,2")
    parser.add_argument(
        "--json",
        default=str(HERE.parent / "bench-results.json"),
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


def run_all(sizes: Sizes, only: set[str] | None) -> list[Section]:
    """Every selected workload in turn; a crash becomes a failed section, not a crash."""
    sections = []
    for workload in workloads():
        if only is not None and workload.key not in only:
            continue
        started = time.perf_counter()
        try:
            sections.append(measure(workload, sizes))
        except Exception as exc:
            verdict = Verdict("(workload)", "runs", None, "FAIL", error_text(exc))
            row = Row("(workload)", note=error_text(exc), verdicts=[verdict])
            sections.append(Section(workload.key, "failed", rows=[row]))
        print(f"  workload ({workload.key}) took {time.perf_counter() - started:.1f} s", flush=True)
    return sorted(sections, key=lambda part: int(part.key))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the workloads, print the table, write the JSON, judge only when asked."""
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    # worker processes (executor="process") must import cpu_stages and stage_sets
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p
    )
    info = machine()
    print(f"machine: {describe(info)}", flush=True)
    load = info["load_average"]
    if load and load[0] > 0.5 * info["usable_cores"]:
        print(
            f"warning: load average {load[0]:.2f} on {info['usable_cores']} cores: other "
            "work competes with the benchmark, figures will be noisy",
            flush=True,
        )
    if args.no_pystream:
        pystream_remote.skip("skipped (--no-pystream)")
        pystream: dict[str, Any] = {"error": "skipped (--no-pystream)"}
    else:
        pystream = pystream_remote.start(create=not args.quick)
    started = time.perf_counter()
    try:
        only = None if args.only is None else set(args.only.split(","))
        sections = run_all(sizes, only)
    finally:
        pystream_remote.stop()
    elapsed = time.perf_counter() - started

    print("\nthroughput: items / wall time, first item offered -> last output delivered, median")
    print("of paired rounds (variants take turns); latency percentiles over every sample;")
    print("ratios against rows of this run: throughput ones are medians of per-round ratios")
    print("(so under uneven load a ratio can differ from the ratio of the figures shown);")
    print("statistics overhead: statistics_overhead.py, which make bench runs after the suite")
    print(f"PyStream 0.2.0: {pystream}")
    print_table(sections)
    print(f"suite ran in {elapsed:.0f} s{' (--quick)' if args.quick else ''}")
    report = {
        "machine": info,
        "quick": args.quick,
        "sizes": asdict(sizes),
        "seconds": elapsed,
        "sections": [asdict(part) for part in sections],
        "pystream": pystream,
    }
    try:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"results written to {args.json}")
    except OSError as exc:
        print(f"could not write {args.json}: {exc}", file=sys.stderr)
    missed = [v for part in sections for row in part.rows for v in row.verdicts]
    missed = [verdict for verdict in missed if verdict.result == "FAIL"]
    if args.check and missed:
        print(f"FAIL: {len(missed)} target(s) missed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
