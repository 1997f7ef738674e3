"""Provisional text: what a live stream has just said, searchable about a second after it is heard.

The committed transcript (streaming/ingest/transcript.py) waits for a pause or a full buffer and
then pays a whole Whisper call with the configured model: 5–12 s behind the speaker on 2 cores.
Beside it, every ``every_s`` this stage re-decodes the audio the transcriber still holds (everything
past its committed words) with a fast recogniser (``asr_provisional_model``, tiny.en by default on
a CPU) in a Whisper window fitted to that audio, and keeps the words ``agreement`` consecutive
hypotheses agree on (LocalAgreement-n, as whisper_streaming does with n = 2). The default is one
pass with a guard: the last word of a hypothesis is often cut mid-word or guessed, so a word ending
at the edge of the decoded audio waits for the next pass; measured, that is ~1 s fresher than n = 2
at p95 and shows more words early, 92 % of them later confirmed (docs/BENCHMARKS.md, freshness).
Confirmed words stay until the committed transcript covers their span, then the final words replace
them: the provisional text only ever covers what is not final yet, so nothing is answered twice.

Nothing here touches the committed path: the transcript, word times, checkpoints and exact resume
stay exactly as they were. The stage runs in its own thread (``ProvisionalWorker``) so the worker
never waits for it, and it is the first thing shed under load: the governor turns it off before it
drops a single frame, and the shared service drops a request that waited past ``stale_s``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from streaming.interfaces import Embedder, SpeechRecognizer, StaleRequest
from streaming.records import SAMPLE_RATE, ProvisionalText, Word

log = logging.getLogger("manta.provisional")

WINDOW_S = 29.5  # one Whisper encoder window
TOUCH_S = 0.05  # slack on a boundary between final and provisional words
EDGE_S = 0.3  # with agreement 1, a word ending this close to the audio's end waits for the next pass
REHEARD_S = 1.0  # how far before the frontier a word of a new pass may be one heard before
CONTEXT_S = 1.0  # audio decoded again before the last confirmed word, so the next word is heard whole


def _norm(word: Word) -> str:
    return re.sub(r"[^\w']", "", word.text.lower())


def agreed_prefix(previous: list[Word], current: list[Word]) -> int:
    """How many leading words of ``current`` the previous hypothesis also had (same words, in the
    same order, ignoring case and punctuation)."""
    k = 0
    while k < len(previous) and k < len(current) and _norm(previous[k]) == _norm(current[k]):
        k += 1
    return k


@dataclass(frozen=True, slots=True)
class PendingAudio:
    """What the committed transcriber still holds: the audio past its final words, with the speech
    its VAD found there, published after each chunk (``IncrementalTranscriber.pending``)."""

    t0: float  # media time of samples[0]
    samples: np.ndarray  # float32 mono at SAMPLE_RATE; never written to after publication
    speech: tuple[tuple[int, int], ...]  # sample ranges of speech in ``samples``
    committed_until: float  # every word before this is final
    prompt: str | None  # recent final text, when the held audio continues mid-speech

    @property
    def t1(self) -> float:
        return self.t0 + len(self.samples) / SAMPLE_RATE


class LocalAgreement:
    """The provisional words of one stream, grown by agreement and trimmed by final text."""

    def __init__(self, agreement: int = 2):
        if agreement not in (1, 2, 3):
            raise ValueError("agreement must be 1, 2 or 3 passes")
        self.agreement = agreement
        self.confirmed: list[Word] = []  # agreed, not yet final
        self.floor = float("-inf")  # final text reaches this far: nothing before it is provisional
        self._history: list[list[Word]] = []  # the latest agreement - 1 hypotheses, newest last

    def trim(self, committed_until: float) -> None:
        """Final text now reaches ``committed_until``: drop every provisional word before it."""
        self.floor = max(self.floor, committed_until - TOUCH_S)
        self.confirmed = [w for w in self.confirmed if w.start >= self.floor]

    def _unconfirmed(self, words: list[Word]) -> list[Word]:
        """A hypothesis's words past the confirmed ones. Two passes place a word up to a few tenths
        of a second apart, so words near the frontier are kept and matched by text instead: the
        longest run the confirmed words end with and these begin with is what was heard again."""
        words = [w for w in words if w.start >= self.floor]
        if not self.confirmed:
            return words
        frontier = self.confirmed[-1].end
        words = [w for w in words if w.start >= frontier - REHEARD_S]
        tail = [_norm(w) for w in self.confirmed[-5:]]
        for n in range(min(len(tail), len(words)), 0, -1):
            if tail[-n:] == [_norm(w) for w in words[:n]]:
                return words[n:]
        return [w for w in words if w.start >= frontier - TOUCH_S]

    def add(self, hypothesis: list[Word], audio_end: float = float("inf")) -> list[Word]:
        """One pass's words over the held audio (which ends at ``audio_end``); returns the words it
        newly confirmed."""
        fresh = self._unconfirmed(hypothesis)
        if self.agreement == 1:  # trust one pass, but not a word the audio may have cut short
            k = len(fresh)
            while k and fresh[k - 1].end > audio_end - EDGE_S:
                k -= 1
        else:
            earlier = [self._unconfirmed(h) for h in self._history]
            k = min((agreed_prefix(e, fresh) for e in earlier), default=0) \
                if len(earlier) >= self.agreement - 1 else 0
            self._history = (self._history + [hypothesis])[-(self.agreement - 1):]
        new = fresh[:k]
        self.confirmed += new
        return new


class ProvisionalWorker:
    """One live stream's provisional thread: every ``every_s`` it decodes what is pending, agrees,
    embeds and publishes. ``pending()`` returns the transcriber's latest ``PendingAudio`` (or None);
    ``paused()`` is True while the governor sheds provisional text; ``publish(text_or_None)``
    hands the newest ``ProvisionalText`` to the read side. A model error is logged and counted,
    never raised: provisional text is a convenience, the committed path goes on without it."""

    def __init__(self, stream_id: str, asr: SpeechRecognizer, embedder: Embedder,
                 pending: Callable[[], PendingAudio | None], publish: Callable[[ProvisionalText | None], None],
                 paused: Callable[[], bool] = lambda: False, every_s: float = 1.0, agreement: int = 2,
                 clock: Callable[[], float] = time.time, english_only: bool = False,
                 language: Callable[[], str | None] = lambda: None, fit: bool = True):
        if every_s <= 0:
            raise ValueError("every_s must be positive")
        self.id, self.asr, self.embedder = stream_id, asr, embedder
        self.pending, self.publish, self.paused = pending, publish, paused
        self.every_s, self.clock = every_s, clock
        self.agree = LocalAgreement(agreement)
        self.english_only, self.language = english_only, language
        self.fit = fit  # encode only the held audio (>= 10 s), not a 30 s window: a faster pass
        self.updates = self.passes = self.errors = self.shed = 0
        self.decode_s = 0.0
        self._seen: tuple[float, float] | None = None  # (t0, t1) of the audio last decoded
        self._last: ProvisionalText | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the thread ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"manta-{self.id}-provisional", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        due = time.monotonic() + self.every_s
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            due = max(due + self.every_s, time.monotonic())  # a fixed rate; a slow pass skips ahead
            try:
                self.step()
            except StaleRequest:  # the shared recogniser was busy: this pass is shed, the next one tries
                self.shed += 1
            except Exception as exc:  # noqa: BLE001 - see the class docstring
                self.errors += 1
                if self.errors in (1, 10, 100) or self.errors % 1000 == 0:
                    log.warning("stream %s: provisional pass failed (%d so far): %s: %s",
                                self.id, self.errors, type(exc).__name__, exc)

    # -- one pass -----------------------------------------------------------------------------
    def step(self) -> ProvisionalText | None:
        """Decode the pending audio once (when there is new speech) and publish the result."""
        p = self.pending()
        if p is None:
            return None
        self.agree.trim(p.committed_until)
        if self.paused():
            self.shed += 1
            return self._publish(p)
        if self._wrong_language():
            return self._publish(p)
        if not p.speech or (self._seen is not None and self._seen == (p.t0, p.t1)):
            return self._publish(p)  # nothing new heard: the final text may still have moved on
        # From just before the first speech, or, once words are confirmed, from CONTEXT_S before the
        # last of them (what is confirmed need not be decoded again: fewer tokens, a faster pass),
        # and never more than one Whisper window.
        start = max(0, p.speech[0][0] - int(0.2 * SAMPLE_RATE), len(p.samples) - int(WINDOW_S * SAMPLE_RATE))
        # No prompt: in a fitted window Whisper echoes it (streaming/ingest/transcript.py).
        prompt = p.prompt if not self.fit else None
        if self.agree.confirmed:
            start = max(start, int((self.agree.confirmed[-1].end - CONTEXT_S - p.t0) * SAMPLE_RATE))
            if not self.fit:
                said = "".join(w.text for w in self.agree.confirmed if w.end <= p.t0 + start / SAMPLE_RATE)
                prompt = ((p.prompt or "") + said)[-200:].strip() or None
        audio = p.samples[start:]
        offset = p.t0 + start / SAMPLE_RATE
        t = time.perf_counter()
        raw, _ = self.asr.transcribe_window(audio, prompt=prompt, one_window=True, fit=self.fit)
        self.decode_s += time.perf_counter() - t
        self.passes += 1
        self._seen = (p.t0, p.t1)
        # A word ending at the very edge of the audio may be cut; agreement needs it heard again.
        words = [Word(w.text, offset + w.start, offset + w.end, w.probability) for w in raw]
        self.agree.add([w for w in words if w.start >= p.committed_until - TOUCH_S], p.t1)
        return self._publish(p)

    def _wrong_language(self) -> bool:
        """An English-only recogniser (tiny.en) would turn other languages into English nonsense."""
        lang = self.language()
        return self.english_only and lang is not None and lang != "en"

    def _publish(self, p: PendingAudio) -> ProvisionalText | None:
        words = tuple(w for w in self.agree.confirmed if w.start >= p.committed_until - TOUCH_S)
        if not words:
            self._last = None
            self.publish(None)
            return None
        text = "".join(w.text for w in words).strip()
        if self._last is not None and self._last.words == words:
            return self._last  # unchanged: no need to embed or publish it again
        vector = np.asarray(self.embedder.encode([text]), dtype=np.float32)[0]
        out = ProvisionalText(self.id, words[0].start, words[-1].end, words, self.clock(), vector)
        self.updates += 1
        self._last = out
        self.publish(out)
        return out

    def counters(self) -> dict:
        return {"passes": self.passes, "updates": self.updates, "errors": self.errors, "shed": self.shed,
                "decode_s": round(self.decode_s, 2)}


def provisional_for(pipe) -> ProvisionalWorker | None:
    """The provisional worker of a pipeline (streaming/ingest/pipeline.py) whose models are loaded,
    or None: files read fast, and settings or services without a provisional recogniser, have none."""
    m, s = pipe.models, pipe.settings
    if not pipe.live_paced or m.asr_provisional is None or s.asr_provisional_model == "off":
        return None

    def publish(text: ProvisionalText | None) -> None:
        pipe.provisional = text

    def paused() -> bool:
        return pipe.governor is not None and not pipe.governor.current.provisional

    return ProvisionalWorker(pipe.id, m.asr_provisional, m.embedder, lambda: pipe.pending_audio, publish,
                             paused, every_s=s.provisional_every_s, agreement=s.provisional_agreement,
                             clock=pipe.clock, english_only=s.asr_provisional_model.endswith(".en"),
                             language=lambda: pipe.language, fit=s.provisional_fit_window)
