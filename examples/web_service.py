"""A threaded HTTP service whose request handlers share one running pipeline.

The service starts a pipeline named ``"scoring"`` (parse -> normalize -> score) once.
Each request handler, running on its own thread of the standard library's
``ThreadingHTTPServer``, finds it with ``ps.get_handle("scoring")`` and calls
``handle.ask(...)``: many requests are in the pipeline at once, each gets its own
answer. Overload and failures become HTTP answers:

- ``POST /score`` with ``{"values": [numbers]}`` -> 200 ``{"score": ...}``;
  a stage failing on bad input -> 422; a full pipeline (``on_full="reject"``) -> 503.
- ``GET /stats`` -> the pipeline's statistics as JSON (``snapshot_to_json``).
- ``GET /health`` -> each stage's status.

By default (``--self-test``) the script serves on 127.0.0.1 on a free port, sends
``--requests`` requests to itself from a few client threads with ``urllib``, prints
what came back and exits. ``--serve`` keeps serving until Ctrl-C (or ``--duration``)::

    python examples/web_service.py                       # self-test, a few seconds
    python examples/web_service.py --serve --port 8080   # then, in another terminal:
    curl -s -X POST localhost:8080/score -d '{"values": [1, 2, 3]}'

Only the standard library and pystream_actors are needed.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pystream_actors as ps
from pystream_actors.exporters import snapshot_to_dict, snapshot_to_json

PIPELINE_NAME = "scoring"
REQUEST_TIMEOUT = 5.0
"""Seconds a request handler waits for its answer before giving up with 504."""


# -- the pipeline ------------------------------------------------------------------------


def parse(body: dict[str, Any]) -> list[float]:
    """The request's numbers; a missing or non-numeric value fails the item."""
    return [float(value) for value in body["values"]]


def normalize(values: list[float]) -> list[float]:
    """Scale to 0..1; a constant input cannot be scaled and fails the item."""
    low, high = min(values), max(values)
    if high == low:
        raise ValueError("all values are equal: nothing to score")
    return [(value - low) / (high - low) for value in values]


class Scorer(ps.Stage):
    """The "model": a weighted mean, loaded in ``setup()`` on the stage's own thread."""

    def __init__(self) -> None:
        self.weights: list[float] = []
        self._pause = threading.Event()  # never set: a GIL-free stand-in for inference time

    def setup(self) -> None:
        """Load the weights."""
        self.weights = [1.0, 2.0, 3.0, 4.0]

    def __call__(self, values: list[float]) -> float:
        """A weighted mean of the normalized values (weights repeat as needed)."""
        self._pause.wait(0.002)
        weights = [self.weights[i % len(self.weights)] for i in range(len(values))]
        return round(sum(w * v for w, v in zip(weights, values)) / sum(weights), 4)

    def cleanup(self) -> None:
        """Unload the weights."""
        self.weights = []


def start_pipeline(capacity: int) -> ps.Pipeline:
    """Build and start the shared pipeline; request handlers find it by name."""
    pipeline = ps.Pipeline(name=PIPELINE_NAME)
    pipeline.add(parse, "Parse")
    pipeline.add(normalize, "Normalize")
    pipeline.add(Scorer, "Score", workers=2)  # the slowest stage gets two workers
    return pipeline.parallelize(capacity=capacity, on_full="reject")


# -- the HTTP side -------------------------------------------------------------------------


class ScoringHandler(BaseHTTPRequestHandler):
    """One request, on its own thread: uses the shared pipeline through its handle."""

    server_version = "pystream-actors-example/1.0"

    def do_POST(self) -> None:
        """``/score``: run the request body through the pipeline."""
        if self.path != "/score":
            self._reply(404, {"error": f"no such endpoint {self.path}"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
        except (ValueError, json.JSONDecodeError):
            self._reply(400, {"error": "the body must be JSON"})
            return
        handle = ps.get_handle(PIPELINE_NAME)
        try:
            score = handle.ask(body, timeout=REQUEST_TIMEOUT)
        except ps.PipelineFull:
            self._reply(503, {"error": "busy, retry later"}, {"Retry-After": "1"})
        except ps.StageError as error:
            self._reply(422, {"error": f"{error.stage}: {error.__cause__}"})
        except (ps.PipelineTerminated, ps.PipelineUndefined, ps.PipelineNotFound):
            self._reply(503, {"error": "the service is shutting down"})
        except TimeoutError:
            self._reply(504, {"error": "no answer in time"})
        else:
            self._reply(200, {"score": score})

    def do_GET(self) -> None:
        """``/stats`` and ``/health``."""
        try:
            handle = ps.get_handle(PIPELINE_NAME)
        except ps.PipelineNotFound:
            self._reply(503, {"error": "the pipeline is not running"})
            return
        if self.path == "/stats":
            self._send(200, snapshot_to_json(handle.statistics()).encode(), {})
        elif self.path == "/health":
            status = {name: s.state for name, s in handle.status().items()}
            healthy = all(state == "running" for state in status.values())
            self._reply(200 if healthy else 503, {"state": handle.state, "stages": status})
        else:
            self._reply(404, {"error": f"no such endpoint {self.path}"})

    def _reply(
        self, code: int, answer: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        self._send(code, json.dumps(answer).encode(), headers or {})

    def _send(self, code: int, payload: bytes, headers: dict[str, str]) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: the self-test sends many requests."""


# -- the self-test client ---------------------------------------------------------------------


def request(url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    """One HTTP request with urllib: (status, decoded JSON answer)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT + 5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def make_body(index: int) -> dict[str, Any]:
    """Mostly good requests; every 10th has equal values and every 25th a bad number."""
    if index % 25 == 24:
        return {"values": [1, "two", 3]}
    if index % 10 == 9:
        return {"values": [5, 5, 5]}
    return {"values": [index % 7, index % 5 + 1, index % 3 + 2, 10]}


def self_test(base_url: str, requests: int, clients: int) -> bool:
    """Send ``requests`` requests from ``clients`` threads; True if every one was answered."""
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients, thread_name_prefix="client") as pool:
        answers = list(
            pool.map(lambda i: request(f"{base_url}/score", make_body(i)), range(requests))
        )
    elapsed = time.perf_counter() - started
    codes = collections.Counter(code for code, _ in answers)
    print(f"{requests} requests from {clients} client threads in {elapsed:.2f} s")
    print(f"answers by HTTP status: {dict(sorted(codes.items()))}")
    for index in (0, 1, 9, 24):
        if index < requests:
            print(f"  request {index:>2} {make_body(index)} -> {answers[index]}")
    status, stats = request(f"{base_url}/stats")
    print(
        f"GET /stats -> {status}: accepted {stats['accepted']}, completed "
        f"{stats['completed']}, failed {stats['failed']}, latency p99 "
        f"{stats['latency']['p99'] * 1000:.1f} ms, bottleneck {stats['bottleneck']}"
    )
    print(f"GET /health -> {request(f'{base_url}/health')}")
    return sum(codes.values()) == requests and set(codes) <= {200, 422, 503}


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--self-test", action="store_true", help="the default: test and exit")
    mode.add_argument("--serve", action="store_true", help="serve until Ctrl-C")
    parser.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    parser.add_argument("--requests", type=int, default=200, help="self-test requests (200)")
    parser.add_argument("--clients", type=int, default=8, help="self-test client threads (8)")
    parser.add_argument("--capacity", type=int, default=32, help="items inside the pipeline")
    parser.add_argument("--duration", type=float, help="with --serve: stop after this many s")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Start the pipeline and the server; self-test or serve; stop both."""
    args = parse_args(argv)
    pipeline = start_pipeline(args.capacity)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), ScoringHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="http-server", daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{server.server_port}"
    ok = True
    try:
        if args.serve:
            print(f"serving on {base_url} (POST /score, GET /stats, GET /health); Ctrl-C stops")
            threading.Event().wait(args.duration)
        else:
            print(f"self-test against {base_url}")
            ok = self_test(base_url, args.requests, args.clients)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        pipeline.cleanup()  # accepted requests finish first; get_handle stops finding it
    final = snapshot_to_dict(pipeline.statistics())
    print(
        f"stopped: {final['completed']} scored, {final['failed']} failed, "
        f"{pipeline.handle.rejected} refused for lack of room"
    )
    if not args.serve:
        print("self-test passed" if ok else "self-test FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
