"""PyStream 0.2.0's side of the benchmark suite: a server that times PyStream chains.

Runs inside ``.venv-pystream`` (PyStream 0.2.0 imports only with numpy<2 beside the
pandas it pins, so it cannot share the project's virtualenv). ``pystream_remote.py``
starts it once per suite run and sends it one JSON line per request on stdin; every
answer is one JSON line on stdout. The timing is ``harness.Local``, the same code that
times every other variant, so PyStream is measured like the others:

- a batch ends when the last item's output has been delivered to the caller by
  ``get_results()``. In parallel mode PyStream keeps only the newest output when the
  caller is slow to read it (a lossy last queue), so ``delivered`` may be below the
  batch size; outputs are recognised by the index every payload carries;
- a one-at-a-time round trip is ``forward(item)`` then ``get_results()`` (blocking in
  parallel mode);
- ``close`` returns only after ``Pipeline.cleanup()`` (about 2 s in parallel mode), so no
  cleanup runs in the background of the next workload.

Requests: ``{"op": "build", "stages": [...], "payload": kind, "mode": m}`` -> ``{"id": n}``;
``{"op": "batch", "id": n, "count": c}`` -> ``{"seconds", "in_order", "delivered"}``;
``{"op": "ones", "id": n, "start": s, "count": c}`` -> ``{"samples": [...]}``;
``{"op": "close", "id": n}``; ``{"op": "versions"}``. A failure answers ``{"error": text}``,
a missing module ``{"unavailable": text}``.

    .venv-pystream/bin/python benchmarks/pystream_workloads.py   # then type requests
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, TextIO

import stage_sets
from harness import RESULT_TIMEOUT, Local, error_text


class PyStreamChain:
    """A PyStream pipeline of the named stages, in serial or parallel mode."""

    def __init__(self, pystream: Any, stages: Sequence[str], mode: str) -> None:
        self.pipeline = pystream.Pipeline()
        for index, name in enumerate(stages, start=1):
            self.pipeline.add(stage_sets.stage(name), f"S{index}")
        if mode == "serial":
            self.pipeline.serialize()
        else:
            self.pipeline.parallelize(
                block_input=True,
                input_timeout=RESULT_TIMEOUT,
                block_output=True,
                output_timeout=RESULT_TIMEOUT,
            )

    def batch(self, payloads: Sequence[Any]) -> tuple[float, list[Any]]:
        forward, last = self.pipeline.forward, stage_sets.key(payloads[-1])
        refused: list[Any] = []

        def feed() -> None:
            refused.extend(p for p in payloads if not forward(p))

        feeder = threading.Thread(target=feed, name="pystream-feeder", daemon=True)
        outputs: list[Any] = []
        started = time.perf_counter()
        feeder.start()
        while not outputs or stage_sets.key(outputs[-1]) != last:
            outputs.append(self._result())
        wall = time.perf_counter() - started
        feeder.join()
        if refused:
            raise RuntimeError(f"PyStream refused {len(refused)} items")
        return wall, outputs

    def one(self, payload: Any) -> Any:
        self.pipeline.forward(payload)
        return self._result()

    def _result(self) -> Any:
        out = self.pipeline.get_results()
        if out is None:
            raise RuntimeError(f"no output from PyStream within {RESULT_TIMEOUT:.0f} s")
        return out

    def close(self) -> None:
        self.pipeline.cleanup()


class Server:
    """The chains built so far, by id, and the requests that use them."""

    def __init__(self, pystream: Any) -> None:
        self.pystream = pystream
        self.chains: dict[int, Local] = {}

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op == "versions":
            import numpy

            return {
                "python": platform.python_version(),
                "pystream": getattr(self.pystream, "__version__", "0.2.0"),
                "numpy": numpy.__version__,
            }
        if op == "build":
            chain = PyStreamChain(self.pystream, request["stages"], request["mode"])
            number = len(self.chains) + 1
            payload = stage_sets.PAYLOADS[request["payload"]]
            self.chains[number] = Local(chain, payload, stage_sets.key)
            return {"id": number}
        timed = self.chains[request["id"]]
        if op == "batch":
            return dataclasses.asdict(timed.time_batch(request["count"]))
        if op == "ones":
            return {"samples": timed.time_ones(request["start"], request["count"])}
        if op == "close":
            self.chains.pop(request["id"]).close()
            return {}
        raise ValueError(f"unknown op {op!r}")


def serve(requests: TextIO, answers: TextIO) -> None:
    """Answer each request line with one JSON line until the input ends."""
    try:
        import pystream  # type: ignore[import-not-found]
    except Exception as exc:
        answers.write(json.dumps({"error": f"cannot import pystream: {error_text(exc)}"}) + "\n")
        answers.flush()
        return
    server = Server(pystream)
    for line in requests:
        try:
            answer = server.handle(json.loads(line))
        except ImportError as exc:  # e.g. no OpenCV in that virtualenv: n/a, not a failure
            answer = {"unavailable": error_text(exc)}
        except Exception as exc:
            answer = {"error": error_text(exc)}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


if __name__ == "__main__":
    protocol = sys.stdout
    sys.stdout = sys.stderr  # anything PyStream prints must not mix with the answers
    serve(sys.stdin, protocol)
