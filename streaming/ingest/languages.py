"""Which language each stretch of a stream's speech is in: a broadcast that switches from English
to Spanish says so, and "does the language change?" is answered with where.

Whisper detects the language of the first speech and the recogniser keeps it (a detection costs a
decode of a full 30 s window). Told the wrong language, Whisper does not fail: it translates ("El
puente del puerto…" comes out as "The bridge will be…"), but its word probabilities drop (measured
on eSpeak's Spanish forced to English: mean 0.42-0.49, against 0.61-0.85 for English). So a piece
heard with little confidence is heard again with detection, and kept in the language found when
that differs; and every ``recheck_s`` of speech the next piece is detected afresh anyway. A piece
whose language differs starts a new stretch. A language the operator configured is never
re-detected. English-only models (tiny.en) have no other language to find.
"""

from __future__ import annotations

RECHECK_S = 30.0  # seconds of transcribed speech between two detections
MIN_PIECE_S = 3.0  # a shorter piece is a poor witness of its language: the check waits for a longer one
DOUBT_P = 0.55  # mean word probability below which a piece may be in another language
DOUBT_MIN_WORDS = 3
DOUBT_EVERY_S = 10.0  # of speech between two such second hearings: noisy speech must not double the cost


def mean_probability(words) -> float:
    """How sure the recogniser was of a piece: its words' mean probability (0 for no words)."""
    return sum(w.probability for w in words) / len(words) if words else 0.0


def stretches(changes, end: float) -> list[tuple[float, float, str]]:
    """``changes`` ((media time, code) where each language starts) as (start, end, code); the last
    runs to ``end``."""
    bounds = [t for t, _ in changes[1:]] + [end]
    return [(t, max(t, b), c) for (t, c), b in zip(changes, bounds)]


class LanguageTrack:
    """The stretches of one stream's speech by language, as (media time it starts, Whisper code)."""

    def __init__(self, recheck_s: float = RECHECK_S, changes=()):
        if recheck_s <= 0:
            raise ValueError("recheck_s must be positive")
        self.recheck_s = recheck_s
        self.changes: list[tuple[float, str]] = [(float(t), str(c)) for t, c in changes]
        self._since = 0.0
        self._since_doubt = DOUBT_EVERY_S

    def before_piece(self, asr, piece_s: float) -> str | None:
        """Ask ``asr`` (a recogniser with ``language`` and ``configured_language``) to detect the
        language of the coming piece when a check is due; returns the language it was told before
        (None when it was detecting anyway)."""
        told = getattr(asr, "language", None)
        if getattr(asr, "configured_language", None) is not None or told is None:
            return told  # told its language by the operator, or detecting anyway (nothing heard yet)
        if self._since >= self.recheck_s and piece_s >= MIN_PIECE_S:
            asr.language = None
            self._since = 0.0
        return told

    @staticmethod
    def switched(asr, told: str | None) -> bool:
        """Whether the piece just heard was detected in a language other than ``told``."""
        heard = getattr(asr, "language", None)
        return told is not None and heard is not None and heard != told

    def doubtful(self, asr, words) -> bool:
        """Whether a piece just heard (its ``words``, with probabilities) should be heard again with
        the language detected: few confident words from a recogniser told a detected language."""
        if getattr(asr, "configured_language", None) is not None or getattr(asr, "language", None) is None:
            return False
        if len(words) < DOUBT_MIN_WORDS or self._since_doubt < DOUBT_EVERY_S:
            return False
        if mean_probability(words) >= DOUBT_P:
            return False
        self._since_doubt = 0.0
        return True

    def after_piece(self, asr, piece_s: float, t0: float | None) -> bool:
        """Note the language the piece was heard in; ``t0``: media time of its first word (None
        when it had none: silence says nothing of language). True when it starts a new stretch."""
        self._since += piece_s
        self._since_doubt += piece_s
        code = getattr(asr, "language", None)
        if t0 is None or not code or (self.changes and self.changes[-1][1] == code):
            return False
        changed = bool(self.changes)
        self.changes.append((round(t0, 3), code))
        return changed

    def spans(self, end: float) -> list[tuple[float, float, str]]:
        """The stretches as (start, end, code); the last runs to ``end``."""
        return stretches(self.changes, end)

    def info(self) -> dict:
        """What a checkpoint keeps, so a restarted stream still knows where its language changed."""
        return {"languages": [[t, c] for t, c in self.changes]}

    @classmethod
    def from_info(cls, info: dict | None, recheck_s: float = RECHECK_S) -> LanguageTrack:
        rows = (info or {}).get("languages") or []
        return cls(recheck_s, [(t, c) for t, c in rows if isinstance(c, str)])
