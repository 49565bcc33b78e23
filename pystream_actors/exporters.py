"""Statistics for the outside world: JSON for logs, Prometheus for dashboards.

Everything here is built on the immutable snapshots of ``statistics()``, so exporting
never touches a running stage. ``snapshot_to_dict`` and ``snapshot_to_json`` need only
the standard library; the Prometheus parts import ``prometheus_client`` when used
(``pip install 'pystream-actors[prometheus]'``), and nothing is served on the network
unless ``serve_metrics`` is called.
"""

from __future__ import annotations

import dataclasses
import json
import math
import socket
import socketserver
import threading
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Union
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from ._errors import InvalidArgument, MissingExtra, PipelineUndefined
from ._handle import PipelineHandle
from ._pipeline import Pipeline
from ._stage import MAIN_PIPELINE_NAME
from ._statistics import JunctionStatistics, Percentiles, PipelineStatistics, SourceStatistics

if TYPE_CHECKING:
    from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import CollectorRegistry

__all__ = [
    "DEFAULT_METRICS_PORT",
    "MetricsServer",
    "PrometheusCollector",
    "serve_metrics",
    "snapshot_to_dict",
    "snapshot_to_json",
]

Source = Union[Pipeline, PipelineHandle]
"""What a collector reads: a pipeline or its handle (anything with ``statistics()``)."""

DEFAULT_METRICS_PORT = 9464
"""The port ``serve_metrics`` listens on unless told otherwise."""

PROMETHEUS_HINT = "install the 'prometheus' extra: pip install 'pystream-actors[prometheus]'"

_PREFIX = "pystream"
_PERCENTILE_FIELDS = tuple(field.name for field in dataclasses.fields(Percentiles))


# -- JSON -------------------------------------------------------------------------------


def snapshot_to_dict(stats: PipelineStatistics) -> dict[str, Any]:
    """The snapshot as plain dicts, lists and numbers, ready for ``json.dumps``.

    Keys are the dataclass field names (so new fields are exported as they appear);
    durations stay in seconds, nested pipelines sit under each stage's ``child``, a
    graph's ``junctions`` carry their per-branch figures as objects keyed by branch,
    and non-finite numbers become None, so the output is strict JSON.
    """
    if not isinstance(stats, PipelineStatistics):
        raise InvalidArgument(f"expected a PipelineStatistics snapshot, got {type(stats).__name__}")
    result: dict[str, Any] = _plain(stats)
    return result


def snapshot_to_json(stats: PipelineStatistics, **json_kwargs: Any) -> str:
    """``snapshot_to_dict`` serialized; ``json_kwargs`` go to ``json.dumps`` (e.g. ``indent``)."""
    return json.dumps(snapshot_to_dict(stats), **json_kwargs)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):  # a junction's per-branch figures (MappingProxyType)
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# -- Prometheus ---------------------------------------------------------------------------


def _metrics_core() -> Any:
    """prometheus_client's metric families, imported only when a collector is made."""
    try:
        from prometheus_client import metrics_core
    except ImportError as missing:
        raise MissingExtra(
            f"the Prometheus exporter needs prometheus_client; {PROMETHEUS_HINT}"
        ) from missing
    return metrics_core


class _Families:
    """Metric families by name, filled sample by sample, in first-use order."""

    def __init__(self, core: Any) -> None:
        self._core = core
        self._families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}

    def add(self, kind: str, name: str, doc: str, labels: dict[str, str], value: float) -> None:
        family = self._families.get(name)
        if family is None:
            kind_class = "CounterMetricFamily" if kind == "counter" else "GaugeMetricFamily"
            family = getattr(self._core, kind_class)(f"{_PREFIX}_{name}", doc, labels=list(labels))
            self._families[name] = family
        family.add_metric(list(labels.values()), value)

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._families.values())


# (kind, snapshot field, metric name, help): one row per exported figure.
_PIPELINE_METRICS = (
    ("counter", "accepted", "accepted", "Items accepted into the pipeline."),
    ("counter", "completed", "completed", "Items that went through every stage."),
    ("counter", "failed", "failed", "Items a stage raised on."),
    ("counter", "dropped", "dropped", "Items dropped by a flow policy (on_full or max_age)."),
    ("counter", "dropped_on_full", "dropped_on_full", "Items the drop_oldest policy dropped."),
    ("counter", "dropped_by_deadline", "dropped_by_deadline", "Items older than max_age."),
    ("counter", "results_dropped", "results_dropped", "Outputs pushed out of results() unread."),
    ("gauge", "in_flight", "in_flight", "Items inside the pipeline now."),
    ("gauge", "throughput", "throughput_items_per_second", "Completed items/s, recent window."),
)
_STAGE_METRICS = (
    ("counter", "processed", "processed", "Items the stage finished without error."),
    ("counter", "failed", "failed", "Items the stage raised on."),
    ("counter", "dropped", "dropped", "Items the stage dropped for being older than max_age."),
    ("counter", "restarts", "restarts", "Times the stage actor was restarted."),
    ("gauge", "queue_depth", "queue_depth", "Items waiting in the stage's mailbox."),
    ("gauge", "throughput", "throughput_items_per_second", "Items/s, recent window."),
    ("gauge", "utilization", "utilization_ratio", "Busy fraction (0..1), recent window."),
)
# (snapshot field, metric name, help) of the Percentiles, one sample per ``stat``.
_PIPELINE_DURATIONS = (("latency", "latency_seconds", "End-to-end latency."),)
_STAGE_DURATIONS = (
    ("service_time", "service_time_seconds", "Time the stage spent on one item."),
    ("wait_time", "wait_time_seconds", "Time an item waited for the stage."),
)
_SOURCE_METRICS = (
    ("counter", "accepted", "accepted", "Samples of the Sync source accepted."),
    ("counter", "completed", "completed", "Samples of the source that resolved with an output."),
    ("counter", "failed", "failed", "Samples of the source a stage raised on."),
    ("counter", "dropped", "dropped", "Samples of the source dropped (by the sync or a policy)."),
    ("counter", "rejected", "rejected", "Samples of the source its full window refused."),
    ("gauge", "in_flight", "in_flight", "Samples of the source inside the pipeline now."),
    ("gauge", "capacity", "capacity", "The source's in-flight window."),
)


def _add_pipeline(families: _Families, label: str, stats: PipelineStatistics) -> None:
    """Samples of one pipeline, its stages and junctions; nested pipelines get
    ``outer/stage`` labels."""
    own = {"pipeline": label}
    _add_figures(families, "pipeline", _PIPELINE_METRICS, stats, own)
    _add_durations(families, "pipeline", _PIPELINE_DURATIONS, stats, own)
    if stats.bottleneck is not None:
        doc = "1 for the stage that limits throughput."
        families.add("gauge", "pipeline_bottleneck", doc, {**own, "stage": stats.bottleneck}, 1)
    for stage in stats.stages:
        labels = {**own, "stage": stage.name}
        _add_figures(families, "stage", _STAGE_METRICS, stage, labels)
        _add_durations(families, "stage", _STAGE_DURATIONS, stage, labels)
        if stage.child is not None:
            _add_pipeline(families, f"{label}/{stage.name}", stage.child)
    if stats.junctions:
        for stage in stats.stages:
            doc = "1 per stage; label path: where it sits (Junction/branch/Stage in a branch)."
            path = {**own, "stage": stage.name, "path": stage.path or stage.name}
            families.add("gauge", "stage_path_info", doc, path, 1)
    for junction in stats.junctions:
        _add_junction(families, {**own, "junction": junction.name}, junction)
    for source in stats.sources:
        _add_source(families, {**own, "source": source.name}, source)


def _add_source(families: _Families, labels: dict[str, str], source: SourceStatistics) -> None:
    """A named source's samples (a pipeline whose first step is a ``Sync``)."""
    _add_figures(families, "source", _SOURCE_METRICS, source, labels)


_ALL_KINDS = ("parallel", "route", "tap")
# (kind, JunctionStatistics per-branch field, metric name, help, the junction kinds that
# have it): one sample per branch.
_BRANCH_METRICS = (
    ("counter", "arrivals", "junction_arrivals", "Children back from the branch.", _ALL_KINDS),
    ("counter", "dropped", "junction_dropped", "Children its capacity dropped.", _ALL_KINDS),
    ("counter", "per_key", "junction_routed", "Items a route sent to the branch.", ("route",)),
    (
        "gauge",
        "waited_on",
        "junction_waited_on_ratio",
        "Share of a parallel's joins the branch arrived last in (held the join up).",
        ("parallel",),
    ),
)
_JUNCTION_DURATIONS = (
    ("join_wait", "join_wait_seconds", "Time from a join's first branch arrival to its last."),
)
# (JunctionStatistics per-source field, metric name, help) of a ``Sync``, one sample per source.
_SYNC_SOURCE_METRICS = (
    ("unmatched", "sync_unmatched", "Samples of the source no set took (no partner in time)."),
    ("late", "sync_late", "Samples of the source that came after the sets they could join."),
    ("evicted", "sync_evicted", "Samples of the source pushed out of the sync's buffer."),
)
_SYNC_DURATIONS = (
    ("skew", "skew_seconds", "|Stamp of a set member - stamp of its anchor|, sensor time."),
    ("decide_wait", "decide_wait_seconds", "From a set's last member arriving to its decision."),
)


def _add_junction(families: _Families, own: dict[str, str], junction: JunctionStatistics) -> None:
    """A junction's samples: items inside it, and per branch what came back, what was
    dropped, what a route sent there and how often the branch held a join up."""
    doc = "Items inside the junction's branches now (joins or reorders not finished)."
    families.add("gauge", "junction_pending", doc, own, float(junction.pending))
    for kind, field, metric, doc, kinds in _BRANCH_METRICS:
        if junction.kind not in kinds:
            continue
        figures: Mapping[str, float] = getattr(junction, field)
        for branch in junction.branches:
            labels = {**own, "branch": branch}
            families.add(kind, metric, doc, labels, float(figures.get(branch, 0)))
    if junction.kind == "parallel":
        _add_durations(families, "junction", _JUNCTION_DURATIONS, junction, own)
    if junction.kind == "sync":
        _add_sync(families, own, junction)


def _add_sync(families: _Families, own: dict[str, str], junction: JunctionStatistics) -> None:
    """A ``Sync``'s samples: sets, their rate, reuses, the samples in no set per source,
    and the skew and decide-wait percentiles."""
    families.add(
        "counter", "sync_sets", "Sets the sync decided and sent on.", own, float(junction.sets)
    )
    doc = "Sets per second, recent window."
    families.add("gauge", "sync_sets_per_second", doc, own, junction.sets_per_second)
    doc = "policy='latest': uses of a cached sample beyond its first."
    families.add("counter", "sync_reused", doc, own, float(junction.reused))
    for field, metric, doc in _SYNC_SOURCE_METRICS:
        figures: Mapping[str, int] = getattr(junction, field)
        for source in junction.branches:
            labels = {**own, "source": source}
            families.add("counter", metric, doc, labels, float(figures.get(source, 0)))
    _add_durations(families, "sync", _SYNC_DURATIONS, junction, own)


def _add_figures(
    families: _Families,
    scope: str,
    specs: tuple[tuple[str, str, str, str], ...],
    snapshot: object,
    labels: dict[str, str],
) -> None:
    for kind, field, metric, doc in specs:
        families.add(kind, f"{scope}_{metric}", doc, labels, float(getattr(snapshot, field)))


def _add_durations(
    families: _Families,
    scope: str,
    specs: tuple[tuple[str, str, str], ...],
    snapshot: object,
    labels: dict[str, str],
) -> None:
    for field, metric, doc in specs:
        summary: Percentiles = getattr(snapshot, field)
        for stat in _PERCENTILE_FIELDS:
            value = float(getattr(summary, stat))
            help_text = f"{doc} Label stat: {', '.join(_PERCENTILE_FIELDS)}."
            families.add("gauge", f"{scope}_{metric}", help_text, {**labels, "stat": stat}, value)


class PrometheusCollector:
    """A custom prometheus_client collector reading a pipeline's snapshots at each scrape.

    Register it with a registry (``prometheus_client.REGISTRY.register(collector)``) or
    pass it to ``serve_metrics``. Pipeline metrics carry a ``pipeline`` label, stage
    metrics a ``pipeline`` and a ``stage`` label. One collector can cover several
    pipelines (``add``), which keeps each metric name a single family, as Prometheus
    requires. A pipeline not started yet yields no samples.
    """

    def __init__(self, pipeline_or_handle: Source, name: str | None = None) -> None:
        self._core = _metrics_core()
        self._sources: list[tuple[str, Source]] = []
        self._lock = threading.Lock()
        self.add(pipeline_or_handle, name)

    def add(self, pipeline_or_handle: Source, name: str | None = None) -> None:
        """Also export this pipeline, labelled ``name`` (default: its own name)."""
        if not callable(getattr(pipeline_or_handle, "statistics", None)):
            raise InvalidArgument(
                f"expected a Pipeline or PipelineHandle, got {type(pipeline_or_handle).__name__}"
            )
        label = name or pipeline_or_handle.name or MAIN_PIPELINE_NAME
        with self._lock:
            if any(label == known for known, _ in self._sources):
                raise InvalidArgument(
                    f"a pipeline labelled {label!r} is already exported; pass name="
                )
            self._sources.append((label, pipeline_or_handle))

    def collect(self) -> Iterator[Metric]:
        """One family per metric name, with a sample per pipeline and stage."""
        families = _Families(self._core)
        with self._lock:
            sources = list(self._sources)
        for label, source in sources:
            try:
                stats = source.statistics()
            except PipelineUndefined:
                continue
            _add_pipeline(families, label, stats)
        return iter(families)


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per scrape, so a slow client cannot hold up the next one."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr for every scrape."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class MetricsServer:
    """The running ``/metrics`` endpoint; ``close()`` (or ``with``) stops it."""

    def __init__(self, server: WSGIServer) -> None:
        self._server = server
        self.host = str(server.server_address[0])
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever, name="pystream-metrics-server", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """Where Prometheus scrapes."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving, free the port and wait for the server thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def serve_metrics(
    collector_or_pipeline: PrometheusCollector | Source,
    port: int = DEFAULT_METRICS_PORT,
    addr: str = "127.0.0.1",
    registry: CollectorRegistry | None = None,
) -> MetricsServer:
    """Serve the metrics over HTTP for Prometheus to scrape, on localhost by default.

    Uses prometheus_client's WSGI app on a daemon thread. Without ``registry`` a new
    one holds only this collector (pass ``prometheus_client.REGISTRY`` to also expose
    the process metrics); ``port=0`` picks a free port, see ``MetricsServer.port``.
    Listening on another ``addr`` (e.g. ``"0.0.0.0"``) exposes the figures to the network.
    """
    _metrics_core()
    from prometheus_client import CollectorRegistry, make_wsgi_app

    collector = (
        collector_or_pipeline
        if isinstance(collector_or_pipeline, PrometheusCollector)
        else PrometheusCollector(collector_or_pipeline)
    )
    if registry is None:
        registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)

    class Server(_ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET

    server = make_server(addr, port, make_wsgi_app(registry), Server, handler_class=_QuietHandler)
    return MetricsServer(server)
