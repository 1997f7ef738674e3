"""Turn an endless audio stream into committed, word-timed text, transcribing each sample ~once.

Audio collects in a bounded buffer. Voice activity detection finds pauses; once at least
``min_piece_s`` of speech sits before a long enough pause, everything up to that pause is transcribed
once and committed whole (its words are final: Whisper heard all of it in context). Speech that runs
on without a pause is cut when the buffer is full: words well before the cut are committed and the
tail waits for the next pass, so only a short overlap is ever transcribed twice and memory never
grows past ``max_buffer_s``.

Whisper's encoder always pays for a 30 s window, so each call should carry as much audio as latency
allows: recorded files use long pieces (cost close to one pass), live streams short ones (freshness).
"""

from __future__ import annotations

import numpy as np

from streaming.ingest.languages import mean_probability
from streaming.ingest.provisional import PendingAudio
from streaming.interfaces import SpeechRecognizer
from streaming.records import SAMPLE_RATE, AudioChunk, Word
from streaming.settings import Settings

PAD_S = 0.2  # audio kept around speech so Whisper hears word onsets and endings
WINDOW_S = 29.5  # Whisper hears 30 s per encoder pass; a longer piece costs a second, mostly empty one
VAD_OVERLAP_S = 1.0  # re-examined audio, so an utterance crossing a check boundary is seen whole


def transcriber_profile(settings: Settings, live_paced: bool) -> dict:
    """Live or real-time-paced streams trade ASR efficiency for freshness; files do the opposite."""
    if live_paced:  # a live piece (<= 8 s) fits one shorter window: encode just that (``fit``)
        first = min(settings.asr_live_first_piece_s, settings.asr_live_max_buffer_s) or None
        return dict(max_buffer_s=settings.asr_live_max_buffer_s, min_piece_s=settings.asr_live_min_piece_s,
                    check_every_s=0.5, one_window=settings.asr_live_fit_window, fit=settings.asr_live_fit_window,
                    first_piece_s=first)
    return dict(max_buffer_s=settings.asr_max_buffer_s, min_piece_s=settings.asr_min_piece_s,
                check_every_s=settings.asr_check_every_s, one_window=True)


class IncrementalTranscriber:
    def __init__(self, asr: SpeechRecognizer, *, max_buffer_s: float = 15.0,
                 min_piece_s: float = 2.0, min_silence_s: float = 0.5, tail_hold_s: float = 1.5,
                 check_every_s: float = 1.0, prompt_chars: int = 200, one_window: bool = False,
                 fit: bool = False, first_piece_s: float | None = None, languages=None):
        if not 2.0 <= max_buffer_s <= 30.0:
            raise ValueError("max_buffer_s must be within [2, 30] (Whisper sees 30 s at most)")
        if not 0.0 <= min_piece_s <= max_buffer_s:
            raise ValueError("min_piece_s must be within [0, max_buffer_s]")
        if tail_hold_s >= max_buffer_s / 2:
            raise ValueError("tail_hold_s must be less than half of max_buffer_s")
        if first_piece_s is not None and not 2 * tail_hold_s < first_piece_s <= max_buffer_s:
            raise ValueError("first_piece_s must be within (2 × tail_hold_s, max_buffer_s]")
        self.asr = asr
        self.languages = languages  # where the language changes (streaming/ingest/languages.py), if tracked
        self.max_samples = int(max_buffer_s * SAMPLE_RATE)
        # A stream that has just started (or come back after a gap) has nothing final yet: its first
        # piece is cut shorter, so its first words are final in seconds rather than after a full
        # buffer of unbroken speech. One extra recogniser pass per start.
        self.first_samples = int(first_piece_s * SAMPLE_RATE) if first_piece_s else self.max_samples
        self._first = True  # no piece transcribed since the start or the last discontinuity
        self.min_piece = int(min_piece_s * SAMPLE_RATE)
        self.min_silence = int(min_silence_s * SAMPLE_RATE)
        self.prompt_chars = prompt_chars
        # Recorded files: leftovers wait for the next piece (efficiency). Live: finish each piece now.
        self.one_window = one_window
        self.fit = fit  # encode only the piece's length (>= 10 s), not a 30 s window
        self._context = ""  # recent committed text, Whisper's prompt for continuity across cuts
        # Only a piece that starts mid-speech gets the prompt: after a pause it buys little, and
        # Whisper tends to skip speech that repeats its prompt (a sign-off, a chant) or to echo it.
        self._mid_speech = False
        self.tail_hold = tail_hold_s
        self.check_every = int(check_every_s * SAMPLE_RATE)
        self.pad = int(PAD_S * SAMPLE_RATE)
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_t0: float | None = None  # media time of _buf[0]
        self._since_check = 0
        self._spans: list[tuple[int, int]] = []  # speech in buffer samples, known up to _vad_done
        self._vad_done = 0
        self.committed_until = 0.0  # media time before which every word is final
        self.transcribed_seconds = 0.0  # audio handed to the recogniser (the cost driver)
        self.recovered_passes = 0  # extra passes over utterances Whisper had skipped
        self.min_skipped = int(1.0 * SAMPLE_RATE)

    @property
    def _max_now(self) -> int:
        return self.first_samples if self._first else self.max_samples

    @property
    def buffered_seconds(self) -> float:
        return len(self._buf) / SAMPLE_RATE

    def pending(self, searchable_until: float) -> PendingAudio | None:
        """The audio held past the final words, for provisional text (streaming/ingest/provisional.py);
        call it on the thread that pushes. ``searchable_until``: where final, searchable text ends
        (final words still waiting in the segmenter are not searchable yet)."""
        if self._buf_t0 is None:
            return None
        prompt = self._context if self._mid_speech and self._context else None
        # The arrays are replaced, never written to, once published: the reader may keep them.
        return PendingAudio(self._buf_t0, self._buf, tuple(self._spans), searchable_until, prompt)

    def push(self, chunk: AudioChunk) -> list[Word]:
        """Add audio; return the words that became final."""
        if self._buf_t0 is None or abs(self._buf_t0 + self.buffered_seconds - chunk.t0) > 0.05:
            # Discontinuity (first chunk, or a reconnect gap): finish what we have, start anew.
            words = self.flush()
            self._buf_t0 = chunk.t0
            self._buf = chunk.samples.astype(np.float32, copy=True)
            self._since_check = len(chunk.samples)
            self._spans, self._vad_done = [], 0
            self._first = True
        else:
            words = []
            self._buf = np.concatenate([self._buf, chunk.samples.astype(np.float32, copy=False)])
            self._since_check += len(chunk.samples)
        if self._since_check >= self.check_every or len(self._buf) >= self._max_now:
            self._since_check = 0
            words += self._step(final=False)
        return words

    def flush(self) -> list[Word]:
        """End of stream (or a gap): transcribe whatever is left."""
        if self._buf_t0 is None or len(self._buf) == 0:
            return []
        return self._step(final=True)

    def _update_spans(self) -> list[tuple[int, int]]:
        """Run VAD on the audio not yet examined (plus an overlap) and merge with what is known."""
        start = max(0, self._vad_done - int(VAD_OVERLAP_S * SAMPLE_RATE))
        fresh = [(a + start, b + start) for a, b in self.asr.speech_spans(self._buf[start:])]
        spans = [(a, min(b, start)) for a, b in self._spans if a < start and min(b, start) > a]
        for a, b in fresh:
            if spans and a - spans[-1][1] < self.min_silence:
                spans[-1] = (spans[-1][0], max(spans[-1][1], b))
            else:
                spans.append((a, b))
        self._spans, self._vad_done = spans, len(self._buf)
        return spans

    def _step(self, final: bool) -> list[Word]:
        buf = self._buf
        spans = self._update_spans()
        if not spans:
            keep = 0 if final else min(len(buf), self.pad)
            self._advance(len(buf) - keep)
            return []
        limit = max(0, spans[0][0] - self.pad) + int(WINDOW_S * SAMPLE_RATE)
        if final:  # finish everything, piece by piece while progress is made
            before = len(buf)
            words = (self._commit(spans[0][0], limit, hold_tail=True) if before > limit
                     else self._commit(spans[0][0], before, hold_tail=False))
            if 0 < len(self._buf) < before:
                words += self._step(final=True)
            return words
        # The last pause after enough speech ends the longest piece we can finish now.
        cut = silent_until = None
        for i, (_, end) in enumerate(spans):
            next_start = spans[i + 1][0] if i + 1 < len(spans) else len(buf)
            candidate = min(end + self.pad, next_start)
            if (next_start - end >= self.min_silence and end - spans[0][0] >= self.min_piece
                    and candidate <= limit):
                cut, silent_until = candidate, next_start
        if cut is not None:
            buf_t0 = self._buf_t0
            words = self._commit(spans[0][0], cut, hold_tail=False)
            # No speech before the next onset: say so, so a finished sentence need not wait for it;
            # unless Whisper left part of the piece for the next one (its words are still to come).
            if self._buf_t0 >= buf_t0 + (cut - 1) / SAMPLE_RATE:
                self.committed_until = max(self.committed_until, buf_t0 + silent_until / SAMPLE_RATE)
            return words
        if len(buf) >= self._max_now or len(buf) > limit:
            return self._commit(spans[0][0], min(len(buf), limit), hold_tail=True)
        if spans[0][0] > self.pad:  # drop leading silence so the buffer holds speech only
            self._advance(spans[0][0] - self.pad)
        return []

    def _commit(self, speech_start: int, cut: int, hold_tail: bool) -> list[Word]:
        start = max(0, speech_start - self.pad)
        piece = self._buf[start:cut]
        offset = self._buf_t0 + start / SAMPLE_RATE
        self.transcribed_seconds += len(piece) / SAMPLE_RATE
        self._first = False
        # In a fitted window Whisper leans on the prompt and echoes it back: measured on the manifesto,
        # a prompt raised WER from 8-10 % to 15-18 % at some chunkings (bench/live_window.py).
        prompt = self._context if self._mid_speech and self._context and not self.fit else None
        told = self.languages.before_piece(self.asr, len(piece) / SAMPLE_RATE) if self.languages is not None else None
        raw, complete = self.asr.transcribe_window(piece, prompt=prompt, one_window=self.one_window, fit=self.fit)
        if self.languages is not None:
            if prompt and self.languages.switched(self.asr, told):
                # Detected afresh, in another language: the prompt, in the old one, pulled Whisper
                # back into it and it translated (seen: "El puente del puerto…" came out "the bridge
                # will be…"). Heard again without it; a piece in the same language keeps its prompt.
                raw, complete = self.asr.transcribe_window(piece, prompt=None, one_window=self.one_window,
                                                           fit=self.fit)
            if self.languages.doubtful(self.asr, raw):
                raw, complete = self._hear_in_its_language(piece, raw, complete)
        words = [Word(w.text, offset + w.start, offset + w.end, w.probability) for w in raw]
        if self.languages is not None and self.languages.after_piece(
                self.asr, len(piece) / SAMPLE_RATE, words[0].start if words else None):
            self._context = ""  # the next piece's prompt must not be in the language just left
        if not complete and words:
            # Whisper stopped short of the piece's end: keep the rest for the next piece rather than
            # pay a second encoder pass for it now.
            resume = int(round((words[-1].end - self._buf_t0) * SAMPLE_RATE))
            if resume > start + self.pad:
                cut = min(cut, resume)
        if hold_tail:
            limit = offset + len(piece) / SAMPLE_RATE - self.tail_hold
            kept = [w for w in words if w.end <= limit]
            kept_cut = int(round((kept[-1].end - self._buf_t0) * SAMPLE_RATE)) if kept else 0
            if kept_cut > start + self.pad:  # must advance, or the same piece comes back forever
                words, cut = kept, kept_cut
            # else: nothing usable to hold back at; commit it all rather than loop on it
        words = self._recover_skipped(words, start, cut)
        self._mid_speech = any(a < cut < b for a, b in self._spans)  # the next piece continues
        self._advance(min(cut, len(self._buf)))
        if words:
            text = (self._context + "".join(w.text for w in words)).strip()
            self._context = text[-self.prompt_chars:] if self.prompt_chars else ""
        return words

    def _hear_in_its_language(self, piece: np.ndarray, raw: list, complete: bool) -> tuple[list, bool]:
        """The piece again, its language detected and no prompt (a prompt in the old language pulls
        Whisper back into it): the surer of the two hearings stands, with its language."""
        told = self.asr.language
        self.asr.language = None
        again, again_complete = self.asr.transcribe_window(piece, prompt=None, one_window=self.one_window,
                                                           fit=self.fit)
        if again and self.asr.language is not None and mean_probability(again) > mean_probability(raw):
            return again, again_complete
        self.asr.language = told
        return raw, complete

    def _recover_skipped(self, words: list[Word], start: int, cut: int) -> list[Word]:
        """Whisper sometimes passes over a whole utterance, most often one repeating what it just
        wrote. Utterances the VAD heard that got no word are heard again, together, in one more pass."""
        def at(i: int) -> float:
            return self._buf_t0 + i / SAMPLE_RATE

        gaps = [(a, b) for a, b in ((max(a, start), min(b, cut)) for a, b in self._spans)
                if b - a >= self.min_skipped and not any(w.start < at(b) and w.end > at(a) for w in words)]
        if not gaps:
            return words
        gap = np.zeros(self.pad, np.float32)
        clips, where, pos = [], [], 0  # where: (start in the joined audio, its length, buffer index)
        for a, b in gaps:
            if pos + (b - a) > WINDOW_S * SAMPLE_RATE:
                break
            clips += [self._buf[a:b], gap]
            where.append((pos, b - a, a))
            pos += b - a + len(gap)
        self.transcribed_seconds += pos / SAMPLE_RATE
        self.recovered_passes += 1
        raw, _ = self.asr.transcribe_window(np.concatenate(clips), prompt=None, one_window=True)
        found = []
        for w in raw:
            mid = (w.start + w.end) / 2 * SAMPLE_RATE
            for p0, n, a in where:
                if p0 <= mid < p0 + n + len(gap):
                    shift = at(a) - p0 / SAMPLE_RATE
                    found.append(Word(w.text, max(at(a), w.start + shift), min(at(a + n), w.end + shift),
                                      w.probability))
                    break
        return sorted(words + found, key=lambda w: w.start)

    def _advance(self, n: int) -> None:
        if n <= 0:
            return
        self._buf = self._buf[n:]
        self._buf_t0 += n / SAMPLE_RATE
        self._spans = [(max(0, a - n), b - n) for a, b in self._spans if b - n > 0]
        self._vad_done = max(0, self._vad_done - n)
        self.committed_until = max(self.committed_until, self._buf_t0)
