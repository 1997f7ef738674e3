"""Group committed words into micro segments of about ``target_s`` seconds.

Boundaries prefer the places a listener would cut: the end of a sentence, a clause, or a pause.
A segment that would run past ``max_s`` is cut at its best earlier point (punctuation, else the
longest pause or stretched word), so a quoted phrase is rarely split across two segments.
"""

from __future__ import annotations

import math
import time

from streaming.records import MicroSegment, Word

SENTENCE_END = (".", "?", "!", "。", "？", "！")
CLAUSE_END = (",", ";", ":", "，", "；")


def _strength(word: Word) -> int:
    text = word.text.strip().rstrip("\"')”»")
    if text.endswith(SENTENCE_END):
        return 2
    if text.endswith(CLAUSE_END):
        return 1
    return 0


class MicroSegmenter:
    def __init__(self, stream_id: str, *, target_s: float = 3.0, max_s: float | None = None,
                 pause_s: float = 0.8, fill_quiet: bool = False, start: float = 0.0, seq: int = 0):
        if target_s <= 0:
            raise ValueError("target_s must be positive")
        self.stream_id = stream_id
        self.target = target_s
        self.max = max_s if max_s is not None else 2 * target_s
        self.pause = pause_s
        self._words: list[Word] = []
        self._seq = seq
        # With fill_quiet, stretches without speech become empty segments of target_s, so the
        # stream model (and the picture) still has a step every few seconds in silence.
        self.fill_quiet = fill_quiet
        self._end = start  # end of the last segment
        self._last_t0 = start

    @property
    def next_seq(self) -> int:
        return self._seq

    def push(self, words: list[Word], committed_until: float) -> list[MicroSegment]:
        """Add final words; ``committed_until`` says no earlier word can still arrive."""
        out: list[MicroSegment] = []
        for word in words:
            if self._words and word.start - self._words[-1].end >= self.pause:
                out.append(self._close(len(self._words)))
            if not self._words:
                out.extend(self._quiet(word.start))
            self._words.append(word)
            out.extend(self._cut_ready())
        # Silence after the last word is confirmed: do not hold a short utterance back.
        if self._words and committed_until - self._words[-1].end >= self.pause:
            out.append(self._close(len(self._words)))
        if not self._words:
            out.extend(self._quiet(committed_until))
        return out

    def _quiet(self, until: float) -> list[MicroSegment]:
        out: list[MicroSegment] = []
        if not self.fill_quiet or not math.isfinite(until):
            return out
        while until - self._end >= self.target:
            out.append(MicroSegment(self.stream_id, self._seq, self._end, self._end + self.target, (),
                                    wall=time.time()))
            self._last_t0 = self._end
            self._seq += 1
            self._end += self.target
        return out

    @property
    def pending_start(self) -> float | None:
        """Start of words received but not yet in a segment (they are not searchable yet)."""
        return self._words[0].start if self._words else None

    def flush(self) -> list[MicroSegment]:
        return [self._close(len(self._words))] if self._words else []

    def _cut_ready(self) -> list[MicroSegment]:
        out = []
        while self._words:
            first, last = self._words[0], self._words[-1]
            dur = last.end - first.start
            strength = _strength(last)
            if dur > self.max and len(self._words) > 1:  # before punctuation: max_s is a promise
                out.append(self._close(self._best_cut()))
            elif (strength == 2 and dur >= 0.4 * self.target) or (strength == 1 and dur >= self.target):
                out.append(self._close(len(self._words)))
            else:
                break
        return out

    def _best_cut(self) -> int:
        """How many leading words form the segment when it overflows ``max_s``."""
        words = self._words
        t0 = words[0].start
        best, best_score = len(words) - 1, -1.0
        for i in range(1, len(words)):
            dur = words[i - 1].end - t0
            if dur < 0.5 * self.target:
                continue
            gap = words[i].start - words[i - 1].end
            stretched = max(0.0, (words[i].end - words[i].start) - 0.8)  # a pause Whisper hid in a word
            score = 2.0 * _strength(words[i - 1]) + gap + stretched - 0.1 * abs(dur - self.target)
            if score > best_score:
                best, best_score = i, score
        return best

    def _close(self, n: int) -> MicroSegment:
        words, self._words = self._words[:n], self._words[n:]
        # A segment never starts before the previous one (the index is in time order), even if
        # a word's start lies inside an earlier quiet segment.
        t0 = max(words[0].start, self._last_t0)
        seg = MicroSegment(self.stream_id, self._seq, t0, max(t0, words[-1].end), tuple(words),
                           wall=time.time())
        self._last_t0 = t0
        self._seq += 1
        self._end = max(self._end, seg.t1)
        return seg
