"""The suite's workloads, declared as data: stages, payload, variants, and each row's targets.

A ``Comparison`` names its stages (looked up in ``stage_sets``), how many items, which
variants run it and which row the ratio column compares with; a ``Variant`` says how to
build it, what it buffers between stages, and the targets that row must meet against
other rows of the same run. Adding a workload or a target is adding data here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pystream_remote import pystream
from report import Section
from runners import Maker, loop_chain, ours, pykka_chain, thread_chain


@dataclass(frozen=True)
class Sizes:
    """How much work each workload does."""

    rounds: int
    overhead: int
    latency: int
    sleep: int
    opencv: int
    io_workers: int
    cv_workers: int
    cpu_workers: int
    overload_seconds: float
    sync_seconds: float


FULL = Sizes(5, 5000, 3000, 250, 120, 200, 100, 60, 3.0, 10.0)
QUICK = Sizes(3, 1000, 300, 100, 40, 80, 40, 16, 1.5, 3.0)


@dataclass(frozen=True)
class Target:
    """This row's ``metric`` against the row labelled ``baseline``: at most / at least ``ratio``."""

    metric: Literal["us/hop", "items/s", "p50", "p99"]
    baseline: str
    ratio: float
    at_least: bool = False


@dataclass(frozen=True)
class Variant:
    """One row: how to build it, what it buffers between stages, its targets."""

    label: str
    make: Maker
    buffer: str
    targets: tuple[Target, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Comparison:
    """Variants running the same stages on the same items, taking turns."""

    key: str
    title: str
    measure: Literal["throughput", "latency"]
    stages: tuple[tuple[str, str], ...]
    size: Callable[[Sizes], int]
    variants: tuple[Variant, ...]
    reference: str
    payload: str = "int"
    per_hop: bool = False
    warmup: int = 20


@dataclass(frozen=True)
class Custom:
    """A workload with its own measuring code (it builds its section itself)."""

    key: str
    run: Callable[[Sizes], Section]


def chain(stage: str, length: int = 4) -> tuple[tuple[str, str], ...]:
    """``length`` stages named S1..Sn, all running ``stage``."""
    return tuple((f"S{i}", stage) for i in range(1, length + 1))


LOOP = "(a) for-loop"
Q4 = "(b) thread chain, Queue(4)"
Q64 = "(b) thread chain, Queue(64)"
HANDOFFS_7 = "(b) thread chain, 6 no-op stages"
PYKKA = "(c) raw pykka chain"
PYSTREAM = "(d) PyStream 0.2.0, parallel"
PYSTREAM_SERIAL = "(d) PyStream 0.2.0, serial"
OURS = "ours, parallel"
CALLER = "none: the caller's thread"
PER_LINK = "Queue({}) per link"
UNBOUNDED = "unbounded mailboxes"
PYSTREAM_BUFFER = "Queue(1) per link, lossy end"
PER_STAGE = "capacity {}: {} per stage"

CHAIN_VARIANTS = (
    Variant(Q4, thread_chain(4), PER_LINK.format(4)),
    Variant(PYKKA, pykka_chain(), UNBOUNDED),
    Variant(PYSTREAM, pystream("parallel"), PYSTREAM_BUFFER),
    Variant(OURS, ours(), PER_STAGE.format(16, 4), (Target("items/s", Q4, 0.95, at_least=True),)),
)

OVERHEAD = Comparison(
    "1",
    "per-item overhead: 4 no-op stages, {items} items",
    "throughput",
    chain("noop"),
    lambda sizes: sizes.overhead,
    (
        Variant(LOOP, loop_chain(), CALLER),
        Variant(Q4, thread_chain(4), PER_LINK.format(4)),
        Variant(Q64, thread_chain(64), PER_LINK.format(64)),
        Variant(PYKKA, pykka_chain(), UNBOUNDED),
        Variant(PYSTREAM, pystream("parallel"), PYSTREAM_BUFFER),
        Variant(
            "ours, parallel, tell + results()",
            ours(feed="tell"),
            PER_STAGE.format(16, 4),
            (Target("us/hop", Q4, 1.0),),
        ),
        Variant(
            "ours, parallel, capacity=256, tell + results()",
            ours(capacity=256, feed="tell"),
            PER_STAGE.format(256, 64),
            (Target("us/hop", PYKKA, 1.5),),
        ),
        Variant(
            "ours, parallel, capacity=256, submit + futures",
            ours(capacity=256),
            PER_STAGE.format(256, 64) + ", a future per item",
        ),
    ),
    reference=Q4,
    per_hop=True,
    warmup=500,
)

LATENCY = Comparison(
    "2",
    "one-at-a-time latency: 4 no-op stages, {items} samples each",
    "latency",
    chain("noop"),
    lambda sizes: sizes.latency,
    (
        Variant(LOOP, loop_chain(), CALLER),
        Variant(Q4, thread_chain(4), PER_LINK.format(4)),
        Variant(
            HANDOFFS_7,
            thread_chain(4, length=6),
            PER_LINK.format(4),
            note="diagnostic: 7 thread hand-offs, as many as ours serial",
        ),
        Variant(PYKKA, pykka_chain(), UNBOUNDED),
        Variant(PYSTREAM_SERIAL, pystream("serial"), CALLER, note="stages in the caller's thread"),
        Variant(PYSTREAM, pystream("parallel"), PYSTREAM_BUFFER),
        Variant(
            "ours, parallel: handle.ask()",
            ours(),
            PER_STAGE.format(16, 4),
            (Target("p50", PYSTREAM, 1.0), Target("p99", PYSTREAM, 1.2)),
        ),
        Variant(
            "ours, serial: handle.ask()",
            ours("serial"),
            "1 item inside at a time",
            (Target("p50", HANDOFFS_7, 1.2),),
        ),
    ),
    reference=Q4,
)

SLEEP = Comparison(
    "3",
    "4 x 2 ms sleeping stages, {items} items (ideal 500 items/s)",
    "throughput",
    chain("sleep_2ms"),
    lambda sizes: sizes.sleep,
    CHAIN_VARIANTS,
    reference=Q4,
)

OPENCV = Comparison(
    "4",
    "4 OpenCV stages (blur, Lab, bilateral, Canny) on 480x720, {items} items",
    "throughput",
    (("S1", "cv_blur"), ("S2", "cv_color"), ("S3", "cv_smooth"), ("S4", "cv_edges")),
    lambda sizes: sizes.opencv,
    CHAIN_VARIANTS,
    reference=Q4,
    payload="frame",
)


def scaled(
    key: str,
    title: str,
    stages: tuple[tuple[str, str], ...],
    size: Callable[[Sizes], int],
    payload: str,
    scaled_label: str,
    options: dict[str, Any],
    at_least: float,
) -> Comparison:
    """One stage scaled up (``options``) against the same pipeline without it."""
    name = stages[len(stages) // 2][0]
    base_label = "ours, one worker"
    buffer = "default capacity: 4 per stage"
    return Comparison(
        key,
        title,
        "throughput",
        stages,
        size,
        (
            Variant(base_label, ours(), buffer),
            Variant(
                scaled_label,
                ours(options={name: options}),
                buffer,
                (Target("items/s", base_label, at_least, at_least=True),),
            ),
        ),
        reference=base_label,
        payload=payload,
        warmup=4,
    )


IO_WORKERS = scaled(
    "5",
    "1 ms -> 8 ms sleep -> 1 ms stages, {items} items (ideal 125 -> 500 items/s)",
    (("Before", "sleep_1ms"), ("Wait", "sleep_8ms"), ("After", "sleep_1ms")),
    lambda sizes: sizes.io_workers,
    "none",
    "ours, workers=4 on the 8 ms stage",
    {"workers": 4, "ordered": True},
    3.5,
)
CV_WORKERS = scaled(
    "6",
    "no-op -> 8 ms OpenCV ({calibration}) -> no-op, {items} items",
    (("Before", "noop"), ("Blur", "cv_8ms"), ("After", "noop")),
    lambda sizes: sizes.cv_workers,
    "frame",
    "ours, workers=2 on the OpenCV stage",
    {"workers": 2, "ordered": True},
    1.6,
)
CPU_WORKERS = scaled(
    "7",
    "pure-Python 20 ms CPU stage ({calibration}), {items} items",
    (("Spin", "spin_20ms"),),
    lambda sizes: sizes.cpu_workers,
    "spin",
    'ours, executor="process", workers=2',
    {"workers": 2, "executor": "process"},
    1.7,
)


def workloads() -> list[Comparison | Custom]:
    """Every workload, in the order of the table."""
    from graph_rows import graphs
    from overload_row import overload
    from ray_rows import ray_rows
    from sync_rows import sync

    return [
        OVERHEAD,
        LATENCY,
        SLEEP,
        OPENCV,
        IO_WORKERS,
        CV_WORKERS,
        CPU_WORKERS,
        Custom("8", overload),
        Custom("9", graphs),
        Custom("10", sync),
        Custom("11", ray_rows),
    ]
