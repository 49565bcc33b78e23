"""The JSON and Prometheus exporters and the ``pystream-actors`` command line.

Pipelines here are real (actors, threads); the command line runs in-process where its
output is enough and in a subprocess (a pseudo-terminal for the live view) where the
terminal, the interpreter or a signal is what is being tested.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import runpy
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import pystream_actors as ps
from pystream_actors import cli
from pystream_actors.cli import _scripts as cli_scripts
from pystream_actors.exporters import (
    PrometheusCollector,
    serve_metrics,
    snapshot_to_dict,
    snapshot_to_json,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "slow_third_stage.py"
EXAMPLE_TARGET = f"{EXAMPLE}:build"
_EXAMPLE = runpy.run_path(str(EXAMPLE))
STAGES: list[str] = list(_EXAMPLE["STAGE_MILLISECONDS"])
SLOW_STAGE: str = _EXAMPLE["SLOW_STAGE"]
SUBPROCESS_TIMEOUT = 60.0
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

NESTED_APP = '''
import pystream_actors as ps

def build():
    """Load -> Nested(Inner_A -> Inner_B) -> Save; the inner pipeline is started."""
    inner = ps.Pipeline()
    inner.add(lambda x: x, "Inner_A")
    inner.add(lambda x: x, "Inner_B")
    inner.serialize()
    outer = ps.Pipeline(name="Outer")
    outer.add(lambda x: x, "Load")
    outer.add(inner.as_stage(), "Nested")
    outer.add(lambda x: x, "Save")
    return outer

def not_a_pipeline():
    return 42
'''


class Wait:
    """A stage that waits a fixed time without holding the GIL (never a bare sleep)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._never = threading.Event()

    def __call__(self, data: Any) -> Any:
        self._never.wait(self.seconds)
        return data


def _nested_pipeline() -> tuple[ps.Pipeline, ps.Pipeline]:
    """Fast -> Slow -> Nested(Inner) -> Last, run in parallel; Slow is the bottleneck."""
    inner = ps.Pipeline()
    inner.add(lambda x: x + 1, "Inner")
    inner.serialize()
    outer = ps.Pipeline(name="exporter_test")
    outer.add(lambda x: x, "Fast")
    outer.add(Wait(0.005), "Slow")
    outer.add(inner.as_stage(), "Nested")
    outer.add(lambda x: x, "Last")
    outer.parallelize()
    return outer, inner


def _run_items(pipeline: ps.Pipeline, count: int) -> None:
    futures = [pipeline.handle.submit(i) for i in range(count)]
    for future in futures:
        future.result(timeout=30)


# -- JSON -------------------------------------------------------------------------------


def test_json_snapshot_round_trips_with_stage_names_children_and_bottleneck() -> None:
    """The JSON text parses back to the dict, with every stage, the child and the bottleneck."""
    outer, _ = _nested_pipeline()
    with outer:
        _run_items(outer, 20)
        stats = outer.statistics()
    text = snapshot_to_json(stats, indent=2)
    data = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-JSON {name}"))
    assert data == snapshot_to_dict(stats)
    assert [stage["name"] for stage in data["stages"]] == ["Fast", "Slow", "Nested", "Last"]
    assert data["bottleneck"] == "Slow"
    assert data["completed"] == 20
    nested = data["stages"][2]["child"]
    assert [stage["name"] for stage in nested["stages"]] == ["Inner"]
    assert nested["completed"] == 20
    slow = data["stages"][1]
    assert 0.004 < slow["service_time"]["p50"] < 1.0  # seconds, not milliseconds
    assert set(slow["service_time"]) == {"mean", "p50", "p90", "p99", "max"}


def test_snapshot_to_dict_refuses_what_is_not_a_snapshot() -> None:
    """A stage snapshot (or anything else) is a TypeError, not a half-converted dict."""
    pipeline = ps.Pipeline()
    pipeline.add(lambda x: x, "Only")
    with pipeline.serialize():
        pipeline.handle.ask(1, timeout=10)
        stage = pipeline.statistics().stages[0]
    with pytest.raises(TypeError, match="PipelineStatistics"):
        snapshot_to_dict(stage)  # type: ignore[arg-type]


# -- Prometheus ----------------------------------------------------------------------------


def _samples(
    collector: PrometheusCollector,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in collector.collect()
        for sample in family.samples
    }


def test_prometheus_collector_has_per_stage_samples_with_pipeline_and_stage_labels() -> None:
    """Every stage, the nested one included, gets counters, gauges and durations."""
    pytest.importorskip("prometheus_client")
    outer, _ = _nested_pipeline()
    collector = PrometheusCollector(outer, name="vision")
    with outer:
        _run_items(outer, 12)
        samples = _samples(collector)
    for stage in ("Fast", "Slow", "Nested", "Last"):
        labels = (("pipeline", "vision"), ("stage", stage))
        assert samples[("pystream_stage_processed_total", labels)] == 12
        assert ("pystream_stage_utilization_ratio", labels) in samples
        p99 = (("pipeline", "vision"), ("stage", stage), ("stat", "p99"))
        assert ("pystream_stage_service_time_seconds", p99) in samples
    inner = (("pipeline", "vision/Nested"), ("stage", "Inner"))
    assert samples[("pystream_stage_processed_total", inner)] == 12
    assert samples[("pystream_pipeline_completed_total", (("pipeline", "vision"),))] == 12
    bottleneck = (("pipeline", "vision"), ("stage", "Slow"))
    assert samples[("pystream_pipeline_bottleneck", bottleneck)] == 1


def test_serve_metrics_answers_a_scrape_on_localhost() -> None:
    """The /metrics endpoint listens on 127.0.0.1 only and shows the stages in text format."""
    pytest.importorskip("prometheus_client")
    pipeline = ps.Pipeline(name="scraped")
    pipeline.add(lambda x: x, "Alpha")
    pipeline.add(lambda x: x, "Beta")
    with pipeline.parallelize():
        _run_items(pipeline, 5)
        with serve_metrics(pipeline, port=0) as server:
            assert server.host == "127.0.0.1"
            with urllib.request.urlopen(server.url, timeout=10) as response:
                body = response.read().decode()
    assert 'pystream_stage_processed_total{pipeline="scraped",stage="Alpha"} 5.0' in body
    assert 'pystream_stage_processed_total{pipeline="scraped",stage="Beta"} 5.0' in body


def test_collector_without_prometheus_client_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without prometheus_client the ImportError says which extra to install."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    pipeline = ps.Pipeline()
    pipeline.add(lambda x: x, "Only")
    with pytest.raises(ImportError, match=re.escape("pip install 'pystream-actors[prometheus]'")):
        PrometheusCollector(pipeline)


# -- graph -------------------------------------------------------------------------------------


@pytest.fixture
def nested_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A factory module with a nested pipeline, importable by path and by name."""
    path = tmp_path / "cli_graph_app.py"
    path.write_text(NESTED_APP, encoding="utf-8")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    monkeypatch.delitem(sys.modules, "cli_graph_app", raising=False)
    return path


def test_graph_prints_mermaid_with_a_subgraph_for_the_nested_pipeline(
    nested_app: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mermaid output chains input, the stages (into and out of the subgraph) and output."""
    assert cli.main(["graph", f"{nested_app}:build"]) == 0
    out = capsys.readouterr().out
    lines = {line.strip() for line in out.splitlines()}
    assert out.startswith("flowchart LR")
    assert {'s1["Load"]', 's2_1["Inner_A"]', 's2_2["Inner_B"]', 's3["Save"]'} <= lines
    assert 'subgraph s2 ["Nested (serial)"]' in lines
    edges = ["input --> s1", "s1 --> s2_1", "s2_1 --> s2_2", "s2_2 --> s3", "s3 --> output"]
    assert set(edges) <= lines


def test_graph_prints_dot_from_a_dotted_module_name(
    nested_app: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """DOT output has a cluster for the nested pipeline; the module is found by name."""
    assert cli.main(["graph", "cli_graph_app:build", "--format", "dot"]) == 0
    out = capsys.readouterr().out
    lines = {line.strip() for line in out.splitlines()}
    assert out.startswith('digraph "Outer" {')
    assert {'s1 [label="Load"];', 's2_1 [label="Inner_A"];', 's3 [label="Save"];'} <= lines
    assert {"subgraph cluster_s2 {", 'label="Nested (serial)";'} <= lines
    assert {"input -> s1;", "s1 -> s2_1;", "s2_2 -> s3;", "s3 -> output;"} <= lines


def test_graph_of_the_example_names_its_four_stages(capsys: pytest.CaptureFixture[str]) -> None:
    """The example's stages appear in order, without the pipeline being started."""
    assert cli.main(["graph", EXAMPLE_TARGET]) == 0
    out = capsys.readouterr().out
    positions = [out.index(f'["{name}"]') for name in STAGES]
    assert positions == sorted(positions)


def test_bad_targets_are_reported_without_a_traceback(
    nested_app: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing colon, module, factory or a non-pipeline result: exit 2 and one line."""
    cases = {
        "no_colon": "expected MODULE:FACTORY",
        "no_such_module_xyz:build": "no module named 'no_such_module_xyz'",
        f"{nested_app}:missing": "no callable named 'missing'",
        f"{nested_app}:not_a_pipeline": "returned a int, not a Pipeline",
    }
    for target, message in cases.items():
        assert cli.main(["graph", target]) == 2
        err = capsys.readouterr().err
        assert message in err
        assert "Traceback" not in err


# -- run -------------------------------------------------------------------------------------


def test_run_refuses_a_pipeline_without_an_input_generator(
    nested_app: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``run`` feeds through the pipeline's own input loop, so it needs an input generator."""
    assert cli.main(["run", f"{nested_app}:build", "--duration", "0.2", "--plain"]) == 2
    err = capsys.readouterr().err
    assert "Pipeline(input_generator=...)" in err
    assert "Traceback" not in err


def _final_section(out: str) -> list[str]:
    """The lines of the last table, printed after the pipeline stopped."""
    assert "[final]" in out, out
    return out[out.rindex("[final]") :].splitlines()


def test_run_plain_prints_the_table_and_marks_the_slow_stage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Plain tables list every stage; the third, slow one is marked as the bottleneck."""
    argv = ["run", EXAMPLE_TARGET, "--plain", "--duration", "1", "--rate", "200"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "[live]" in out
    final = _final_section(out)
    rows = {line.split()[0]: line for line in final[2:6]}
    assert list(rows) == STAGES
    assert rows[SLOW_STAGE].endswith(cli.BOTTLENECK_MARK)
    assert [name for name, row in rows.items() if cli.BOTTLENECK_MARK in row] == [SLOW_STAGE]
    assert f"bottleneck: {SLOW_STAGE}" in final[7]
    accepted = int(re.search(r"accepted (\d+)", final[6]).group(1))  # type: ignore[union-attr]
    completed = int(re.search(r"completed (\d+)", final[6]).group(1))  # type: ignore[union-attr]
    assert completed == accepted >= 100  # 200/s for 1 s, drained before the final table


def test_the_bottleneck_is_named_only_once_every_stage_has_settled() -> None:
    """After a stage's first item or two its utilization is noise: no marker until then."""
    outer, _ = _nested_pipeline()
    with outer:
        _run_items(outer, cli.SETTLE_ITEMS)
        stats = outer.statistics()
    assert cli.settled_bottleneck(stats) == "Slow"
    young = dataclasses.replace(stats.stages[3], processed=cli.SETTLE_ITEMS - 1)
    early = dataclasses.replace(stats, stages=(*stats.stages[:3], young))
    assert early.bottleneck == "Slow"
    assert cli.settled_bottleneck(early) is None
    assert not any(row.bottleneck for row in cli.stage_rows(early))
    assert [row.name for row in cli.stage_rows(stats) if row.bottleneck] == ["Slow"]


def _run_in_pty(argv: list[str], timeout: float = SUBPROCESS_TIMEOUT) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal as stdout/stderr; its exit code and output."""
    import pty

    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "140", "LINES": "40"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", errors="replace")


def test_run_in_a_terminal_draws_the_live_rich_table() -> None:
    """On a terminal the live view is a redrawn rich table with the bottleneck row marked."""
    pytest.importorskip("rich")
    argv = [sys.executable, "-m", "pystream_actors", "run", EXAMPLE_TARGET]
    code, raw = _run_in_pty([*argv, "--duration", "2", "--rate", "200", "--refresh", "0.25"])
    assert code == 0, raw
    assert "\x1b[1A" in raw  # the cursor moves up: the table is redrawn in place
    text = ANSI.sub("", raw)
    assert "[live]" in text and "[final]" in text
    assert "┃" in text  # a rich table, not the plain fallback
    for name in STAGES:
        assert name in text
    marked = [line for line in text.splitlines() if cli.RICH_BOTTLENECK_MARK in line]
    assert marked
    assert all(SLOW_STAGE in line for line in marked), marked
    assert cli.BOTTLENECK_MARK not in text


def test_run_without_rich_names_the_extra_and_prints_plain_tables() -> None:
    """With rich unimportable the CLI says ``pip install 'pystream-actors[cli]'`` and goes on."""
    shim = (
        "import sys; sys.modules['rich'] = None\n"
        "from pystream_actors.cli import main\n"
        f"sys.exit(main(['run', {EXAMPLE_TARGET!r}, '--duration', '0.5', '--rate', '100']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", shim],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'pystream-actors[cli]'" in result.stderr
    final = _final_section(result.stdout)
    assert [line.split()[0] for line in final[2:6]] == STAGES


def _read_until(fd: int, marker: str, timeout: float) -> str:
    """Read a pipe until ``marker`` shows up (or fail after ``timeout`` seconds)."""
    seen = ""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{marker!r} never appeared in:\n{seen}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            data = os.read(fd, 65536)
            assert data, f"the process ended before {marker!r}:\n{seen}"
            seen += data.decode()
    return seen


CTRL_C_AS_AT_A_TERMINAL = (
    "import runpy, signal, sys; "
    "signal.signal(signal.SIGINT, signal.default_int_handler); "
    "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
    "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)"
)
"""``python -c`` code that runs the module named next like ``python -m`` does, with Ctrl-C
handled as in a program started at a terminal. A child inherits an ignored (or blocked)
SIGINT, and Python then never raises ``KeyboardInterrupt``: that is the case whenever
this suite runs as a background job of a non-interactive shell (``make pytest &``)."""


@pytest.mark.parametrize(
    ("sent", "code"),
    [(signal.SIGINT, cli.EXIT_INTERRUPTED), (signal.SIGTERM, cli.EXIT_TERMINATED)],
    ids=["ctrl-c", "kill"],
)
def test_a_signal_stops_the_run_cleanly_with_a_final_table(sent: int, code: int) -> None:
    """SIGINT (exit 130) or SIGTERM (exit 143) during an endless run: the pipeline drained,
    the final table printed."""
    argv = [
        *(sys.executable, "-c", CTRL_C_AS_AT_A_TERMINAL, "pystream_actors"),
        *("run", EXAMPLE_TARGET, "--plain"),
    ]
    with subprocess.Popen(
        [*argv, "--refresh", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        try:
            before = _read_until(proc.stdout.fileno(), "[live]", SUBPROCESS_TIMEOUT)
            proc.send_signal(sent)
            rest, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == code, err
    assert "Traceback" not in err
    final = _final_section(before + rest)
    counts = dict(re.findall(r"(accepted|completed|in flight) (\d+)", final[6]))
    assert counts["accepted"] == counts["completed"]
    assert counts["in flight"] == "0"


# -- graphs: junctions in the exporters and the table ------------------------------------------

GRAPH_APP = """
import itertools
import threading

import pystream_actors as ps


class Wait:
    def __init__(self, seconds):
        self.seconds = seconds
        self._never = threading.Event()

    def __call__(self, data):
        self._never.wait(self.seconds)
        return data


def build(input_generator=None):
    \"\"\"Load -> Perceive{fast, slow: Resize -> Inner{x, y}} -> Split{even, odd: Odd}
    -> Record (tap) -> Save; Resize is the slow stage.\"\"\"
    slow = ps.Chain(required=False).add(Wait(0.003), "Resize")
    slow.add(ps.Parallel(x=lambda j: j, y=lambda j: j), "Inner")
    split = ps.Route(
        lambda joined: "even" if joined["fast"] % 2 == 0 else "odd",
        branches={"even": lambda j: j, "odd": ps.Chain().add(lambda j: j, "Odd")},
    )
    pipeline = ps.Pipeline(name="graph_test", input_generator=input_generator)
    pipeline.add(lambda x: x, "Load")
    pipeline.add(ps.Parallel(fast=lambda x: x, slow=slow), "Perceive")
    pipeline.add(split, "Split")
    pipeline.add(ps.Tap(record=lambda j: j), "Record")
    pipeline.add(lambda j: j, "Save")
    return pipeline


def fed():
    return build(itertools.count().__next__)
"""
GRAPH_ROWS = [
    "Load",
    "⑂ Perceive (parallel)",
    "  └ fast",
    "  └ slow/Resize",
    "  └ ⑂ slow/Inner (parallel)",
    "    └ x",
    "    └ y",
    "⑂ Split (route)",
    "  └ even",
    "  └ odd/Odd",
    "⑂ Record (tap)",
    "  └ record",
    "Save",
]


@pytest.fixture
def graph_app(tmp_path: Path) -> Path:
    path = tmp_path / "cli_graph_stats_app.py"
    path.write_text(GRAPH_APP, encoding="utf-8")
    return path


def _graph_run(app: Path, items: int = 10) -> tuple[ps.Pipeline, ps.PipelineStatistics]:
    """The graph app's pipeline after ``items`` items went through it one by one (so the
    tap never drops), stopped."""
    pipeline = cli.load_pipeline(f"{app}:build")
    with pipeline.parallelize():
        for item in range(items):
            pipeline.handle.ask(item, timeout=30)
        stats = pipeline.statistics()
    return pipeline, stats


def test_json_snapshot_of_a_graph_has_junctions_and_the_critical_path(graph_app: Path) -> None:
    """Junctions with their per-branch figures as objects, branch stages with their paths."""
    _, stats = _graph_run(graph_app)
    text = snapshot_to_json(stats)
    data = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-JSON {name}"))
    assert data == snapshot_to_dict(stats)
    junctions = {junction["name"]: junction for junction in data["junctions"]}
    assert [(j["name"], j["kind"]) for j in data["junctions"]] == [
        ("Perceive", "parallel"),
        ("Inner", "parallel"),
        ("Split", "route"),
        ("Record", "tap"),
    ]
    assert junctions["Inner"]["path"] == "Perceive/slow/Inner"
    assert junctions["Perceive"]["arrivals"] == {"fast": 10, "slow": 10}
    assert junctions["Perceive"]["waited_on"]["slow"] > 0.5
    assert junctions["Split"]["per_key"] == {"even": 5, "odd": 5}
    assert set(junctions["Perceive"]["join_wait"]) == {"mean", "p50", "p90", "p99", "max"}
    paths = {stage["name"]: stage["path"] for stage in data["stages"]}
    assert paths["Resize"] == "Perceive/slow/Resize"
    assert paths["x"] == "Perceive/slow/Inner/x/x"
    assert paths["Load"] == "Load"
    assert data["critical_path"][:2] == ["Load", "Resize"]
    assert data["critical_path"][-1] == "Save"


def test_prometheus_collector_exports_junction_samples(graph_app: Path) -> None:
    """Pending per junction; arrivals, drops, routed items and the waited-on share per
    branch; stage label sets stay as they were, the path is an info series."""
    pytest.importorskip("prometheus_client")
    pipeline = cli.load_pipeline(f"{graph_app}:build")
    collector = PrometheusCollector(pipeline, name="g")
    with pipeline.parallelize():
        for item in range(10):
            pipeline.handle.ask(item, timeout=30)
        samples = _samples(collector)

    def at(junction: str, branch: str | None = None) -> tuple[tuple[str, str], ...]:
        labels = {"pipeline": "g", "junction": junction}
        if branch is not None:
            labels["branch"] = branch
        return tuple(sorted(labels.items()))

    assert samples[("pystream_junction_pending", at("Perceive"))] == 0
    assert samples[("pystream_junction_arrivals_total", at("Perceive", "slow"))] == 10
    assert samples[("pystream_junction_arrivals_total", at("Inner", "y"))] == 10
    assert samples[("pystream_junction_dropped_total", at("Record", "record"))] == 0
    assert samples[("pystream_junction_routed_total", at("Split", "odd"))] == 5
    assert samples[("pystream_junction_waited_on_ratio", at("Perceive", "slow"))] > 0.5
    assert ("pystream_junction_waited_on_ratio", at("Split", "odd")) not in samples
    p99 = tuple(sorted({"pipeline": "g", "junction": "Perceive", "stat": "p99"}.items()))
    assert ("pystream_junction_join_wait_seconds", p99) in samples
    branch_stage = (("pipeline", "g"), ("stage", "Resize"))
    assert samples[("pystream_stage_processed_total", branch_stage)] == 10
    info = (("path", "Perceive/slow/Resize"), ("pipeline", "g"), ("stage", "Resize"))
    assert samples[("pystream_stage_path_info", info)] == 1


def test_table_rows_put_junctions_above_their_indented_branch_stages(graph_app: Path) -> None:
    """Junction rows say what they wait on, per-key counts and drops; the slow branch
    stage is the bottleneck although a route branch got fewer than SETTLE_ITEMS."""
    pipeline, stats = _graph_run(graph_app)
    order = cli.graph_order(pipeline)
    assert [row.name for row in cli.stage_rows(stats, order=order)] == GRAPH_ROWS
    assert [row.name for row in cli.stage_rows(stats)] == GRAPH_ROWS  # placed by paths alone
    assert stats.stage("Odd").processed < cli.SETTLE_ITEMS
    assert cli.settled_bottleneck(stats) == "Resize"
    rows = {row.name.strip(" └"): row for row in cli.stage_rows(stats, order=order)}
    assert rows["⑂ Perceive (parallel)"].note.startswith("waits on slow ")
    assert rows["⑂ Split (route)"].note == "per key: even 5, odd 5"
    assert rows["⑂ Record (tap)"].note == "dropped record 0"
    text = cli.plain_table(stats, "title", "totals", order)
    lines = text.splitlines()
    header = lines[1]
    perceive = next(line for line in lines if "⑂ Perceive (parallel)" in line)
    assert re.fullmatch(r"⑂ Perceive \(parallel\) +0 +waits on slow \d+%", perceive), perceive
    assert perceive.index("0 ") == header.index("queue") + len("queue") - 1  # under "queue"
    assert perceive.index("waits") == header.index("util %") + len("util %") + 2
    resize = next(line for line in lines if "slow/Resize" in line)
    assert resize.startswith("  └ slow/Resize ") and resize.endswith(cli.BOTTLENECK_MARK)
    assert [line for line in lines if cli.BOTTLENECK_MARK in line] == [resize]


def test_a_factory_routes_grown_branches_sit_under_it_in_graph_order() -> None:
    """Branches a factory made while running are listed under their route, which keeps
    its place in the chain (the snapshot lists grown stages last)."""
    pipeline = ps.Pipeline()
    pipeline.add(lambda x: x, "Load")
    per_key = ps.Route(lambda x: "ab"[x % 2], factory=lambda k: ps.Chain().add(Wait(0), f"T_{k}"))
    pipeline.add(per_key, "PerKey")
    pipeline.add(lambda x: x, "Save")
    with pipeline.parallelize():
        for item in range(4):
            pipeline.handle.ask(item, timeout=30)
        stats = pipeline.statistics()
    rows = [row.name for row in cli.stage_rows(stats, order=cli.graph_order(pipeline))]
    assert rows == ["Load", "⑂ PerKey (route)", "  └ a/T_a", "  └ b/T_b", "Save"]


def test_rich_view_draws_the_junction_rows(graph_app: Path) -> None:
    """The rich table has the same rows, junctions included, and the critical path."""
    pytest.importorskip("rich")
    from rich.console import Console

    pipeline, stats = _graph_run(graph_app)
    console = Console(record=True, width=160, color_system=None)
    console.print(cli.rich_view(stats, "title", "totals", cli.graph_order(pipeline)))
    text = console.export_text()
    for name in GRAPH_ROWS:
        assert f"│ {name.ljust(len(max(GRAPH_ROWS, key=len)))} │" in text, name
    assert "waits on slow" in text and "per key: even 5, odd 5" in text


def test_run_plain_shows_the_graph_and_its_critical_path(
    graph_app: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``run`` on a graph: junction rows, indented branch stages, a critical path line."""
    argv = ["run", f"{graph_app}:fed", "--plain", "--duration", "0.5", "--rate", "100"]
    assert cli.main(argv) == 0
    final = _final_section(capsys.readouterr().out)
    width = max(len(name) for name in GRAPH_ROWS)  # the name column, left-aligned
    assert [line[:width].rstrip() for line in final[2:15]] == GRAPH_ROWS
    assert final[15].startswith("accepted ")
    critical = final[17]
    assert critical.startswith("critical path: Load -> Resize -> ")
    assert critical.endswith(" -> Save")
    assert "record" not in critical  # the main path never waits for a tap


# -- entry points, demo, bench -------------------------------------------------------------------


def test_python_m_pystream_actors_help_lists_the_subcommands() -> None:
    """``python -m pystream_actors --help`` works and names every subcommand."""
    result = subprocess.run(
        [sys.executable, "-m", "pystream_actors", "--help"],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: pystream-actors")
    for command in ("demo", "run", "graph", "bench"):
        assert command in result.stdout


def test_demo_and_bench_explain_when_the_source_tree_is_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Installed without the repository, both commands say where the scripts live."""
    monkeypatch.setattr(cli_scripts, "SOURCE_ROOT", tmp_path)
    assert cli.main(["demo"]) == 1
    assert "source tree" in capsys.readouterr().err
    assert cli.main(["bench"]) == 1
    assert "source tree" in capsys.readouterr().err


def test_demo_runs_the_examples_main_with_the_frame_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``demo --frames N`` calls the demo script's ``main(["--frames", "N"])``."""
    (tmp_path / "examples").mkdir()
    script = "def main(argv):\n    print('demo got', argv)\n    return 7\n"
    (tmp_path / "examples" / "demo_pipeline.py").write_text(script, encoding="utf-8")
    monkeypatch.setattr(cli_scripts, "SOURCE_ROOT", tmp_path)
    assert cli.main(["demo", "--frames", "3"]) == 7
    assert "demo got ['--frames', '3']" in capsys.readouterr().out


def test_bench_runs_every_script_with_the_arguments_and_reports_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Without run_all.py each benchmark runs in turn, gets the arguments, and a failure counts."""
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    script = "import sys\nprint('{name}', sys.argv[1:])\nsys.exit({code})\n"
    (folder / "a_ok.py").write_text(script.format(name="a_ok", code=0), encoding="utf-8")
    (folder / "b_fails.py").write_text(script.format(name="b_fails", code=3), encoding="utf-8")
    monkeypatch.setattr(cli_scripts, "SOURCE_ROOT", tmp_path)
    assert cli.main(["bench", "--", "--check", "--items", "5"]) == 3
    out = capfd.readouterr().out
    assert "a_ok ['--check', '--items', '5']" in out
    assert out.index("a_ok [") < out.index("b_fails [")
    (folder / "run_all.py").write_text(script.format(name="run_all", code=0), encoding="utf-8")
    assert cli.main(["bench", "--quick"]) == 0
    out = capfd.readouterr().out
    assert "run_all ['--quick']" in out
    assert "a_ok" not in out


def test_example_factory_builds_an_unstarted_four_stage_pipeline() -> None:
    """The docs' example: four stages, the third twice as slow, not running yet."""
    pipeline = _EXAMPLE["build"]()
    assert isinstance(pipeline, ps.Pipeline)
    assert pipeline.stage_names == STAGES
    assert pipeline.mode is None
    work = _EXAMPLE["STAGE_MILLISECONDS"]
    assert work[STAGES[2]] == 2 * max(work[name] for name in STAGES if name != STAGES[2])
    assert textwrap.dedent(_EXAMPLE["__doc__"]).strip()
