"""Prometheus metrics: what a stream's status exports, and the real scrape of a real stream."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from actors.metrics import GAUGES, RAY_PREFIX, SERVICE_GAUGES, STATE_METRIC, STATES, MetricsExporter, \
    ServiceMetrics, StreamMetrics, values
from tests.support.helpers import free_port, media

ROOT = Path(__file__).resolve().parents[2]
NAMES = {key: name for key, name, _ in GAUGES}


class Recorder:
    """Stands in for ray.util.metrics.Gauge: remembers the last value per full tag set."""

    made: dict[str, Recorder] = {}

    def __init__(self, name: str, description: str, tag_keys: tuple):
        self.name, self.tag_keys, self.defaults, self.last = name, tag_keys, {}, {}
        Recorder.made[name] = self

    def set_default_tags(self, tags: dict) -> Recorder:
        self.defaults = dict(tags)
        return self

    def set(self, value: float, tags: dict | None = None) -> None:
        final = {**self.defaults, **(tags or {})}
        assert set(final) == set(self.tag_keys), final  # Ray refuses a missing or unknown tag
        self.last[tuple(sorted(final.items()))] = value


def recorded(name: str, **tags) -> float | None:
    return Recorder.made[name].last.get(tuple(sorted(tags.items())))


def test_values_copy_the_status_and_count_gaps():
    status = {"state": "reconnecting", "lag_s": 2.5, "rtf": 0.3, "media_seconds": 60.0, "segments": 19,
              "reconnects": 2, "decode_errors": 1, "words": None, "live": True, "last_error": "timeout",
              "gaps": [{"media_t": 10.0, "wall_start": 100.0, "wall_end": 103.5, "reason": "x"},
                       {"media_t": 40.0, "wall_start": 200.0, "wall_end": 201.0, "reason": "y"}]}
    assert values(status) == {"lag_s": 2.5, "rtf": 0.3, "media_seconds": 60.0, "segments": 19.0,
                              "reconnects": 2.0, "decode_errors": 1.0, "gaps": 2.0, "gap_seconds": 4.5}
    # A stream that failed before it started reports only what it has; nothing is made up.
    assert values({"state": "failed", "segments": 0, "media_seconds": 0.0}) == {
        "segments": 0.0, "media_seconds": 0.0}
    assert values({"rtf": float("nan"), "lag_s": True}) == {}


def test_export_tags_every_gauge_with_the_stream_and_marks_one_state():
    metrics = StreamMetrics("news", gauge=Recorder)
    metrics.export({"state": "ingesting", "lag_s": 1.5, "segments": 4, "gaps": []})
    assert recorded(NAMES["lag_s"], stream="news") == 1.5
    assert recorded(NAMES["segments"], stream="news") == 4.0
    assert recorded(NAMES["gaps"], stream="news") == 0.0
    assert recorded(NAMES["rtf"], stream="news") is None  # not in this snapshot
    assert [s for s in STATES if recorded(STATE_METRIC, stream="news", state=s)] == ["ingesting"]
    assert all(recorded(STATE_METRIC, stream="news", state=s) == 0.0 for s in STATES if s != "ingesting")

    metrics.export({"state": "finished", "lag_s": 0.0, "segments": 5})
    assert recorded(NAMES["lag_s"], stream="news") == 0.0 and recorded(NAMES["segments"], stream="news") == 5
    assert recorded(STATE_METRIC, stream="news", state="ingesting") == 0.0
    assert recorded(STATE_METRIC, stream="news", state="finished") == 1.0
    # A state this module does not know yet still shows up, and the known ones all read 0.
    metrics.export({"state": "draining"})
    assert recorded(STATE_METRIC, stream="news", state="draining") == 1.0
    assert recorded(STATE_METRIC, stream="news", state="finished") == 0.0


def test_model_service_gauges_are_tagged_by_service():
    from manta_models.serving.batcher import MicroBatcher

    speech = MicroBatcher(lambda xs: [x * 2 for x in xs], name="speech")
    try:
        assert [speech(i, key="a") for i in range(3)] == [0, 2, 4]
        ServiceMetrics(gauge=Recorder).export({"services": [speech.stats().to_dict()]})
    finally:
        speech.close()
    names = {key: name for key, name, _ in SERVICE_GAUGES}
    assert recorded(names["items"], service="speech") == 3.0
    assert recorded(names["batches"], service="speech") >= 1.0
    assert recorded(names["queued"], service="speech") == 0.0


class Messages(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_exporter_samples_periodically_and_survives_a_failing_sample():
    samples, ready = [], threading.Event()

    def sample():
        samples.append(time.monotonic())
        if len(samples) == 2:
            raise RuntimeError("status not readable right now")
        if len(samples) >= 4:
            ready.set()
        return {"state": "ingesting", "segments": len(samples)}

    exporter = MetricsExporter("cam", sample, every_s=0.02, metrics=StreamMetrics("cam", gauge=Recorder))
    # Our own handler: configure_logging stops "manta" records from reaching pytest's.
    logger, handler = logging.getLogger("manta.metrics"), Messages()
    logger.addHandler(handler)
    try:
        exporter.start()
        assert ready.wait(5), samples
        exporter.close()
    finally:
        logger.removeHandler(handler)
    count = len(samples)
    time.sleep(0.1)
    assert len(samples) == count  # closed: no more samples
    assert recorded(NAMES["segments"], stream="cam") >= 4
    assert handler.messages == ["stream cam: metrics export failed: status not readable right now"]


def test_a_taken_metrics_port_fails_fast_with_the_setting_named():
    from actors.runtime import check_port_free

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"metrics_port {port} is not free.*MANTA_METRICS_PORT"):
            check_port_free(port, "metrics_port")
    assert check_port_free(port, "metrics_port") == port


def test_metrics_port_comes_from_the_environment(monkeypatch):
    from streaming.settings import Settings

    assert Settings().metrics_port is None
    monkeypatch.setenv("MANTA_METRICS_PORT", "9464")
    assert Settings.load({"metrics_port": 9000}).metrics_port == 9464


# -- the real thing ---------------------------------------------------------------------------------

def scrape(url: str, stream: str, label: str = "stream") -> dict:
    """{(metric name, state or None): value} of one stream's series on a Prometheus endpoint (or,
    with ``label="service"``, one model service's)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url, timeout=10, trust_env=False).text
    return {(s.name, s.labels.get("state")): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.labels.get(label) == stream}


@pytest.mark.slow
def test_a_finished_stream_is_scraped_with_the_values_its_status_shows(service):
    url = service.get("/healthz").json()["metrics_url"]
    assert url and url.startswith("http://127.0.0.1:") and url.endswith("/metrics"), url
    sid = service.add(str(media("jfk_inaugural_1961.flac")), name="metrics-jfk")
    status = service.wait(sid)
    assert status["state"] == "finished" and status["segments"] > 0, status

    def name(key):
        return RAY_PREFIX + NAMES[key]

    finished = (RAY_PREFIX + STATE_METRIC, "finished")
    deadline, got = time.monotonic() + 60, {}  # Ray ships metrics to its agent every 10 s
    while time.monotonic() < deadline:
        got = scrape(url, sid)
        if got.get(finished) == 1.0 and got.get((name("segments"), None)) == status["segments"]:
            break
        time.sleep(2)
    assert got.get(finished) == 1.0, got
    assert got[(name("segments"), None)] == status["segments"]
    assert got[(name("words"), None)] == status["words"]
    assert got[(name("media_seconds"), None)] == pytest.approx(11.0, abs=0.1)
    assert got[(name("media_seconds"), None)] == pytest.approx(status["media_seconds"])
    assert got[(name("committed_seconds"), None)] == pytest.approx(status["committed_seconds"])
    assert got[(name("lag_s"), None)] == pytest.approx(status["lag_s"])
    assert 0 < got[(name("rtf"), None)] == pytest.approx(status["rtf"], rel=1e-6)
    for key in ("decode_errors", "reconnects", "gaps", "gap_seconds"):
        assert got[(name(key), None)] == 0.0, key
    assert [s for s in STATES if got[(RAY_PREFIX + STATE_METRIC, s)] == 1.0] == ["finished"]
    # The shared model services that served it export their batches and queue waits beside it.
    requests = RAY_PREFIX + "manta_model_requests"
    speech, deadline = scrape(url, "speech", label="service"), time.monotonic() + 30
    while time.monotonic() < deadline and not speech.get((requests, None)):
        time.sleep(2)
        speech = scrape(url, "speech", label="service")
    assert speech.get((requests, None), 0) >= 1, speech
    assert (RAY_PREFIX + "manta_model_queue_wait_p95_seconds", None) in speech


PINNED_START = """
import httpx
from actors import runtime
from streaming.settings import Settings
runtime.start_ray(Settings(port={port}, metrics_port={metrics_port}))
listening = [line.split() for line in open("/proc/net/tcp").read().splitlines()[1:]]
print("listen", [l[1] for l in listening if l[3] == "0A" and l[1].endswith(":%04X" % {metrics_port})])
print("status", httpx.get("http://127.0.0.1:{metrics_port}/metrics", trust_env=False, timeout=10).status_code)
runtime.shutdown()
"""


@pytest.mark.slow
def test_metrics_port_setting_pins_a_loopback_exporter():
    """A local Ray started without the dashboard still exports on the configured port, on
    127.0.0.1 only."""
    metrics_port = free_port()
    code = PINNED_START.format(port=free_port(), metrics_port=metrics_port)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    # 0100007F is 127.0.0.1 in /proc/net/tcp's little-endian hex; 0.0.0.0 would be 00000000.
    assert f"listen ['0100007F:{metrics_port:04X}']" in r.stdout, r.stdout
    assert "status 200" in r.stdout, r.stdout
