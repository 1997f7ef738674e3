"""Information density D(s) of a micro segment, after the MANTA paper:

    D(s) = w_n · novelty(s) + w_e · entropy(s) + w_c · coherence(s) − w_r · redundancy(s)

- novelty: the stream model's surprise z-score (or, without it, the z-scored feature change),
  squashed to (0, 1) by a logistic, so a segment the stream did not predict scores high;
- entropy: normalised Shannon entropy of the segment's words (speech and on-screen text), so
  "yes yes yes" or silence scores low and varied content high;
- coherence: agreement of what is said with what is seen (the stream model's), mapped to [0, 1];
- redundancy: the highest cosine similarity to the last few segments' text vectors.

Density picks the lines a summary keeps and, with rarity, what dedup and retention may never drop.
"""

from __future__ import annotations

import math
import re
from collections import Counter, deque
from dataclasses import dataclass, fields

import numpy as np

from streaming.records import MicroSegment

ENTROPY_WORDS = 16  # entropy is normalised by log2 of this: 16 distinct words count as "full"


@dataclass(frozen=True, slots=True)
class DensityWeights:
    novelty: float = 1.0
    entropy: float = 0.5
    coherence: float = 0.25
    redundancy: float = 1.0

    def __post_init__(self):
        check_weights(self, "density")


def check_weights(weights, what: str) -> None:
    """Every field of a weights record is a finite number >= 0 (shared with rerank's weights)."""
    for f in fields(weights):
        value = getattr(weights, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value < 0:
            raise ValueError(f"{what} weight {f.name} must be a finite number >= 0, not {value!r}")


@dataclass(frozen=True, slots=True)
class Density:
    value: float
    novelty: float
    entropy: float
    coherence: float
    redundancy: float


def words(text: str) -> list[str]:
    return re.findall(r"[0-9a-z']+", text.lower())


def content_entropy(text: str) -> float:
    """Shannon entropy of the word distribution, in [0, 1] (1 = ENTROPY_WORDS or more distinct words)."""
    tokens = words(text)
    if len(tokens) < 2:
        return 0.0
    counts = np.array(list(Counter(tokens).values()), dtype=np.float64)
    p = counts / counts.sum()
    return float(min(1.0, -(p * np.log2(p)).sum() / math.log2(ENTROPY_WORDS)))


class DensityScorer:
    """Per stream: remembers the last ``window`` text vectors for the redundancy term."""

    def __init__(self, weights: DensityWeights = DensityWeights(), window: int = 8):
        if window < 1:
            raise ValueError("window must be at least 1")
        self.weights = weights
        self._recent: deque[np.ndarray] = deque(maxlen=window)

    def score(self, seg: MicroSegment, vector: np.ndarray | None) -> Density:
        z = seg.surprise if seg.surprise is not None else seg.novelty
        novelty = 1.0 / (1.0 + math.exp(-z)) if z is not None else 0.5
        text = " ".join([seg.text, *(s.text for s in seg.shown)])
        entropy = content_entropy(text)
        coherence = (seg.coherence + 1.0) / 2.0 if seg.coherence is not None else 0.5
        redundancy = 0.0
        if vector is not None:
            v = np.asarray(vector, dtype=np.float32)
            if self._recent:
                redundancy = max(0.0, float(max(np.dot(r, v) for r in self._recent)))
            self._recent.append(v)
        w = self.weights
        value = w.novelty * novelty + w.entropy * entropy + w.coherence * coherence - w.redundancy * redundancy
        return Density(round(value, 6), novelty, entropy, coherence, redundancy)

    def prime(self, vectors: list[np.ndarray | None]) -> None:
        """Restore the redundancy window from already committed segments (a resumed stream)."""
        for v in vectors:
            if v is not None:
                self._recent.append(np.asarray(v, dtype=np.float32))
