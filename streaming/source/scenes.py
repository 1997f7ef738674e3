"""Causal shot-cut detection on 64x36 thumbnails, cheap enough to run on every decoded video frame.

Score of a frame: split the luma difference to the previous frame into 4x4-pixel blocks and take the
median block. A median ignores whatever moves in less than half the picture (a bird flapping its
wings, a character walking), and a per-pixel difference stays small during a fade because a fade
changes brightness a little per frame. Blocks that are dark in both frames do not vote, so
letterbox and pillarbox bars do not dilute a cut (nor make a fade from black look like one).

A frame starts a new shot when its score beats an absolute threshold AND `ratio` times the median
score of the last second (fast action raises the bar), the 64-bin RGB histogram moved too (a camera
shake moves the same colours around), the previous cut is at least `min_shot_s` old, and the picture
still differs from the old shot FLASH_FRAMES frames later (a flash or a one-frame glitch returns to
it). So a cut is reported FLASH_FRAMES frames after it happened, with the time of its first frame.

Defaults measured on the clips in ../shared/media, as they are and letter/pillarboxed (bench/scenes.py):
true cuts score >= 0.119, >= 10x the recent median and move the histogram >= 0.14. The worst non-cuts
score 0.106 at 3.8x with histogram 0.05 (a camera shake in popeye p1) and 0.039 at 7.9x (fast action
in popeye p3), so 0.07 and 6x leave a factor of about 1.6 on either side of both.
"""

from __future__ import annotations

import math
import threading
from numbers import Real
from collections import deque
from dataclasses import dataclass

import numpy as np

THUMB_W, THUMB_H = 64, 36
BLOCK = 4  # pixels per block side: 9x16 = 144 blocks
DARK = 20.0  # mean luma (0-255) under which a block counts as black bar / black frame
MIN_ACTIVE = 1 / 8  # fewer lit blocks than this: too little picture to judge, score 0
HISTORY = 24  # frames of recent scores behind the adaptive bar (about one second)
FLOOR = 0.005  # the adaptive bar never drops below ratio * FLOOR on a perfectly static picture
MIN_HIST_CHANGE = 0.07  # true cuts measured >= 0.14, the camera shake 0.05
FLASH_FRAMES = 3  # a flash lasting up to this many frames is not a cut
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_local = threading.local()
_ROWS = (np.arange(THUMB_H) // BLOCK == np.arange(THUMB_H // BLOCK)[:, None]).astype(np.float32) / BLOCK**2
_COLS = (np.arange(THUMB_W)[:, None] // BLOCK == np.arange(THUMB_W // BLOCK)).astype(np.float32)


def _real(x) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool)


def thumbnail(frame) -> np.ndarray:
    """The 36x64 RGB thumbnail of an av.VideoFrame, pixel for pixel what
    frame.to_ndarray(format="rgb24", width=64, height=36) gives, at a quarter of the cost: that call
    builds a new swscale context for every frame, which costs more than the scaling itself."""
    reformatter = getattr(_local, "reformatter", None)
    if reformatter is None:  # one per thread: a swscale context must not be shared between threads
        from av.video.reformatter import VideoReformatter  # lazy: the detector itself needs only numpy

        reformatter = _local.reformatter = VideoReformatter()
    return reformatter.reformat(frame, width=THUMB_W, height=THUMB_H, format="rgb24").to_ndarray()


@dataclass(frozen=True, slots=True)
class ShotCut:
    t: float  # media time of the first frame of the new shot
    score: float  # median block luma change, 0-1 (true cuts measured 0.12-0.34)


def _luma(thumb: np.ndarray) -> np.ndarray:
    return (thumb.reshape(-1, 3) @ _LUMA).reshape(THUMB_H, THUMB_W)


def _blocks(a: np.ndarray) -> np.ndarray:
    # Block means as two small matrix products: several times faster than reshape().mean() here.
    return _ROWS @ a @ _COLS


def _score(luma: np.ndarray, lit: np.ndarray, prev: np.ndarray, prev_lit: np.ndarray) -> float:
    both = lit | prev_lit
    n = np.count_nonzero(both)
    if n < MIN_ACTIVE * both.size:
        return 0.0
    return float(np.sort(_blocks(np.abs(luma - prev))[both])[n // 2]) / 255.0


def _hist_change(a: np.ndarray, b: np.ndarray) -> float:
    """Half the L1 distance of the 64-bin RGB histograms: 0 same colours, 1 none in common."""
    def hist(x):
        q = x >> 6  # 4 levels per channel: coarse enough that noise and grading do not move it
        return np.bincount(((q[..., 0] << 4) | (q[..., 1] << 2) | q[..., 2]).ravel(), minlength=64)
    return float(np.abs(hist(a).astype(np.int32) - hist(b)).sum()) / (2 * THUMB_W * THUMB_H)


class SceneDetector:
    """Feed every frame in order with update(); it returns a ShotCut when one is confirmed."""

    def __init__(self, threshold: float = 0.07, min_shot_s: float = 0.5, ratio: float = 6.0):
        if not (_real(threshold) and 0 < threshold < 1):
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        if not (_real(min_shot_s) and 0 <= min_shot_s < math.inf):
            raise ValueError(f"min_shot_s must be a finite number >= 0, got {min_shot_s!r}")
        if not (_real(ratio) and 1 <= ratio < math.inf):
            raise ValueError(f"ratio must be a finite number >= 1, got {ratio!r}")
        self.threshold, self.min_shot_s, self.ratio = float(threshold), float(min_shot_s), float(ratio)
        self._scores: deque[float] = deque(maxlen=HISTORY)
        self._last_t: float | None = None
        self._last_cut: float = -math.inf
        self._prev: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # thumb, luma, lit blocks
        self._pending: tuple[float, float, np.ndarray, np.ndarray] | None = None  # t, score, old luma, lit
        self._waited = 0
        self.last_score = 0.0  # the latest frame's score, for logs and benchmarks

    def update(self, t: float, thumb: np.ndarray) -> ShotCut | None:
        if not (_real(t) and math.isfinite(t)):
            raise ValueError(f"t must be a finite number, got {t!r}")
        if self._last_t is not None and t < self._last_t:
            raise ValueError(f"t went backwards: {t} after {self._last_t}")
        if not isinstance(thumb, np.ndarray) or thumb.shape != (THUMB_H, THUMB_W, 3) \
                or thumb.dtype != np.uint8:
            raise ValueError(f"thumb must be a {THUMB_H}x{THUMB_W}x3 uint8 array (use thumbnail()), got "
                             f"{getattr(thumb, 'shape', type(thumb).__name__)} {getattr(thumb, 'dtype', '')}")
        self._last_t = float(t)
        luma = _luma(thumb)
        lit = _blocks(luma) > DARK
        prev, self._prev = self._prev, (thumb.copy(), luma, lit)  # a copy: callers may reuse buffers
        if prev is None:
            # The stream's first frame starts its first shot: no cut within min_shot_s of it, by
            # which time the adaptive bar has history (on a noisy start it would otherwise fire).
            self._last_cut = t if self._last_cut == -math.inf else self._last_cut
            return None
        score = self.last_score = _score(luma, lit, prev[1], prev[2])
        # The frame that settles a pending cut never starts one: after a long flash it is the return
        # to the old shot, and just after a cut min_shot_s forbids one anyway.
        waiting = self._pending is not None
        cut = self._confirm(luma, lit) if waiting else None
        if not waiting and self._is_candidate(t, score, thumb, prev[0]):
            self._pending, self._waited = (float(t), score, prev[1], prev[2]), 0
        self._scores.append(score)
        return cut

    def _is_candidate(self, t: float, score: float, thumb: np.ndarray, prev_thumb: np.ndarray) -> bool:
        if score < self.threshold or t - self._last_cut < self.min_shot_s:
            return False  # the common case: decided without sorting or histograms
        typical = sorted(self._scores)[len(self._scores) // 2] if self._scores else 0.0
        return score >= self.ratio * max(typical, FLOOR) and \
            _hist_change(thumb, prev_thumb) >= MIN_HIST_CHANGE

    def _confirm(self, luma: np.ndarray, lit: np.ndarray) -> ShotCut | None:
        self._waited += 1
        if self._waited < FLASH_FRAMES:
            return None
        t, score, old, old_lit = self._pending
        self._pending = None
        # Half the threshold: the new shot may itself move, a flash returns to nearly the old picture.
        if _score(luma, lit, old, old_lit) < 0.5 * self.threshold:
            return None
        self._last_cut = t
        return ShotCut(t=t, score=round(score, 4))

    def state_dict(self) -> dict:
        """Enough to continue a restarted stream: the first frame after a restore has no predecessor,
        and a cut still awaiting its flash check is dropped."""
        return {"threshold": self.threshold, "min_shot_s": self.min_shot_s, "ratio": self.ratio,
                "scores": [round(s, 5) for s in self._scores], "last_t": self._last_t,
                "last_cut": None if self._last_cut == -math.inf else self._last_cut}

    def load_state_dict(self, d: dict) -> None:
        try:
            fresh = SceneDetector(d["threshold"], d["min_shot_s"], d["ratio"])  # validates them
            scores = [float(s) for s in d["scores"]][-HISTORY:]
            times = [None if d[k] is None else float(d[k]) for k in ("last_t", "last_cut")]
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a SceneDetector state: {e!r}") from None
        if not all(math.isfinite(s) and s >= 0 for s in scores + [x for x in times if x is not None]):
            raise ValueError("scores and times in a SceneDetector state must be finite, scores >= 0")
        fresh._scores.extend(scores)
        fresh._last_t, last_cut = times
        fresh._last_cut = -math.inf if last_cut is None else last_cut
        self.__dict__.update(fresh.__dict__)
