"""A short property-based fuzz of the whole HTTP API (bench/fuzz_api.py runs the long one): no 5xx,
every request answered, and two streams ingesting meanwhile keep their actors and their segments."""

from __future__ import annotations

import threading

import pytest

from bench.fuzz_api import Watched, fuzz, start_streams
from tests.support.helpers import media

pytestmark = pytest.mark.slow

REQUESTS = 400
BUDGET_S = 60.0  # the fuzz stops here even if fewer requests were sent


def test_fuzzed_api_answers_no_5xx_and_leaves_ingesting_streams_alone(service):
    pytest.importorskip("schemathesis")
    media("manifesto_audiobook_titlecard.mp4")  # skips on a clone without the shared media
    stop = threading.Event()
    ids, senders = start_streams(service.http, loops=1, stop=stop)
    try:
        watched = Watched(service.http, ids, service.settings.namespace)
        watched.start()
        report = fuzz(service.base_url, REQUESTS, set(ids), seed=1, budget_s=BUDGET_S)
        verdict = watched.verdict()
    finally:
        stop.set()
        for _, thread in senders:
            thread.join(timeout=5)
    assert report.requests >= 100, (report.requests, report.generation_notes)
    assert report.server_errors == [], report.server_errors
    assert report.transport_errors == [], report.transport_errors
    # Every operation was reached (a route the fuzz never hits proves nothing about it).
    assert len(report.by_operation) >= 10, sorted(report.by_operation)
    for sid, v in verdict.items():
        assert v["ok"], (sid, v)
