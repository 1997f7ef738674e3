"""Where a stream's spoken language changes: the recogniser is asked to detect again every so
often, and each change is kept with its time, through a restart."""

from __future__ import annotations

import pytest

from streaming.ingest.languages import MIN_PIECE_S, LanguageTrack


class Recogniser:
    """What LanguageTrack reads and sets of a recogniser: ``language`` (None: detect on the next
    piece) and ``configured_language``. Detection here returns what the audio "is"."""

    def __init__(self, configured=None):
        self.configured_language = configured
        self.language = configured
        self.detections = 0

    def hear(self, truth: str) -> None:
        if self.language is None:
            self.detections += 1
            self.language = truth


def feed(track: LanguageTrack, asr: Recogniser, pieces):
    t = 0.0
    for truth, secs in pieces:
        track.before_piece(asr, secs)
        asr.hear(truth)
        track.after_piece(asr, secs, t)
        t += secs


def test_a_switch_is_found_at_the_next_check_and_kept_with_its_time():
    asr, track = Recogniser(), LanguageTrack(recheck_s=30.0)
    feed(track, asr, [("en", 5.0)] * 8 + [("es", 5.0)] * 8)  # English for 40 s, then Spanish
    # Checked at 30 s (still English) and at 60 s, which finds Spanish: a switch is found within
    # one recheck interval, and the stretch starts where it was found.
    assert track.changes == [(0.0, "en"), (60.0, "es")]
    assert asr.detections == 3  # the first piece, then one every 30 s of speech: not every piece
    assert [c for _, _, c in track.spans(80.0)] == ["en", "es"] and track.spans(80.0)[-1][1] == 80.0


def test_a_configured_language_is_never_detected_again():
    asr, track = Recogniser("en"), LanguageTrack(recheck_s=10.0)
    feed(track, asr, [("en", 5.0)] * 10)
    assert asr.detections == 0 and track.changes == [(0.0, "en")]


def test_short_pieces_wait_for_a_longer_one_to_check():
    asr, track = Recogniser(), LanguageTrack(recheck_s=10.0)
    feed(track, asr, [("en", 5.0)] * 3 + [("es", MIN_PIECE_S / 2)] * 4 + [("es", 5.0)])
    assert asr.detections == 3 and track.changes[-1] == (15.0 + 4 * MIN_PIECE_S / 2, "es")


def test_the_changes_survive_a_checkpoint():
    track = LanguageTrack(changes=[(0.0, "en"), (45.0, "es")])
    again = LanguageTrack.from_info({"state": "ingesting", **track.info()})
    assert again.changes == track.changes
    assert LanguageTrack.from_info(None).changes == [] and LanguageTrack.from_info({}).changes == []
    with pytest.raises(ValueError):
        LanguageTrack(recheck_s=0)


def test_a_piece_heard_with_little_confidence_is_doubted_at_most_every_ten_seconds_of_speech():
    from types import SimpleNamespace as W

    from streaming.ingest.languages import DOUBT_EVERY_S, DOUBT_P

    asr, track = Recogniser(), LanguageTrack()
    unsure = [W(probability=DOUBT_P - 0.1)] * 5
    sure = [W(probability=DOUBT_P + 0.2)] * 5
    assert not track.doubtful(asr, unsure)  # nothing detected yet: the first piece detects anyway
    asr.language = "en"
    assert not track.doubtful(asr, sure)
    assert not track.doubtful(asr, unsure[:2])  # too few words to judge
    assert track.doubtful(asr, unsure)
    track.after_piece(asr, DOUBT_EVERY_S / 2, 0.0)
    assert not track.doubtful(asr, unsure)  # not again so soon
    track.after_piece(asr, DOUBT_EVERY_S / 2, 5.0)
    assert track.doubtful(asr, unsure)
    assert not track.doubtful(Recogniser("en"), unsure)  # a configured language is not doubted


class SpeakingRecogniser(Recogniser):
    """A recogniser for IncrementalTranscriber: every sample is speech, its value says the language
    (0.1 English, 0.2 Spanish), one word per second; it notes each hearing's language told, prompt
    and the language it was heard in."""

    def __init__(self):
        super().__init__()
        self.hearings: list[tuple[str | None, str | None, str]] = []

    def speech_spans(self, audio):
        return [(0, len(audio))] if len(audio) else []

    def transcribe_window(self, audio, prompt=None, one_window=False, fit=False):
        from streaming.records import SAMPLE_RATE, Word

        told = self.language
        truth = "es" if float(audio.mean()) > 0.15 else "en"
        self.hear(truth)
        self.hearings.append((told, prompt, self.language))
        sure = 0.9 if self.language == truth else 0.4
        n = int(len(audio) / SAMPLE_RATE)
        return [Word(f" {self.language}{i}", i + 0.1, i + 0.9, sure) for i in range(n)], True


def test_a_switch_found_under_a_prompt_in_the_old_language_is_heard_again_without_it():
    """Whisper detecting a new language while prompted with the old one's text translated (seen in
    CI: "El puente del puerto…" came out as "the bridge will be…"): that piece is heard again
    without the prompt, and after the switch the prompt starts afresh in the new language. A check
    that finds the same language keeps its prompt."""
    import numpy as np

    from streaming.ingest.transcript import IncrementalTranscriber
    from streaming.records import SAMPLE_RATE, AudioChunk

    audio = np.concatenate([np.full(20 * SAMPLE_RATE, 0.1, np.float32), np.full(20 * SAMPLE_RATE, 0.2, np.float32)])
    asr, track = SpeakingRecogniser(), LanguageTrack(recheck_s=8.0)
    tr = IncrementalTranscriber(asr, max_buffer_s=6.0, min_piece_s=2.0, tail_hold_s=1.0, languages=track)
    step = SAMPLE_RATE // 2
    for i in range(0, len(audio), step):
        tr.push(AudioChunk(audio[i:i + step], i / SAMPLE_RATE, 0.0))
    tr.flush()
    h = asr.hearings
    assert [c for _, c in track.changes] == ["en", "es"] and 20.0 - 6.0 <= track.changes[1][0] <= 20.0 + 8.0 + 6.0
    switched = [i for i, (told, prompt, heard) in enumerate(h[:-1])
                if i and told is None and prompt and heard != h[i - 1][2]]
    assert switched, h  # the switch was found under an English prompt: the case exercised
    assert all(h[i + 1] == ("es", None, "es") for i in switched), h  # heard again, unprompted
    assert any(told is None and prompt and heard == "en" for told, prompt, heard in h), h  # kept its prompt
    spanish_prompts = [p for _, p, _ in h if p and " es" in p]
    assert spanish_prompts and not any(" en" in p for p in spanish_prompts)  # the old words go with the switch
