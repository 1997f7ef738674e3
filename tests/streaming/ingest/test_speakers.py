"""Speaker labels from voice vectors: online clustering into S1, S2, … in order of first appearance,
labels that never change once given, the audio a segment's voice is cut from, and a restart that
keeps the same voices under the same labels (synthetic vectors; tests/models/test_speaker.py runs
the real encoder on real voices)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.ingest.speakers import AudioRing, SpeakerClusters, SpeakerStage, speech_span
from streaming.records import SAMPLE_RATE, AudioChunk, MicroSegment, Word

DIM = 256


def voices(n: int, seed: int) -> np.ndarray:
    """``n`` orthogonal unit "voices" (different speakers sit far apart, as real ones do)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(DIM, n)))
    return q.T.astype(np.float32)


def utterance(voice: np.ndarray, rng: np.random.Generator, noise: float = 0.03) -> np.ndarray:
    """One segment of a voice: the voice plus per-segment noise (short segments are noisy)."""
    v = voice + rng.normal(scale=noise, size=voice.shape)
    return (v / np.linalg.norm(v)).astype(np.float32)


@settings(max_examples=60, deadline=None)
@given(order=st.lists(st.integers(0, 3), min_size=1, max_size=40), seed=st.integers(0, 10_000))
def test_each_voice_gets_one_label_in_order_of_first_appearance(order, seed):
    rng = np.random.default_rng(seed)
    people = voices(4, seed)
    clusters = SpeakerClusters()
    labels = [clusters.assign(utterance(people[who], rng)) for who in order]
    first_seen = list(dict.fromkeys(order))
    expected = {who: f"S{i + 1}" for i, who in enumerate(first_seen)}
    assert labels == [expected[who] for who in order]
    assert len(clusters) == len(first_seen)


def test_one_voice_however_long_stays_one_speaker():
    rng = np.random.default_rng(1)
    clusters = SpeakerClusters()
    voice = voices(1, 1)[0]
    assert {clusters.assign(utterance(voice, rng, noise=0.04)) for _ in range(500)} == {"S1"}


def test_a_zero_vector_is_no_voice_and_gets_no_label():
    clusters = SpeakerClusters()
    assert clusters.assign(np.zeros(DIM, np.float32)) is None
    assert clusters.assign(np.full(DIM, np.nan, np.float32)) is None
    assert len(clusters) == 0


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.5, 2.0])
def test_a_threshold_that_is_no_cosine_is_refused(threshold):
    with pytest.raises(ValueError):
        SpeakerClusters(threshold)


@pytest.mark.parametrize("label", ["", "speaker", "S0", "s1", "S1; DROP", None])
def test_a_stored_label_that_is_not_ours_is_refused(label):
    with pytest.raises(ValueError):
        SpeakerClusters().add(label, voices(1, 0)[0])


def seg(seq: int, t0: float, t1: float, words: bool = True, speaker: str | None = None) -> MicroSegment:
    w = (Word(" hello", t0 + 0.1, t1 - 0.1),) if words else ()
    return MicroSegment("s", seq, t0, t1, w, speaker=speaker)


def test_too_little_speech_is_not_told_apart():
    assert speech_span(seg(0, 0.0, 3.0)) == pytest.approx((0.1, 2.9))
    assert speech_span(seg(0, 0.0, 1.2)) is None  # 1.0 s of words
    assert speech_span(seg(0, 0.0, 3.0, words=False)) is None


def test_the_ring_cuts_a_span_across_chunks_and_forgets_what_is_committed():
    ring = AudioRing()
    for i in range(10):  # 1 s chunks whose samples are their own second
        ring.add(AudioChunk(np.full(SAMPLE_RATE, i, np.float32), float(i), 0.0))
    clip = ring.clip(2.5, 4.5)
    assert len(clip) == 2 * SAMPLE_RATE
    assert set(np.unique(clip)) == {2.0, 3.0, 4.0}
    ring.trim(6.0)
    assert len(ring.clip(0.0, 4.0)) == 0 and len(ring.clip(5.0, 6.0)) == SAMPLE_RATE


def stage_for(people: np.ndarray, who_at: dict[int, int]):
    """A stage whose 'encoder' reads the speaker from the clip's samples (each second of audio
    carries the number of who speaks then)."""
    rng = np.random.default_rng(0)

    def embed(clips):
        return np.stack([utterance(people[int(np.median(c))], rng) for c in clips])

    stage = SpeakerStage(embed)
    for t, who in who_at.items():
        stage.on_audio(AudioChunk(np.full(SAMPLE_RATE, who, np.float32), float(t), 0.0))
    return stage


def test_segments_are_labelled_by_voice_and_short_ones_left_unlabelled():
    people = voices(2, 3)
    stage = stage_for(people, {t: (0 if t < 6 or t >= 12 else 1) for t in range(18)})
    segments = [seg(i, 3.0 * i, 3.0 * i + 3.0) for i in range(6)] + [seg(6, 18.0, 18.5)]
    labelled, vectors = stage.label(segments)
    assert [s.speaker for s in labelled] == ["S1", "S1", "S2", "S2", "S1", "S1", None]
    assert vectors[-1] is None and all(v is not None for v in vectors[:-1])
    assert stage.info() == {"speakers_next": 3}


def test_a_restart_keeps_the_same_voices_under_the_same_labels():
    people = voices(3, 4)
    stage = stage_for(people, {t: (0 if t < 6 else 1) for t in range(12)})
    labelled, vectors = stage.label([seg(i, 3.0 * i, 3.0 * i + 3.0) for i in range(4)])
    stored = {s.seq: v for s, v in zip(labelled, vectors) if v is not None}

    again = stage_for(people, {t: who for t, who in zip(range(12, 21), [1, 1, 1, 0, 0, 0, 2, 2, 2])})
    again.restore(labelled, stored, stage.info()["speakers_next"])
    later, _ = again.label([seg(4 + i, 12.0 + 3 * i, 15.0 + 3 * i) for i in range(3)])
    assert [s.speaker for s in later] == ["S2", "S1", "S3"]  # a new voice after a restart is S3


def test_labels_are_never_reused_after_retention_dropped_a_speaker():
    people = voices(2, 5)
    stage = stage_for(people, {t: 1 for t in range(3)})
    stage.restore([], {}, next_label=4)  # S1…S3 existed once; their segments are gone
    labelled, _ = stage.label([seg(0, 0.0, 3.0)])
    assert labelled[0].speaker == "S4"


def test_a_failing_speaker_model_leaves_segments_unlabelled_not_lost():
    def broken(clips):
        raise RuntimeError("voice service gone")

    stage = SpeakerStage(broken)
    stage.on_audio(AudioChunk(np.zeros(3 * SAMPLE_RATE, np.float32), 0.0, 0.0))
    labelled, vectors = stage.label([seg(0, 0.0, 3.0)])
    assert [(s.seq, s.speaker) for s in labelled] == [(0, None)] and vectors == [None]


def test_without_the_package_the_speaker_model_is_off(monkeypatch):
    import importlib.util

    from streaming.settings import Settings

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "resemblyzer" else real(name, *a))
    assert Settings().speaker_model == "off"
    assert Settings(speaker_model="off").speaker_model == "off"
    with pytest.raises(ValueError):
        Settings(speaker_model="pyannote")
