"""Per-stream normalisation of surprise, and boundary proposals at its peaks.

A raw prediction error means little on its own: a news channel with cuts every few seconds is
always "surprising" next to a lecture. So each stream z-scores its own surprise against its own
history (cumulative mean at first, then exponentially weighted so a days-long stream adapts), and
proposes a boundary where the z-score is high and rising. The decision is causal (no look-ahead),
so a live stream gets it when the segment commits.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class TrackerState:
    n: int = 0
    mean: float = 0.0
    var: float = 0.0
    prev_raw: float | None = None


class SurpriseTracker:
    def __init__(self, threshold: float = 1.5, warmup: int = 4, halflife: int = 400):
        if threshold <= 0 or warmup < 2 or halflife < 1:
            raise ValueError("threshold > 0, warmup >= 2 and halflife >= 1 are required")
        self.threshold, self.warmup = threshold, warmup
        self._alpha_min = 1.0 - 0.5 ** (1.0 / halflife)
        self.state = TrackerState()

    def update(self, raw: float) -> tuple[float, bool]:
        """Return (z-score against the history before this value, is this a boundary)."""
        if not math.isfinite(raw):
            raise ValueError("surprise must be finite")
        s = self.state
        if s.n >= self.warmup:
            z = (raw - s.mean) / max(math.sqrt(s.var), 1e-3)
        else:
            z = 0.0  # too little history to call anything unusual
        rising = s.prev_raw is not None and raw > s.prev_raw
        boundary = z >= self.threshold and rising
        # Exponentially weighted mean and variance; 1/n at first makes them the plain averages.
        alpha = max(1.0 / (s.n + 1), self._alpha_min)
        delta = raw - s.mean
        s.mean += alpha * delta
        s.var = (1.0 - alpha) * (s.var + alpha * delta * delta)
        s.n += 1
        s.prev_raw = raw
        return float(z), bool(boundary)

    def state_dict(self) -> dict:
        return asdict(self.state)

    def load_state_dict(self, d: dict) -> None:
        self.state = TrackerState(**d)


def feature_distance(prev: dict | None, cur: dict) -> float | None:
    """The plain baseline: cosine distance between two segments' fused features, each block scaled
    to unit length and concatenated (an absent block counts as zeros). None for the first segment."""
    if prev is None:
        return None
    dot, n_prev, n_cur = 0.0, 0, 0
    for name, v in cur.items():
        u = prev.get(name)
        nu = float(np.linalg.norm(u)) if u is not None else 0.0
        nv = float(np.linalg.norm(v)) if v is not None else 0.0
        n_prev += nu > 0
        n_cur += nv > 0
        if nu > 0 and nv > 0 and np.shape(u) == np.shape(v):
            dot += float(np.dot(u, v)) / (nu * nv)
    if not n_prev or not n_cur:
        return 1.0 if n_prev != n_cur else 0.0
    return 1.0 - dot / math.sqrt(n_prev * n_cur)
