"""Process faults: the Serve app restarted under running streams, a model that crashes mid-stream,
models that cannot load. (A stream actor killed mid-stream: tests/test_stream_state.py.)"""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.support.helpers import media, normalise
from manta_models.perception.asr import WhisperASR
from manta_models.perception.embed import TextEmbedder
from streaming.interfaces import Models
from streaming.ingest.pipeline import StreamPipeline
from streaming.settings import Settings
from streaming.source.media import parse_source
from streaming.search.view import StreamView

JFK_QUESTION = "What did the president ask his fellow Americans?"


@pytest.mark.slow
def test_a_restarted_serve_app_finds_its_streams_and_answers_the_same(service):
    from ray import serve

    from actors import runtime

    sid = service.add(str(media("jfk_inaugural_1961.flac")), name="pf-jfk")
    assert service.wait(sid)["state"] == "finished"
    before = service.ask(JFK_QUESTION, streams=[sid], generate=False)
    segments = service.get(f"/v1/streams/{sid}/segments").json()["segments"]
    # A stream still ingesting while the API goes away: its actor does not depend on the API.
    r = service.post("/v1/streams", json={"source": str(media("asterisk_demo_congrats.wav")),
                                          "name": "pf-live", "pace": "realtime"})
    assert r.status_code == 201, r.text
    service.wait("pf-live", states=("ingesting",), timeout=120)

    serve.delete(runtime.APP_NAME)
    with pytest.raises(Exception):  # noqa: B017 - the API is really gone: refused, or 404/503
        r = service.get("/v1/streams", timeout=5)
        r.raise_for_status()
    runtime.deploy(service.settings)
    deadline = time.monotonic() + 120
    while True:
        try:
            if service.get("/healthz", timeout=5).status_code == 200:
                break
        except Exception:  # noqa: BLE001 - not listening yet
            pass
        assert time.monotonic() < deadline, "the app did not come back"
        time.sleep(0.5)

    listed = {s["id"]: s for s in service.get("/v1/streams").json()["streams"]}
    assert listed[sid]["state"] == "finished", listed
    assert listed["pf-live"]["state"] in ("ingesting", "finished"), listed  # 30 s: it may be done already
    assert service.get(f"/v1/streams/{sid}/segments").json()["segments"] == segments
    after = service.ask(JFK_QUESTION, streams=[sid], generate=False)
    assert after["answer"] == before["answer"]
    assert [(e["start"], e["end"]) for e in after["evidence"]] == [(e["start"], e["end"]) for e in before["evidence"]]
    # The live stream went on through the restart and ends whole.
    status = service.wait("pf-live", timeout=120)
    assert status["state"] == "finished" and status["media_seconds"] == pytest.approx(30.28, abs=0.1)
    spoken = normalise(" ".join(s["text"] for s in service.get("/v1/streams/pf-live/segments").json()["segments"]))
    assert spoken.count("congratulations") == 1 and "standard telephone" in spoken, spoken


@pytest.mark.slow
def test_models_that_cannot_load_fail_the_stream_with_the_reason_and_harm_no_other(service, tmp_path):
    broken = tmp_path / "broken-whisper"
    broken.mkdir()
    (broken / "model.bin").write_bytes(b"not a CTranslate2 model")
    (broken / "config.json").write_text("{}")
    healthy = service.add(str(media("librivox_sense_and_sensibility_0870.wav")), name="pf-healthy")
    # Per-stream settings cannot name models, so this stream's actor gets a service whose ASR folder is
    # broken: the directory creates actors from the app's settings, which the test swaps for one stream.
    from actors.directory import StreamDirectory

    directory = StreamDirectory(service.settings.model_copy(update={"asr_model": str(broken)}))
    import asyncio

    sid = asyncio.run(directory.create("pf-broken", str(media("jfk_inaugural_1961.flac")), "jfk"))
    status = service.wait(sid, timeout=120)
    assert status["state"] == "failed", status
    assert status["last_error"].startswith("loading models failed:"), status
    assert service.wait(healthy)["state"] == "finished"


class CrashingASR:
    """Stands in for a recogniser whose native code fails mid-stream (CTranslate2 raising, say): the
    real tiny.en until its third window, then an error. A deliberate fault, not a mock of anything
    outside the machine."""

    def __init__(self, real: WhisperASR, fail_on: int = 3):
        self.real, self.calls, self.fail_on = real, 0, fail_on

    def speech_spans(self, audio: np.ndarray):
        return self.real.speech_spans(audio)

    def transcribe_window(self, audio, prompt=None, one_window=True, fit=False):
        self.calls += 1
        if self.calls >= self.fail_on:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self.real.transcribe_window(audio, prompt, one_window, fit)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_a_model_crash_mid_stream_is_a_stream_error_and_keeps_what_was_indexed():
    real = WhisperASR("tiny.en")
    asr = CrashingASR(real)
    models = Models(asr, TextEmbedder())
    settings = Settings(asr_model="tiny.en", pace="realtime", asr_live_min_piece_s=1.5)
    pipe = StreamPipeline("crash", "crash", parse_source(str(media("manifesto_audiobook_titlecard.mp4"))),
                          settings, lambda: models)
    pipe.probe()
    pipe.start()
    assert pipe.join(timeout=90), "a crashed model must end the stream, not hang it"
    snap = pipe.snapshot()
    assert snap["state"] == "failed" and snap["last_error"].startswith("processing failed: RuntimeError: CUDA"), snap
    assert asr.calls == asr.fail_on
    # What was committed before the crash is still searchable.
    kept = StreamView.of(pipe).segments()
    assert kept and snap["segments"] == len(kept)
    hit = StreamView.of(pipe).search(pipe.embedder.encode([normalise(kept[0].text)])[0], 1)
    assert hit and hit[0][0].seq == kept[0].seq
