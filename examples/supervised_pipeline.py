"""Supervision under load: a flaky stage restarted, a stage hot-swapped, nothing lost.

Four stages process ``--items`` records while they flow:

- ``Validate`` refuses malformed records (``on_error="skip"``: the record fails, the
  stage goes on);
- ``Enrich`` fails at random, as if its connection dropped (``on_error="restart"``:
  the record fails, then a fresh ``Enricher`` instance on a new actor takes over,
  after a back-off; the records behind it wait and are not lost);
- ``Score`` is restarted with ``restart_stage`` and then replaced by a new model
  version with ``replace_stage`` from a controller thread, while records flow;
- ``Sink`` stamps the output.

Every failure is reported three ways: the record's future raises ``StageError``, an
``on_error`` callback counts it, and a ``dead_letters()`` reader collects it. At the end
the script checks and prints that no record was lost, duplicated or reordered, that
the failed records are exactly the ones the stages failed on, and the restart counts
from ``status()``.

Run: ``python examples/supervised_pipeline.py [--items 2000] [--failure-rate 0.01]``.
No third-party package is needed.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import random
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import pystream_actors as ps

Record = dict[str, Any]


# -- the stages -----------------------------------------------------------------------------


def is_malformed(record_id: int) -> bool:
    """One record in 200 is malformed."""
    return record_id % 200 == 199


def fails_in_enrich(record_id: int, rate: float) -> bool:
    """Whether the flaky stage fails on this record: random, but the same on every run."""
    return random.Random(record_id).random() < rate


def validate(record: Record) -> Record:
    """Refuse malformed records (they fail; the stage keeps going)."""
    if record["payload"] is None:
        raise ValueError(f"record {record['id']} has no payload")
    return record


class Enricher(ps.Stage):
    """Adds data from a "remote service" whose connection drops now and then.

    Given as a class, so every restart gets a fresh instance: ``generation`` shows
    which instance enriched each record.
    """

    generations = itertools.count(1)

    def __init__(self, failure_rate: float) -> None:
        self.failure_rate = failure_rate
        self.generation = next(Enricher.generations)
        self.connected = False

    def setup(self) -> None:
        """Connect, on the stage's own thread."""
        self.connected = True

    def __call__(self, record: Record) -> Record:
        """Enrich the record, or fail as a dropped connection would."""
        if not self.connected:
            raise RuntimeError("used before setup()")
        if fails_in_enrich(record["id"], self.failure_rate):
            self.connected = False
            raise ConnectionError(f"connection lost while enriching record {record['id']}")
        record["enriched_by"] = self.generation
        return record

    def cleanup(self) -> None:
        """Disconnect."""
        self.connected = False


def score_v1(record: Record) -> Record:
    """The model in production when the pipeline starts."""
    record["score"] = record["payload"] * 2
    record["model"] = "v1"
    return record


class ScoreV2(ps.Stage):
    """The new model version, swapped in at runtime."""

    def __call__(self, record: Record) -> Record:
        """Same contract, better model."""
        record["score"] = record["payload"] * 2 + 1
        record["model"] = "v2"
        return record

    def cleanup(self) -> None:
        """Nothing to release."""


def sink(record: Record) -> Record:
    """The last stage: mark the record done."""
    record["done"] = True
    return record


def build_pipeline(failure_rate: float) -> ps.Pipeline:
    """The four stages with their failure policies."""
    pipeline = ps.Pipeline(name="supervised")
    pipeline.add(validate, "Validate")  # on_error="skip" is the default
    pipeline.add(
        factory=lambda: Enricher(failure_rate),
        name="Enrich",
        on_error="restart",
        restart_backoff=(0.001, 0.02),  # 1 ms, doubling up to 20 ms
        max_restarts=500,  # more than this many restarts ...
        restart_window=10.0,  # ... within 10 s would stop the pipeline
    )
    pipeline.add(score_v1, "Score")
    pipeline.add(sink, "Sink")
    return pipeline


# -- running it ---------------------------------------------------------------------------------


def controller(
    handle: ps.PipelineHandle, restart_at: threading.Event, swap_at: threading.Event
) -> None:
    """Runtime control from another thread, while records flow."""
    restart_at.wait()
    handle.restart_stage("Score")
    print(f"  controller: restarted Score  -> {handle.status()['Score']}")
    swap_at.wait()
    handle.replace_stage("Score", ScoreV2)
    print(f"  controller: replaced Score with ScoreV2 -> {handle.status()['Score']}")


def collect_dead_letters(letters: Any, into: list[ps.StageError]) -> None:
    """Read the dead-letter stream until the pipeline stops."""
    into.extend(letters)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options; ``--items`` keeps test runs short."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--items", type=int, default=2000, help="records (default 2000)")
    parser.add_argument(
        "--failure-rate", type=float, default=0.01, help="Enrich failures (default 0.01)"
    )
    args = parser.parse_args(argv)
    if args.items < 3:
        parser.error("--items must be at least 3")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the records through, with failures and runtime control; check nothing was lost."""
    args = parse_args(argv)
    pipeline = build_pipeline(args.failure_rate)
    callback_counts: collections.Counter[str] = collections.Counter()
    pipeline.handle.on_error(lambda error: callback_counts.update([error.stage]))

    dead_letters: list[ps.StageError] = []
    restart_at, swap_at = threading.Event(), threading.Event()
    print(f"{args.items} records, Enrich failure rate {args.failure_rate:.1%}")
    with pipeline.parallelize(capacity=32):
        handle = pipeline.handle
        reader = threading.Thread(
            target=collect_dead_letters, args=(handle.dead_letters(timeout=None), dead_letters)
        )
        reader.start()
        control = threading.Thread(target=controller, args=(handle, restart_at, swap_at))
        control.start()

        futures: list[Future[Any]] = []
        for record_id in range(args.items):
            payload = None if is_malformed(record_id) else record_id
            futures.append(handle.submit({"id": record_id, "payload": payload}, timeout=30))
            if record_id == args.items // 3:
                restart_at.set()
            elif record_id == 2 * args.items // 3:
                swap_at.set()

        outputs: list[Record] = []
        failed: list[ps.StageError] = []
        other: list[BaseException] = []
        for future in futures:
            error = future.exception(timeout=30)
            if error is None:
                outputs.append(future.result())
            elif isinstance(error, ps.StageError):
                failed.append(error)
            else:
                other.append(error)
        control.join()
        status = handle.status()
        stats = pipeline.statistics()
    reader.join()  # the stream ends when the pipeline stops

    return report(args, outputs, failed, other, dead_letters, callback_counts, status, stats)


def report(
    args: argparse.Namespace,
    outputs: list[Record],
    failed: list[ps.StageError],
    other: list[BaseException],
    dead_letters: list[ps.StageError],
    callback_counts: collections.Counter[str],
    status: dict[str, Any],
    stats: ps.PipelineStatistics,
) -> int:
    """Print the checks; 0 if every one of them holds."""
    ids = [record["id"] for record in outputs]
    failed_ids = sorted(error.item_index for error in failed)
    expected_failures = sorted(
        i for i in range(args.items) if is_malformed(i) or fails_in_enrich(i, args.failure_rate)
    )
    models = [record["model"] for record in outputs]
    first_v2 = models.index("v2") if "v2" in models else len(models)
    checks = {
        "every record came back (result or StageError)": len(outputs) + len(failed) == args.items
        and not other,
        "no record duplicated": len(set(ids)) == len(ids),
        "outputs in input order": ids == sorted(ids),
        "failed exactly the records the stages failed on": failed_ids == expected_failures,
        "dead letters = failures": sorted(e.item_index for e in dead_letters) == failed_ids,
        "on_error callbacks = failures": sum(callback_counts.values()) == len(failed),
        "v1 before the swap, v2 after it": "v1" not in models[first_v2:],
    }
    print(f"\nresults: {len(outputs)} ok, {len(failed)} failed, {len(other)} other outcomes")
    print(f"failures by stage (on_error callback): {dict(sorted(callback_counts.items()))}")
    generations = sorted({record["enriched_by"] for record in outputs})
    print(f"Enrich instances that produced output: {len(generations)}")
    print(f"scored by v1: {models.count('v1')}, by v2: {models.count('v2')}")
    for name, stage in status.items():
        print(f"  status {name:<9} state={stage.state:<8} restarts={stage.restarts}")
    print(
        f"statistics: accepted {stats.accepted}, completed {stats.completed}, "
        f"failed {stats.failed}, dropped {stats.dropped}"
    )
    for check, held in checks.items():
        print(f"  [{'ok' if held else 'FAILED'}] {check}")
    if all(checks.values()):
        print(
            f"nothing lost: {args.items} submitted = {len(outputs)} ok + {len(failed)} failed; "
            "no duplicates, order kept"
        )
        return 0
    print("SOMETHING WAS LOST OR REORDERED", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
