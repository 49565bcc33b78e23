"""Every script in examples/ runs to the end, briefly, as a user would run it.

Each script runs in a fresh interpreter (``sys.executable``) with options that keep it
to a second or two, and must exit 0, print the line that shows it did its job, and
print no traceback. A script without a ``__main__`` block is a module for other tools
(``pystream-actors run``) and is skipped here.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SCRIPT_TIMEOUT = 90.0
"""Seconds one script may take; each needs a few at most."""


@dataclass(frozen=True)
class Run:
    """How to run one example briefly and what its output must contain."""

    args: tuple[str, ...]
    expect: str
    """A line the script prints only when it did its job (never empty)."""
    needs: tuple[str, ...] = ()
    """Modules the script imports besides pystream_actors."""


RUNS = {
    "camera_realtime.py": Run(
        ("--duration", "1"), "end-to-end latency (capture to display): p50", ("numpy",)
    ),
    "web_service.py": Run(("--self-test", "--requests", "40"), "self-test passed"),
    "sensor_fusion.py": Run(("--seconds", "1"), "every sample accounted for", ("numpy",)),
    "perception.py": Run(("--frames", "60"), "every frame accounted for: 60 accepted", ("numpy",)),
    "per_camera.py": Run(("--frames", "30"), "per-camera order kept in both runs", ("numpy",)),
    "supervised_pipeline.py": Run(("--items", "300"), "nothing lost: 300 submitted"),
    "demo_pipeline.py": Run(
        ("--frames", "10"), "Both modes returned the same 10 results", ("numpy", "cv2")
    ),
    "dummy_pipeline.py": Run((), "every stage cleaned up = True"),
    "slow_third_stage.py": Run(("--items", "200"), "bottleneck: Detect"),
    "ray_pipeline.py": Run(("--frames", "20"), "every frame came back in order", ("ray", "numpy")),
}


def has_main(script: Path) -> bool:
    """Whether the script does something when run (has a ``__main__`` block)."""
    return 'if __name__ == "__main__":' in script.read_text(encoding="utf-8")


SCRIPTS = sorted(EXAMPLES.glob("*.py"))


def test_the_new_examples_are_here() -> None:
    """The examples the documentation links to exist."""
    names = {script.name for script in SCRIPTS}
    assert set(RUNS) <= names, f"missing examples: {sorted(set(RUNS) - names)}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_example_runs(script: Path, tmp_path: Path) -> None:
    """The script exits 0, prints its key line and no traceback."""
    if not has_main(script):
        pytest.skip(f"{script.name} has no __main__ block: it is a module for other tools")
    run = RUNS.get(script.name)
    assert run is not None, f"add {script.name} to RUNS with the line that shows it worked"
    assert run.expect, f"{script.name}: RUNS must name a line the script prints"
    for module in run.needs:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{script.name} needs {module}, which is not installed")
    env = {**os.environ, "PYSTREAM_ACTORS_PROFILE_DIR": str(tmp_path / "profiles")}
    done = subprocess.run(
        [sys.executable, str(script), *run.args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
        check=False,
    )
    output = f"--- stdout ---\n{done.stdout}--- stderr ---\n{done.stderr}"
    assert done.returncode == 0, f"{script.name} exited {done.returncode}\n{output}"
    assert run.expect in done.stdout, f"{script.name} did not print {run.expect!r}\n{output}"
    assert "Traceback" not in done.stderr, f"{script.name} printed a traceback\n{output}"
