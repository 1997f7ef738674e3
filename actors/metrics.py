"""Prometheus metrics of every stream, through Ray's metrics API (``ray.util.metrics``).

Each stream actor runs one exporter thread that copies its status snapshot into gauges tagged with
the stream id every ``EXPORT_EVERY_S``. Ray's core worker ships them to the node's metrics agent every
``metrics_report_interval_ms`` (10 s), which serves them on the node's metrics export port (on a local
Ray: 127.0.0.1, ``Settings.metrics_port``), named with Ray's ``ray_`` prefix.

Everything is a gauge, including the counts (reconnects, decode errors, gaps):
- Ray's ``Counter.inc`` refuses 0, so a counter has no series until its first event; "decode errors
  == 0" would then read as "no data". A gauge exports the zero.
- the scrape then equals ``GET /v1/streams/{id}`` exactly, with no bookkeeping of what was already
  counted. Those counts restart at 0 when a crashed actor restarts, like the status does, and
  PromQL's ``increase()``/``rate()`` treat any drop as a counter reset, so they still work.
- Ray drops a gauge series about 20 s after its process stops setting it (two report intervals), so
  a crashed actor's stale values go away on their own. For the same reason the thread keeps
  re-setting the values for as long as the actor lives, also once its stream has ended.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections.abc import Callable, Mapping

log = logging.getLogger("manta.metrics")

EXPORT_EVERY_S = 2.0  # Ray reports every 10 s: a value is then at most ~12 s old when scraped
RAY_PREFIX = "ray_"  # what Ray's exporter puts before every application metric's name

# (status key, metric name, description). A key missing from a snapshot is not exported (a stream
# that failed before it started has no lag); keys other modules add later fit in the same way.
GAUGES: tuple[tuple[str, str, str], ...] = (
    ("lag_s", "manta_stream_lag_seconds", "media seconds decoded but not yet searchable"),
    ("rtf", "manta_stream_rtf", "real-time factor: processing seconds per media second"),
    ("media_seconds", "manta_stream_media_seconds", "media time decoded so far"),
    ("committed_seconds", "manta_stream_committed_seconds", "media time final and searchable"),
    ("segments", "manta_stream_segments", "micro segments in the index (retention removes old ones)"),
    ("words", "manta_stream_words", "words transcribed"),
    ("reconnects", "manta_stream_reconnects", "reconnects of a live source since the actor started"),
    ("decode_errors", "manta_stream_decode_errors", "corrupt packets skipped since the actor started"),
    ("discontinuities", "manta_stream_discontinuities", "timestamp jumps rebased to keep media time monotonic"),
    ("timestamp_wraps", "manta_stream_timestamp_wraps", "MPEG-TS PTS wraps (every ~26.5 h) unwrapped"),
    ("stalls", "manta_stream_stalls", "silences of a live source shorter than a reconnect"),
    ("gaps", "manta_stream_gaps", "outages of a live source since the actor started"),
    ("gap_seconds", "manta_stream_gap_seconds", "wall seconds those outages lasted"),
    ("backlog_s", "manta_stream_backlog_seconds", "decoded media waiting for the worker"),
    ("degraded", "manta_stream_degradation_level", "backpressure level (0: full quality)"),
    ("dropped_frames", "manta_stream_dropped_frames", "sampled frames shed because the queue was full"),
)
STATE_METRIC = "manta_stream_state"
# Every state a stream actor reports. One series per state (1 for the current one, 0 for the rest,
# as kube-state-metrics does for phases) rather than a numeric code: an alert or a count by state is
# then a plain selector, `manta_stream_state{state="failed"} == 1`, with no code table to remember.
STATES = ("starting", "connecting", "waiting", "ingesting", "reconnecting", "restoring", "finished", "stopped",
          "failed")


# The shared model services (actors/model_service.py), one series per service tagged ``service``:
# (BatchStats key, metric name, description).
SERVICE_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("batches", "manta_model_batches", "model calls so far (each serves a batch of requests)"),
    ("items", "manta_model_requests", "requests served so far, from every stream"),
    ("mean_batch", "manta_model_mean_batch", "mean requests per model call so far"),
    ("max_batch_seen", "manta_model_max_batch", "largest batch so far"),
    ("wait_p50_s", "manta_model_queue_wait_p50_seconds", "queue wait, median of recent requests"),
    ("wait_p95_s", "manta_model_queue_wait_p95_seconds", "queue wait, 95th percentile of recent requests"),
    ("queued", "manta_model_queued", "requests waiting now"),
    ("busy_s", "manta_model_busy_seconds", "seconds spent inside the model so far"),
)


def values(status: Mapping) -> dict[str, float]:
    """The numbers a status snapshot exports, by status key."""
    out = {}
    for key, _, _ in GAUGES:
        v = status.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[key] = float(v)
    gaps = status.get("gaps")
    if isinstance(gaps, list):
        out["gaps"] = float(len(gaps))
        out["gap_seconds"] = float(sum(max(0.0, g["wall_end"] - g["wall_start"]) for g in gaps))
    return out


class StreamMetrics:
    """One stream's gauges. ``gauge(name, description, tag_keys)`` makes a metric (Ray's Gauge by
    default; tests pass a recorder)."""

    def __init__(self, stream_id: str, gauge: Callable | None = None):
        if gauge is None:
            from ray.util.metrics import Gauge as gauge
        self.stream_id = stream_id
        self._gauges = {key: gauge(name, desc, ("stream",)).set_default_tags({"stream": stream_id})
                        for key, name, desc in GAUGES}
        self._state = gauge(STATE_METRIC, "1 for the stream's current state, 0 for the others",
                            ("stream", "state")).set_default_tags({"stream": stream_id})
        self._states = list(STATES)

    def export(self, status: Mapping) -> None:
        for key, value in values(status).items():
            self._gauges[key].set(value)
        state = status.get("state")
        if isinstance(state, str) and state not in self._states:
            self._states.append(state)  # a state added later still shows, rather than none at all
        for s in self._states:
            self._state.set(1.0 if s == state else 0.0, tags={"state": s})


class ServiceMetrics:
    """The model services' gauges of one replica; ``export`` takes ``ModelService.stats()``."""

    def __init__(self, gauge: Callable | None = None):
        if gauge is None:
            from ray.util.metrics import Gauge as gauge
        self._gauges = {key: gauge(name, desc, ("service",)) for key, name, desc in SERVICE_GAUGES}

    def export(self, stats: Mapping) -> None:
        for service in stats["services"]:
            for key, g in self._gauges.items():
                g.set(float(service[key]), tags={"service": service["name"]})


class MetricsExporter:
    """Exports ``sample()`` (a stream's status, or the model services' stats with ``metrics`` a
    ServiceMetrics) every ``every_s`` on a daemon thread until closed.
    A failing sample or export is logged once and retried: metrics must never stop a stream."""

    def __init__(self, stream_id: str, sample: Callable[[], Mapping], every_s: float = EXPORT_EVERY_S,
                 metrics: StreamMetrics | None = None):
        self.stream_id, self.sample, self.every_s = stream_id, sample, every_s
        self.metrics = metrics if metrics is not None else StreamMetrics(stream_id)
        self._closed = threading.Event()
        self._warned = False
        self._thread = threading.Thread(target=self._run, name=f"manta-{stream_id}-metrics", daemon=True)

    def start(self) -> MetricsExporter:
        self._thread.start()
        return self

    def export_now(self) -> bool:
        try:
            self.metrics.export(self.sample())
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            if not self._warned:
                self._warned = True
                log.warning("stream %s: metrics export failed: %s", self.stream_id, exc, exc_info=True,
                            extra={"fields": {"event": "metrics_export_failed", "stream": self.stream_id}})
            return False
        return True

    def close(self, timeout: float = 5.0) -> None:
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            self.export_now()
            if self._closed.wait(self.every_s):
                return


@functools.cache
def _node_metrics_url(node_id: str) -> str | None:
    import ray

    for node in ray.nodes():
        if node.get("NodeID") == node_id and node.get("Alive"):
            port = node.get("MetricsExportPort") or 0
            # -1: metrics collection is disabled on that node.
            return f"http://{node['NodeManagerAddress']}:{port}/metrics" if port > 0 else None
    return None


def metrics_url() -> str | None:
    """The Prometheus endpoint of the node this process runs on (every node of a cluster exports its
    own). Cached: a node keeps its export port for its lifetime. Blocking (a GCS call the first time).
    None when unknown: /healthz reports it, and a liveness check must not fail over metrics."""
    import ray

    try:
        return _node_metrics_url(ray.get_runtime_context().get_node_id())
    except Exception as exc:  # noqa: BLE001 - see above; not cached, so the next call tries again
        log.warning("metrics endpoint unknown: %s", exc, extra={"fields": {"event": "metrics_url_failed"}})
        return None
