"""(d) PyStream 0.2.0 as a variant like the others, though it runs in its own virtualenv.

``.venv-pystream`` (created here on first use of a full run; PyStream needs numpy<2)
runs ``pystream_workloads.py`` as a server for the whole suite. A ``Remote`` variant
asks it to build, time and close a PyStream chain; the timing happens over there by the
same harness code, so the pipe between the processes is never inside a measurement and
the variants still take turns with ours.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness import BatchTime, Timed, Unavailable, error_text
from runners import Maker, Plan

HERE = Path(__file__).resolve().parent
VENV = HERE.parent / ".venv-pystream"
PACKAGES = ("pystream-pipeline==0.2.0", "numpy<2")
OPTIONAL = ("opencv-python-headless<4.11",)
"""Installed best-effort so PyStream can run the OpenCV workload too (numpy<2 needs 4.10)."""
PIP_TIMEOUT = 900.0


def _run_quiet(command: list[str], timeout: float) -> tuple[bool, str]:
    """Run a command; (ok, the last meaningful line of its output)."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, error_text(exc)
    lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    return done.returncode == 0, (lines[-1] if lines else f"exit code {done.returncode}")


def ensure_venv(create: bool) -> Path:
    """The python of ``.venv-pystream``, made first if ``create``; ``Unavailable`` if none."""
    python = VENV / "bin" / "python"
    if python.exists():
        return python
    if not create:
        raise Unavailable(".venv-pystream missing (a full run creates it)")
    print(f"creating {VENV.name} for PyStream 0.2.0 (once) ...", flush=True)
    base = shutil.which("python3") or sys.executable
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    for step, command in (("venv", [base, "-m", "venv", str(VENV)]), ("pip", [*pip, *PACKAGES])):
        ok, why = _run_quiet(command, PIP_TIMEOUT)
        if not ok:
            shutil.rmtree(VENV, ignore_errors=True)  # the next full run tries again
            raise Unavailable(f"{step}: {why}")
    ok, why = _run_quiet([*pip, *PACKAGES, *OPTIONAL], PIP_TIMEOUT)
    if not ok:
        print(f"  (no OpenCV for PyStream, the OpenCV workload skips it: {why})", flush=True)
    return python


class Server:
    """The ``pystream_workloads.py`` process and its one-line requests."""

    def __init__(self, python: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(HERE)}
        self.process = subprocess.Popen(
            [str(python), str(HERE / "pystream_workloads.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=HERE,
            env=env,
        )
        self.versions = self.request({"op": "versions"})

    def request(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request and wait for its answer; an ``error`` answer raises."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"pystream_workloads.py exited ({self.process.wait()})")
        answer: dict[str, Any] = json.loads(line)
        if "unavailable" in answer:
            raise Unavailable(answer["unavailable"])
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)


class Remote:
    """``Timed`` for a PyStream chain built by the server."""

    def __init__(self, server: Server, plan: Plan, mode: str) -> None:
        self.server = server
        stages = [name for _, name in plan.stages]
        build = {"op": "build", "stages": stages, "payload": plan.payload, "mode": mode}
        self.id = server.request(build)["id"]

    def time_batch(self, count: int) -> BatchTime:
        return BatchTime(**self.server.request({"op": "batch", "id": self.id, "count": count}))

    def time_ones(self, start: int, count: int) -> list[float]:
        request = {"op": "ones", "id": self.id, "start": start, "count": count}
        samples: list[float] = self.server.request(request)["samples"]
        return samples

    def close(self) -> None:
        self.server.request({"op": "close", "id": self.id})


_server: Server | None = None
_why_not = "not started"


def start(create: bool) -> dict[str, Any]:
    """Start the server for this run; its versions, or ``{"error": why}``."""
    global _server, _why_not
    try:
        _server = Server(ensure_venv(create))
    except Exception as exc:
        _why_not = str(exc) if isinstance(exc, Unavailable) else error_text(exc)
        return {"error": _why_not}
    return _server.versions


def skip(reason: str) -> None:
    """Leave PyStream out of this run (its rows say ``reason``)."""
    global _why_not
    _why_not = reason


def stop() -> None:
    """Stop the server, if one runs."""
    global _server
    if _server is not None:
        _server.close()
        _server = None


def pystream(mode: str) -> Maker:
    """(d) PyStream 0.2.0 in ``mode``."""

    def make(plan: Plan) -> Timed:
        if _server is None:
            raise Unavailable(_why_not)
        return Remote(_server, plan, mode)

    return make
