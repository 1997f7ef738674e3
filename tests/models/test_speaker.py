"""The speaker encoder on real voices (resemblyzer's GE2E weights, network and mel re-declared in
manta_models/perception/speaker.py): the same voice scores clearly above two different ones, and a
stream made of Kennedy, the LibriVox reader and Kennedy again is told apart into exactly two
speakers, with the turns where the voices change."""

from __future__ import annotations

import numpy as np
import pytest

from manta_models.perception.speaker import SpeakerEncoder, available, mel_spectrogram, partial_slices
from streaming.ingest.speakers import SpeakerStage
from streaming.records import SAMPLE_RATE, AudioChunk, MicroSegment, Word
from streaming.source.audio_chunks import decode_audio
from tests.support.helpers import media

pytestmark = pytest.mark.skipif(not available(), reason="resemblyzer is not installed (pip install --no-deps "
                                                        "resemblyzer==0.1.4)")
LIBRIVOX = ("0870", "0880", "0890", "0920", "0930")
MICRO_S = 3.0


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return SpeakerEncoder(threads=1)


def clips(audio: np.ndarray, seconds: float = MICRO_S) -> list[np.ndarray]:
    n = int(seconds * SAMPLE_RATE)
    return [audio[i:i + n] for i in range(0, len(audio) - n // 2, n)]


@pytest.fixture(scope="module")
def voices() -> dict[str, np.ndarray]:
    return {"jfk": decode_audio(media("jfk_inaugural_1961.flac")),
            "reader": np.concatenate([decode_audio(media(f"librivox_sense_and_sensibility_{k}.wav"))
                                      for k in LIBRIVOX]),
            "narrator": decode_audio(media("manifesto_audiobook_titlecard.mp4"), seconds=25.0)}


def test_mel_and_partials_have_resemblyzers_shapes():
    assert mel_spectrogram(np.zeros(SAMPLE_RATE, np.float32)).shape == (101, 40)  # 1 + 16000 / 160
    assert [(s.start, s.stop) for s in partial_slices(3 * SAMPLE_RATE)] == [(0, 160), (77, 237), (154, 314)]
    assert len(partial_slices(SAMPLE_RATE // 2)) == 1  # too short for one partial: one, padded


def test_same_speaker_scores_clearly_above_different_speakers(encoder, voices):
    whole = encoder.embed([voices["jfk"], voices["reader"][:len(voices["reader"]) // 2],
                           voices["reader"][len(voices["reader"]) // 2:], voices["narrator"]])
    assert np.allclose(np.linalg.norm(whole, axis=1), 1.0, atol=1e-5)
    same = float(whole[1] @ whole[2])  # the reader against the reader
    different = [float(whole[i] @ whole[j]) for i, j in ((0, 1), (0, 2), (0, 3), (1, 3), (2, 3))]
    assert same > max(different) + 0.1, (same, different)
    # Per ~3 s micro segment too: each one nearer its own speaker's other segments than any other's.
    per = {k: encoder.embed(clips(v)) for k, v in voices.items()}
    for k, vecs in per.items():
        own = vecs @ vecs.T
        own_mean = (own.sum() - len(vecs)) / (len(vecs) * (len(vecs) - 1))
        for other, ovecs in per.items():
            if other != k:
                assert own_mean > float((vecs @ ovecs.T).mean()) + 0.1, (k, other)


def test_too_short_or_silent_audio_has_no_voice(encoder):
    got = encoder.embed([np.zeros(SAMPLE_RATE, np.float32), np.ones(100, np.float32)])
    assert not got.any()
    with pytest.raises(ValueError):
        encoder.embed([np.zeros((2, 100), np.float32)])
    with pytest.raises(TypeError):
        encoder.embed(np.zeros(SAMPLE_RATE, np.float32))  # type: ignore[arg-type]


def test_kennedy_reader_kennedy_is_two_speakers_with_turns_at_the_joins(encoder, voices):
    parts = [voices["jfk"], voices["reader"], voices["jfk"]]
    audio = np.concatenate(parts)
    joins = np.cumsum([len(p) / SAMPLE_RATE for p in parts])[:-1]
    stage = SpeakerStage(encoder.embed)
    for i in range(0, len(audio), SAMPLE_RATE // 2):  # 0.5 s chunks, as a source delivers them
        stage.on_audio(AudioChunk(audio[i:i + SAMPLE_RATE // 2], i / SAMPLE_RATE, 0.0))
    total = len(audio) / SAMPLE_RATE
    segments = []
    t, seq = 0.0, 0
    while t < total:  # micro segments of ~3 s, each with one word spanning its speech
        t1 = min(total, t + MICRO_S)
        segments.append(MicroSegment("mix", seq, t, t1, (Word(" word", t, t1),)))
        t, seq = t1, seq + 1
    labelled = []
    for i in range(0, len(segments), 2):  # committed two at a time, as the pipeline does
        labelled += stage.label(segments[i:i + 2])[0]
    spoken = [s for s in labelled if s.speaker]
    assert {s.speaker for s in spoken} == {"S1", "S2"}, [s.speaker for s in labelled]
    changes = [b.t0 for a, b in zip(spoken, spoken[1:]) if a.speaker != b.speaker]
    assert len(changes) == 2, [(s.t0, s.speaker) for s in labelled]
    for got, want in zip(changes, joins):
        assert abs(got - want) <= MICRO_S, (changes, joins)
    assert spoken[0].speaker == spoken[-1].speaker == "S1"  # Kennedy again is Kennedy


# -- end to end: ingest labels segments, the store keeps them, questions are answered from them ------

def _wav(path, audio: np.ndarray) -> str:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return str(path)


def _ingest(source: str, models, store=None):
    from streaming.ingest.pipeline import StreamPipeline
    from streaming.settings import Settings
    from streaming.source.media import parse_source

    pipe = StreamPipeline("mix", "mix", parse_source(source), Settings(asr_model="tiny.en"), lambda: models,
                          store=store)
    pipe.probe()
    pipe.start()
    assert pipe.join(timeout=120)
    return pipe


@pytest.fixture(scope="module")
def asr_embedder():
    from manta_models.perception.asr import WhisperASR
    from manta_models.perception.embed import TextEmbedder

    return WhisperASR("tiny.en"), TextEmbedder()


def test_a_two_voice_stream_is_ingested_as_two_speakers_and_answered(encoder, voices, asr_embedder, tmp_path):
    from streaming.interfaces import Models
    from streaming.memory.store import StreamStore
    from streaming.question.timewords import TimeIntent
    from streaming.search.retrieve import RetrievalPlan, retrieve
    from streaming.search.view import StreamView

    parts = [voices["jfk"], voices["reader"], voices["jfk"]]
    joins = np.cumsum([len(p) / SAMPLE_RATE for p in parts])[:-1]
    source = _wav(tmp_path / "mix.wav", np.concatenate(parts))
    store = StreamStore(tmp_path / "mix.sqlite", new=True)
    pipe = _ingest(source, Models(*asr_embedder, speaker=encoder), store)
    assert pipe.snapshot()["state"] == "finished"
    segs = StreamView.of(pipe).segments()
    labelled = [s for s in segs if s.speaker]
    assert {s.speaker for s in labelled} == {"S1", "S2"}, [(s.t0, s.speaker, s.text) for s in segs]
    changes = [b.t0 for a, b in zip(labelled, labelled[1:]) if a.speaker != b.speaker]
    assert len(changes) == 2 and all(abs(c - j) <= MICRO_S for c, j in zip(changes, joins)), (changes, joins)

    plan = RetrievalPlan(None, 10, frozenset({"speech"}), speakers="count")
    count = retrieve(StreamView.of(pipe), plan).candidates
    assert count[0].evidence.text.startswith("two speakers")
    change = retrieve(StreamView.of(pipe), RetrievalPlan(None, 10, frozenset({"speech"}), speakers="change"))
    assert abs(change.candidates[0].evidence.start - joins[0]) <= MICRO_S
    at = retrieve(StreamView.of(pipe), RetrievalPlan(None, 10, frozenset({"speech"}), speakers="at",
                                                     time=TimeIntent(at=float(joins[0] + 5.0))))
    assert [c.evidence.text.split(":")[0] for c in at.candidates] == ["S2 speaks"]

    # A restart: the stored labels and voices come back, and the same voices keep the same labels.
    store.close()
    again = StreamStore(tmp_path / "mix.sqlite")
    restored = again.load("mix")
    assert [s.speaker for s in restored.segments] == [s.speaker for s in segs]
    assert set(restored.voices) == {s.seq for s in labelled}
    # The stream's actor starting again over that store: labels searchable, centroids rebuilt.
    back = _ingest(source, Models(*asr_embedder, speaker=encoder), again)
    assert [s.speaker for s in StreamView.of(back).segments()] == [s.speaker for s in segs]
    assert back.speakers.clusters.labels == ["S1", "S2"] and back.speakers.info() == {"speakers_next": 3}
    again.close()


def test_one_voice_is_one_speaker_and_no_speaker_model_means_no_labels(encoder, asr_embedder):
    from streaming.interfaces import Models
    from streaming.search.view import StreamView

    jfk = str(media("jfk_inaugural_1961.flac"))
    on = StreamView.of(_ingest(jfk, Models(*asr_embedder, speaker=encoder))).segments()
    assert {s.speaker for s in on if s.speaker} == {"S1"}
    off = StreamView.of(_ingest(jfk, Models(*asr_embedder))).segments()
    assert off and all(s.speaker is None for s in off)
    assert [s.text for s in off] == [s.text for s in on]  # the transcript is the same either way


def test_the_voice_service_serves_a_streams_client():
    from manta_models.serving.shared import SharedModels
    from streaming.settings import Settings

    shared = SharedModels(Settings(speaker_model="resemblyzer"), services=["voice"])
    try:
        models = shared.for_stream("s")
        got = models.speaker.embed([np.zeros(SAMPLE_RATE, np.float32), np.random.default_rng(0).normal(
            scale=0.1, size=2 * SAMPLE_RATE).astype(np.float32)])
        assert got.shape == (2, 256) and not got[0].any() and abs(np.linalg.norm(got[1]) - 1) < 1e-5
    finally:
        shared.close()
    off = SharedModels(Settings(speaker_model="off"), services=["text"])
    assert "voice" not in off.start().services
    off.close()
