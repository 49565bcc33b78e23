"""``demo`` and ``bench``: run the scripts that ship with the source tree, not the package.

An installed package has neither folder, so both commands say where the scripts live
instead of failing with a missing-file traceback.
"""

from __future__ import annotations

import argparse
import runpy
import subprocess
import sys
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parent.parent.parent
"""The source tree the package was installed from: ``examples/`` and ``benchmarks/`` live here."""


def demo_command(args: argparse.Namespace) -> int:
    """Run ``examples/demo_pipeline.py``'s ``main`` in this process."""
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


def bench_command(args: argparse.Namespace) -> int:
    """Run ``benchmarks/run_all.py``, else every benchmark script; the worst exit code wins."""
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
