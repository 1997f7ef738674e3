"""Checking one stream's newly committed content against the watches that cover it.

Runs in the stream's own process, inside the commit, so an alert is raised the moment the words
become searchable instead of on a timer. The score is the query path's two signals folded into one
number in [0, 1]: the cosine of the watch's text to the item's embedding (``dense``), raised by the
share of the watch's words and word pairs the item contains (``lexical``, as answers rank evidence,
streaming/answer/rerank.py): ``dense + LEXICAL_WEIGHT · lexical · (1 − dense)``. Words found can only
raise the score, so a condition written in other words than the broadcast's ("someone resigns")
still fires on meaning alone, and a phrase said exactly fires even where MiniLM's cosine is modest.

A phrase may straddle two micro segments ("a spectre is" | "haunting Europe"): each spoken segment
is also checked joined with the one before it, and the alert then spans both.

One alert per event: after an alert, the watch stays quiet on that stream until ``cooldown_s`` media
seconds pass without another match; an on-screen text record that grows while it stays on screen
is one item and alerts at most once.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from streaming.answer.rerank import content_words, word_pairs
from streaming.records import KIND_MODALITY, Alert, LabelSpan, MicroSegment, ShownText, Watch

LEXICAL_WEIGHT = 0.5  # words found close this share of the gap between the cosine and 1
PHRASE_SHARE = 0.3  # of the lexical term: the watch's word pairs said in order
QUOTE_CHARS = 200


@dataclass(frozen=True, slots=True)
class Observed:
    """One piece of newly committed content, as the matcher sees it."""

    key: tuple  # identifies the item across commits: ("speech", seq) or (kind, item id)
    kind: str  # speech, ocr, subtitle, label
    start: float
    end: float
    text: str
    vector: np.ndarray | None  # unit-norm text embedding; None: lexical only

    @property
    def modality(self) -> str:
        return KIND_MODALITY.get(self.kind, "shown")


def observed(segments: Sequence[MicroSegment], vectors: Sequence[np.ndarray | None],
             items: Iterable[tuple[ShownText | LabelSpan, np.ndarray]]) -> list[Observed]:
    """One commit's spoken segments and shown items (created or grown since the last commit)."""
    out = [Observed(("speech", s.seq), "speech", s.t0, s.t1, s.text, v)
           for s, v in zip(segments, vectors) if s.words]
    for item, vector in items:
        kind = item.kind if isinstance(item, ShownText) else "label"
        out.append(Observed((kind, item.id), kind, item.t0, item.t1, item.text, vector))
    return out


def covers(watch: Watch, stream_id: str, name: str) -> bool:
    """Whether ``watch`` applies to the stream: every stream, or one whose id or name matches."""
    if not watch.streams:
        return True
    return any(fnmatch.fnmatchcase(value, pattern) for pattern in watch.streams for value in (stream_id, name))


def score(dense: float, lexical: float) -> float:
    dense = min(1.0, max(0.0, dense))
    return dense + LEXICAL_WEIGHT * lexical * (1.0 - dense)


@dataclass
class _Armed:
    """One watch as this stream checks it."""

    watch: Watch
    vector: np.ndarray
    words: frozenset[str]
    pairs: frozenset[tuple[str, str]]
    quiet_until: float = float("-inf")  # media time before which a match extends the last event
    fired: set = field(default_factory=set)  # keys of shown items that alerted already

    def lexical(self, text: str) -> float:
        if not self.words:
            return 0.0
        coverage = len(self.words & content_words(text)) / len(self.words)
        if not self.pairs:
            return coverage
        return (1 - PHRASE_SHARE) * coverage + PHRASE_SHARE * len(self.pairs & word_pairs(text)) / len(self.pairs)

    def quote(self, text: str) -> str:
        """The sentence-like stretch of ``text`` holding the watch's words, else the text's start."""
        lower = text.lower()
        hits = [lower.find(w) for w in self.words if lower.find(w) >= 0]
        if not hits or len(text) <= QUOTE_CHARS:
            return text[:QUOTE_CHARS]
        begin = max(0, min(hits) - QUOTE_CHARS // 4)
        return text[begin:begin + QUOTE_CHARS]


class WatchMatcher:
    """The watches covering one stream and their per-stream cooldowns. Not thread-safe: the
    stream's worker thread checks; ``set_watches`` may run elsewhere, so it swaps one list."""

    def __init__(self, stream_id: str, name: str):
        self.stream_id, self.name = stream_id, name
        self._armed: list[_Armed] = []
        self._previous: Observed | None = None  # the last spoken segment, for phrases that straddle

    @property
    def watches(self) -> list[Watch]:
        return [a.watch for a in self._armed]

    def set_watches(self, watches: Iterable[tuple[Watch, np.ndarray]]) -> None:
        """All watches (with their text's unit embedding); those covering this stream are kept,
        and a watch kept from before keeps its cooldown."""
        before = {a.watch.id: a for a in self._armed}
        armed = []
        for watch, vector in watches:
            if not covers(watch, self.stream_id, self.name):
                continue
            old = before.get(watch.id)
            if old is not None and old.watch == watch:
                armed.append(old)
                continue
            armed.append(_Armed(watch, np.asarray(vector, dtype=np.float32),
                                frozenset(content_words(watch.text)), frozenset(word_pairs(watch.text))))
        self._armed = armed

    def check(self, items: Sequence[Observed], fired_wall: float,
              sent_wall: Callable[[float], float | None] = lambda t: None) -> list[Alert]:
        """Alerts for ``items`` (one commit, in media order); ``sent_wall(t)`` tells when a live
        sender sent media time ``t`` (None for a file)."""
        armed = self._armed
        alerts = []
        for item in items:
            joined = self._joined(item)
            for a in armed:
                if a.watch.modality not in ("any", item.modality):
                    continue
                best = self._best(a, item, joined)
                if best is None:
                    continue
                hit, value = best
                if hit.start < a.quiet_until or (item.kind != "speech" and item.key in a.fired):
                    a.quiet_until = max(a.quiet_until, hit.end + a.watch.cooldown_s)  # the same event
                    continue
                a.quiet_until = hit.end + a.watch.cooldown_s
                if item.kind != "speech":
                    a.fired.add(item.key)
                alerts.append(Alert(
                    watch=a.watch.id, watch_text=a.watch.text, stream=self.stream_id, start=hit.start,
                    end=hit.end, modality=item.modality, kind=item.kind, text=hit.text,
                    quote=a.quote(hit.text), score=round(value, 4), fired_wall=fired_wall,
                    sent_wall=sent_wall(hit.end)))
            if item.kind == "speech":
                self._previous = item
        return alerts

    def _joined(self, item: Observed) -> Observed | None:
        prev = self._previous
        if item.kind != "speech" or prev is None or item.start - prev.end > 1.0:
            return None
        return Observed(item.key, "speech", prev.start, item.end, f"{prev.text} {item.text}", None)

    @staticmethod
    def _best(a: _Armed, item: Observed, joined: Observed | None) -> tuple[Observed, float] | None:
        dense = float(np.dot(a.vector, item.vector)) if item.vector is not None else 0.0
        value = score(dense, a.lexical(item.text))
        hit = item
        if joined is not None:  # the phrase may begin in the previous segment
            both = score(dense, a.lexical(joined.text))
            if both > value + 1e-6:
                hit, value = joined, both
        return (hit, value) if value >= a.watch.threshold else None
