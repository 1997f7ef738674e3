"""Several streams on one copy of each model (manta_models/serving/shared.py), in a plain process:
each stream gets exactly the transcript it gets alone, its own language, and the services batch
their requests. Real PyAV, Whisper base, MiniLM, EfficientNet and RapidOCR; no Ray."""

from __future__ import annotations

import pytest

from manta_models.loader import ModelSet
from manta_models.serving.shared import SharedModels
from streaming.ingest.pipeline import StreamPipeline
from streaming.search.view import StreamView
from streaming.settings import Settings
from streaming.source.media import parse_source
from tests.support.helpers import media

pytestmark = pytest.mark.slow

CLIPS = {"jfk": "jfk_inaugural_1961.flac", "congrats": "asterisk_demo_congrats.wav",
         "bunny": "big_buck_bunny_0_30.webm"}  # two speakers, and pictures with a title and no speech


def ingest(clips: dict, loader_for) -> dict[str, list[tuple]]:
    settings = Settings()
    pipes = {name: StreamPipeline(name, name, parse_source(str(media(f))), settings, loader_for(name))
             for name, f in clips.items()}
    for p in pipes.values():
        p.probe()
        p.start()
    for name, p in pipes.items():
        assert p.join(timeout=600), f"{name} did not finish"
        assert p.snapshot()["state"] == "finished", p.snapshot()
    return {name: [(s.seq, round(s.t0, 2), round(s.t1, 2), s.text) for s in StreamView.of(p).segments()]
            for name, p in pipes.items()}


@pytest.fixture(scope="module")
def model_set():
    return ModelSet(Settings())


def test_streams_sharing_one_set_of_models_get_what_each_gets_alone(model_set):
    alone = {}
    asr = model_set.shared()[0]
    for name, file in CLIPS.items():  # one at a time, each with the models to itself
        # ModelSet's streams share one recogniser and so its detected language: start each afresh,
        # as a stream actor (a process of its own) does.
        asr.language = asr.configured_language
        alone |= ingest({name: file}, lambda _name: model_set.for_stream)
    shared = SharedModels(Settings(), model_set)
    try:
        together = ingest(CLIPS, lambda name: (lambda: shared.for_stream(name)))
        stats = {st.name: st for st in shared.stats()}
    finally:
        shared.close()
    for name in CLIPS:
        assert together[name] == alone[name], name
    assert any(text for *_, text in together["jfk"]) and any(text for *_, text in together["congrats"])
    # Every model call went through the shared services (one recognition at a time); whether two
    # streams' requests met in one batch is timing (tests/models/test_batcher.py pins the batching).
    assert stats["speech"].max_batch_seen == 1 and stats["speech"].items > 0
    assert stats["text"].items > 0 and stats["frames"].items > 0


def test_each_stream_keeps_its_own_language(model_set):
    shared = SharedModels(Settings(), model_set)
    try:
        a, b = shared.for_stream("a"), shared.for_stream("b")
        from streaming.source.audio_chunks import decode_audio

        audio = decode_audio(media("jfk_inaugural_1961.flac"))
        words, _ = a.asr.transcribe_window(audio[:16000 * 8], one_window=True)
        assert words and a.asr.language == "en"
        assert b.asr.language is None  # b has heard nothing: nothing was decided for it
    finally:
        shared.close()


def test_a_service_that_serves_one_model_loads_only_that_model():
    from manta_models.serving.shared import ServiceFacts

    text = SharedModels(Settings(), services=["text"])
    try:
        facts = text.start()
        assert facts.services == ("text",) and facts.text_dim == 384 and facts.frame_dim is None
        assert text._set.loaded() == {"embedder"}  # no Whisper, no EfficientNet, no OCR loaded
        assert text.call("text", ["hello"], "a").shape == (1, 384)
    finally:
        text.close()
    speech = ServiceFacts(("speech", "vad"), None, None, "en", False)
    frames = ServiceFacts(("frames",), None, 1280, None, False)
    merged = ServiceFacts.merge([speech, facts, frames])
    assert merged == ServiceFacts(("speech", "vad", "text", "frames"), 384, 1280, "en", False)


def test_an_unknown_service_name_is_refused():
    from manta_models.serving.shared import UnknownService

    with pytest.raises(UnknownService, match="speach"):
        SharedModels(Settings(), services=["speach"])
