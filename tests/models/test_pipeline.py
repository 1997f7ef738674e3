"""One stream's pipeline in a plain process (no Ray): real PyAV, Whisper tiny.en, MiniLM, FAISS."""

from __future__ import annotations

import threading
import time

import pytest

from tests.support.helpers import media, normalise
from manta_models.perception.asr import WhisperASR
from manta_models.perception.embed import TextEmbedder
from streaming.interfaces import Models
from streaming.ingest.pipeline import StreamPipeline
from streaming.tools.replay import replay
from streaming.settings import Settings
from streaming.source.media import parse_source
from streaming.search.view import StreamView


@pytest.fixture(scope="module")
def models():
    models = Models(WhisperASR("tiny.en"), TextEmbedder())
    return lambda: models


def test_file_ingest_is_searchable_with_times(models):
    pipe = StreamPipeline("jfk", "jfk", parse_source(str(media("jfk_inaugural_1961.flac"))),
                          Settings(asr_model="tiny.en"), models)
    pipe.probe()
    pipe.start()
    assert pipe.join(timeout=60)
    snap = pipe.snapshot()
    assert snap["state"] == "finished" and snap["media_seconds"] == pytest.approx(11.0, abs=0.1)
    assert snap["committed_seconds"] == snap["media_seconds"] and snap["lag_s"] == 0.0
    assert snap["segments"] == len(StreamView.of(pipe).segments()) >= 2 and 0 < snap["rtf"] < 1.0
    vector = pipe.embedder.encode(["my fellow Americans"])[0]
    seg, score = StreamView.of(pipe).search(vector, 1)[0]
    assert "fellow americans" in normalise(seg.text) and 0 <= seg.t0 < seg.t1 <= 3.0, seg
    # Segments tile the speech in order, each word once.
    words = [w for s in StreamView.of(pipe).segments() for w in s.words]
    assert [w.start for w in words] == sorted(w.start for w in words)


def test_stopping_a_live_stream_keeps_everything_received(models):
    """DELETE semantics: stop ingesting, but audio already received is transcribed and kept."""
    from tests.support.helpers import free_port

    port = free_port(kind=2)
    pipe = StreamPipeline("live", "live", parse_source(f"udp://127.0.0.1:{port}"),
                          Settings(asr_model="tiny.en"), models)
    pipe.start()
    assert pipe.wait_ready(timeout=30)
    time.sleep(0.5)
    replay(media("jfk_inaugural_1961.flac"), f"udp://127.0.0.1:{port}", speed=4.0)
    time.sleep(1.0)  # all sent; part of it may still sit in the buffers
    pipe.stop()
    assert pipe.join(timeout=30), "stop must not hang"
    snap = pipe.snapshot()
    assert snap["state"] == "stopped"
    text = normalise(" ".join(s.text for s in StreamView.of(pipe).segments()))
    assert "ask what you can do for your country" in text, text  # the last words made it
    assert snap["media_seconds"] == pytest.approx(11.0, abs=1.0)


def test_a_dead_live_source_fails_within_the_open_timeout(models):
    from tests.support.helpers import free_port

    # A listener waits for its sender (listen_wait_s None, the default); 0 fails it at the first
    # silent open, as every live source did before streams could be added ahead of their broadcast.
    settings = Settings(asr_model="tiny.en", open_timeout_s=1.5, listen_wait_s=0)
    pipe = StreamPipeline("dead", "dead", parse_source(f"udp://127.0.0.1:{free_port(kind=2)}"),
                          settings, models)
    t0 = time.monotonic()
    pipe.start()
    assert pipe.join(timeout=20)
    elapsed = time.monotonic() - t0
    snap = pipe.snapshot()
    assert snap["state"] == "failed" and "nothing received" in snap["last_error"]
    assert elapsed < 1.5 + 3.0, f"took {elapsed:.1f} s"
    assert StreamView.of(pipe).search(pipe.embedder.encode(["anything"])[0], 3) == []


def test_a_udp_stream_added_before_its_broadcast_shows_waiting_then_ingests_it(models):
    """Issue 18: added 3 s before its sender starts, a UDP stream is not failed but ``waiting`` (in the
    status the API serves), and the broadcast, once it starts, is transcribed from its first word."""
    from tests.support.helpers import free_port

    port = free_port(kind=2)
    pipe = StreamPipeline("early", "early", parse_source(f"udp://127.0.0.1:{port}"),
                          Settings(asr_model="tiny.en", open_timeout_s=1.0), models)
    pipe.start()
    try:
        time.sleep(3.0)
        snap = pipe.snapshot()
        assert snap["state"] == "waiting" and snap["last_error"] is None, snap
        replay(media("jfk_inaugural_1961.flac"), f"udp://127.0.0.1:{port}", speed=4.0)
        time.sleep(1.0)
        assert pipe.snapshot()["state"] == "ingesting"
    finally:
        pipe.stop()
        assert pipe.join(timeout=30)
    text = normalise(" ".join(s.text for s in StreamView.of(pipe).segments()))
    assert text.startswith("and so") and "ask what you can do for your country" in text, text  # from its first word
    assert pipe.snapshot()["gaps"] == [] and pipe.snapshot()["media_seconds"] == pytest.approx(11.0, abs=1.0)


def test_stop_while_a_file_is_still_queued_does_not_hang(models):
    pipe = StreamPipeline("m", "m", parse_source(str(media("manifesto_audiobook_titlecard.mp4"))),
                          Settings(asr_model="tiny.en", pace="realtime"), models)
    pipe.probe()
    pipe.start()
    time.sleep(3.0)
    stopper = threading.Thread(target=pipe.stop)
    stopper.start()
    assert pipe.join(timeout=30)
    stopper.join(5)
    snap = pipe.snapshot()
    assert snap["state"] == "stopped" and snap["media_seconds"] < 10
