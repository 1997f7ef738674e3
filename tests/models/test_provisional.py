"""Provisional text on a live-paced stream in a plain process: real PyAV, Whisper tiny.en for both
the final and the provisional pass, MiniLM, FAISS. What a monitoring user sees: what was just said
is searchable seconds before the final transcript, and never twice."""

from __future__ import annotations

import time

import pytest

from manta_models.perception.asr import WhisperASR
from manta_models.perception.embed import TextEmbedder
from streaming.ingest.pipeline import StreamPipeline
from streaming.interfaces import Models
from streaming.search.retrieve import RetrievalPlan, retrieve
from streaming.search.view import StreamView
from streaming.settings import Settings
from streaming.source.media import parse_source
from tests.support.helpers import media, normalise

pytestmark = pytest.mark.slow


def test_what_was_just_said_is_searchable_before_it_is_final_and_never_twice():
    embedder = TextEmbedder()
    models = Models(WhisperASR("tiny.en"), embedder, asr_provisional=WhisperASR("tiny.en", threads=1))
    settings = Settings(asr_model="tiny.en", pace="realtime", frame_fps=0, visual_model="off", ocr="off")
    pipe = StreamPipeline("live", "live", parse_source(str(media("manifesto_audiobook_titlecard.mp4"))),
                          settings, lambda: models)
    query = embedder.encode(["a spectre is haunting Europe"])[0]
    pipe.start()
    first_provisional = first_final = None
    overlaps = []
    try:
        assert pipe.wait_ready(timeout=60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and first_final is None:
            view = StreamView.of(pipe)
            final = normalise(" ".join(s.text for s in view.segments()))
            if "haunting europe" in final:
                first_final = pipe.status.media_seconds
            found = retrieve(view, RetrievalPlan(query, k=3, kinds=frozenset({"speech"})))
            heard = [c.evidence for c in found.candidates if c.evidence.provisional]
            for e in heard:  # provisional text only ever covers what is not final yet
                if e.start < view.committed_seconds - 0.06:
                    overlaps.append((e.start, view.committed_seconds))
            if first_provisional is None and any("haunting europe" in normalise(e.text) for e in heard):
                first_provisional = pipe.status.media_seconds
                # The API marks it, and says so in the answer's own words.
                assert heard[0].to_dict()["provisional"] is True
            time.sleep(0.25)
    finally:
        pipe.stop()
        assert pipe.join(timeout=60)
    print(f"'haunting Europe' (said 21-23 s): provisional at media {first_provisional} s, "
          f"final at {first_final} s; passes {pipe.provisional_worker.counters()}")
    assert first_provisional is not None, "the phrase was never searchable as provisional text"
    assert first_final is None or first_provisional < first_final
    assert not overlaps, f"provisional text overlapped final text: {overlaps[:3]}"
    # Once stopped, everything heard is final: no provisional text is left to answer from.
    assert pipe.provisional_now() is None and pipe.snapshot()["provisional"] is None


def test_the_fitted_encoder_window_hears_the_same_words_faster():
    """Provisional passes and live pieces encode only their audio (>= 10 s), not Whisper's 30 s
    window: the human transcripts of the LibriVox clips are heard as well either way."""
    from streaming.source.audio_chunks import decode_audio

    truth = {}
    for line in media("librivox_sense_and_sensibility.transcription").read_text().splitlines():
        text, _, clip = line.rpartition("(")
        truth[clip.strip(") ").rsplit("-", 1)[1]] = normalise(text.replace("<s>", "").replace("</s>", ""))
    asr = WhisperASR("tiny.en", threads=1)
    heard, spent = {False: [], True: []}, {False: 0.0, True: 0.0}
    for clip in ("0870", "0890", "0920"):
        audio = decode_audio(media(f"librivox_sense_and_sensibility_{clip}.wav"))
        for fit in (False, True):
            asr.transcribe_window(audio, fit=fit)  # warm
            t = time.perf_counter()
            words, complete = asr.transcribe_window(audio, fit=fit)
            spent[fit] += time.perf_counter() - t
            assert complete and words[-1].end <= len(audio) / 16000 + 0.05
            heard[fit].append((truth[clip], normalise("".join(w.text for w in words))))
    for (want, full), (_, fitted) in zip(heard[False], heard[True]):
        common = set(want.split())
        assert len(common & set(fitted.split())) >= len(common & set(full.split())) - 1, (want, full, fitted)
    print(f"30 s window {spent[False]:.2f} s, fitted {spent[True]:.2f} s for 3 clips")
    # Speed is measured in bench/freshness.py (docs/BENCHMARKS.md), not asserted here.
