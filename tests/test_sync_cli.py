"""A ``Sync`` on the command line and in the exporters: ``graph`` draws its sources as
inputs, the live table has a row per source, Prometheus gets per-source samples.

The drawings need no running pipeline. The table and exporter tests run one with
synthetic stamps whose sets do not depend on timing, and read the figures once every
sample is settled (waiting on futures, then on the drain).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from concurrent.futures import Future
from typing import Any

import pytest

import pystream_actors as ps
from pystream_actors import cli
from pystream_actors.exporters import PrometheusCollector, snapshot_to_dict

pytestmark = pytest.mark.timeout(60)

WAIT = 30.0


def ident(data: object) -> object:
    return data


def fusion(**options: Any) -> ps.Pipeline:
    """camera (Undistort) and lidar (Crop -> Voxelize) -> Sync -> Fuse -> Track; an
    option given as None is left out."""
    pipeline = ps.Pipeline(name="fusion")
    defaults = {"anchor": "lidar", "tolerance": 0.02, "max_wait": 0.06}
    sync_options = {k: v for k, v in {**defaults, **options}.items() if v is not None}
    pipeline.add(
        ps.Sync(
            camera=ps.Chain(capacity=6, on_full="drop_oldest").add(ident, "Undistort"),
            lidar=ps.Chain(capacity=4).add(ident, "Crop").add(ident, "Voxelize"),
            **sync_options,
        ),
        "Sync",
    )
    pipeline.add(ident, "Fuse")
    pipeline.add(ident, "Track")
    return pipeline


FUSION_MERMAID = """\
flowchart LR
    %% pipeline fusion
    s1_camera_in(["camera"])
    subgraph s1_camera ["camera · cap 6, drop_oldest"]
        direction LR
        s1_camera_1["Undistort"]
    end
    s1_lidar_in(["lidar"])
    subgraph s1_lidar ["lidar · cap 4"]
        direction LR
        s1_lidar_1["Crop"]
        s1_lidar_2["Voxelize"]
    end
    s1_join(("Sync · approximate ±20 ms · anchor lidar · max_wait 60 ms"))
    s2["Fuse"]
    s3["Track"]
    output(["output"])
    s1_join --> s2
    s2 --> s3
    s3 --> output
    s1_camera_in --> s1_camera_1
    s1_camera_1 --> s1_join
    s1_lidar_in --> s1_lidar_1
    s1_lidar_1 --> s1_lidar_2
    s1_lidar_2 --> s1_join
"""


def test_mermaid_draws_each_source_as_an_input_feeding_its_chain_into_the_sync() -> None:
    """No "input": each source is a stadium feeding its box; the boxes meet at the
    sync's circle, labelled with its policy, tolerance, anchor and max_wait."""
    assert cli.to_mermaid(fusion()) == FUSION_MERMAID


def test_dot_draws_the_sources_as_ovals_and_the_sync_as_a_circle() -> None:
    lines = {line.strip() for line in cli.to_dot(fusion()).splitlines()}
    assert {
        's1_camera_in [shape=oval, label="camera"];',
        's1_lidar_in [shape=oval, label="lidar"];',
        "subgraph cluster_s1_lidar {",
        's1_join [shape=circle, margin=0, label="Sync · approximate ±20 ms · anchor lidar · '
        'max_wait 60 ms"];',
        "s1_camera_in -> s1_camera_1;",
        "s1_lidar_2 -> s1_join;",
        "s1_join -> s2;",
    } <= lines
    assert not any(line.startswith("input") for line in lines)


@pytest.mark.parametrize(
    ("options", "label"),
    [
        ({"policy": "exact", "tolerance": None}, "Sync · exact stamps · anchor lidar"),
        (
            {"policy": "latest", "anchor": None, "on": "camera", "tolerance": 0.15},
            "Sync · latest ≤150 ms old · on camera",
        ),
        (
            {"buffer": 3, "missing": "none"},
            "Sync · approximate ±20 ms · anchor lidar · buffer 3 · missing none",
        ),
    ],
)
def test_the_sync_label_says_its_policy_and_the_options_that_differ(
    options: dict[str, Any], label: str
) -> None:
    drawing = cli.to_mermaid(fusion(**{"max_wait": None, **options}))
    assert f'    s1_join(("{label}"))' in drawing.splitlines()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_graphviz_accepts_a_sync_drawing() -> None:
    result = subprocess.run(
        ["dot", "-Tsvg"], input=cli.to_dot(fusion()), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr


def run_fusion() -> tuple[ps.Pipeline, ps.PipelineStatistics]:
    """Three scans, each with a frame 1 ms after it, and one frame no scan is near: three
    sets and one unmatched frame whatever the timing. Figures taken after the drain."""
    pipeline = fusion(max_wait=None)
    frames: list[Future[Any]] = []
    scans: list[Future[Any]] = []
    with pipeline.parallelize():
        handle = pipeline.handle
        for i in range(3):
            scans.append(handle.submit(f"scan {i}", source="lidar", stamp=i / 10))
            frames.append(handle.submit(f"frame {i}", source="camera", stamp=i / 10 + 0.001))
        frames.append(handle.submit("frame far", source="camera", stamp=0.5))
        for scan in scans:
            scan.result(WAIT)  # each set decided: the next frame proved it certain
    with pytest.raises(ps.ItemDropped, match="unmatched"):
        frames[-1].result(WAIT)  # the drain settled the frame that waited for a scan
    return pipeline, pipeline.statistics()


def test_the_table_has_a_row_per_source_above_its_branch_stages() -> None:
    """Under the sync's row, each source's row (accepted, in flight, what became of the
    rest) heads its branch's stages."""
    pipeline, stats = run_fusion()
    order = cli.graph_order(pipeline)
    rows = cli.stage_rows(stats, order=order)
    assert [row.name for row in rows] == [
        "⑂ Sync (sync)",
        "  └ ▸ camera (source)",
        "  └ camera/Undistort",
        "  └ ▸ lidar (source)",
        "  └ lidar/Crop",
        "  └ lidar/Voxelize",
        "Fuse",
        "Track",
    ]
    camera, lidar = rows[1], rows[3]
    assert camera.source and (camera.processed, camera.queue_depth) == (4, 0)
    assert camera.note == "cap 6  completed 3  dropped 1 (unmatched 1)"
    assert lidar.note == "cap 4  completed 3  dropped 0"
    assert re.fullmatch(
        r"sets [\d.]+/s  \|skew\| p99 1\.0 ms  decide_wait p99 [\d.]+ ms", rows[0].note
    ), rows[0].note
    lines = cli.plain_table(stats, "title", "totals", order).splitlines()
    header = lines[1]
    line = next(line for line in lines if "▸ camera (source)" in line)
    assert line.index("4 ") == header.index("processed") + len("processed") - 1
    assert line.endswith("cap 6  completed 3  dropped 1 (unmatched 1)")
    assert cli.BOTTLENECK_MARK not in line


def test_prometheus_has_unmatched_per_source_and_each_sources_counts() -> None:
    """pystream_sync_unmatched_total{source=...} and the other per-source counters, the
    sync's sets and its skew percentiles; the JSON snapshot has the sources too."""
    pytest.importorskip("prometheus_client")
    pipeline, stats = run_fusion()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in PrometheusCollector(pipeline).collect()
        for sample in family.samples
    }

    def at(**labels: str) -> tuple[tuple[str, str], ...]:
        return tuple(sorted({"pipeline": "fusion", **labels}.items()))

    sync = {"junction": "Sync"}
    assert samples[("pystream_sync_unmatched_total", at(**sync, source="camera"))] == 1
    assert samples[("pystream_sync_unmatched_total", at(**sync, source="lidar"))] == 0
    assert samples[("pystream_sync_late_total", at(**sync, source="camera"))] == 0
    assert samples[("pystream_sync_evicted_total", at(**sync, source="lidar"))] == 0
    assert samples[("pystream_sync_sets_total", at(**sync))] == 3
    skew = samples[("pystream_sync_skew_seconds", at(**sync, stat="max"))]
    assert skew == pytest.approx(0.001)
    assert ("pystream_sync_decide_wait_seconds", at(**sync, stat="p99")) in samples
    assert samples[("pystream_source_accepted_total", at(source="camera"))] == 4
    assert samples[("pystream_source_accepted_total", at(source="lidar"))] == 3
    assert samples[("pystream_source_completed_total", at(source="camera"))] == 3
    assert samples[("pystream_source_dropped_total", at(source="camera"))] == 1
    assert samples[("pystream_source_dropped_total", at(source="lidar"))] == 0
    assert samples[("pystream_source_in_flight", at(source="camera"))] == 0
    assert samples[("pystream_source_capacity", at(source="lidar"))] == 4
    sources = {source["name"]: source for source in snapshot_to_dict(stats)["sources"]}
    assert sources["camera"]["unmatched"] == 1
    assert sources["lidar"]["accepted"] == 3


def test_a_pipeline_without_sync_gets_no_source_rows_or_samples() -> None:
    """Nothing changes for a plain pipeline: no source row, no sync or source metric."""
    pytest.importorskip("prometheus_client")
    pipeline = ps.Pipeline(name="plain")
    pipeline.add(ident, "Only")
    with pipeline.parallelize():
        pipeline.handle.ask(1, timeout=WAIT)
        names = {family.name for family in PrometheusCollector(pipeline).collect()}
        stats = pipeline.statistics()
    assert [row.name for row in cli.stage_rows(stats)] == ["Only"]
    assert not any(name.startswith(("pystream_sync", "pystream_source")) for name in names)
