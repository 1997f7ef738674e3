"""Fuse what was said, shown and heard in one micro segment into the stream model's input.

Audio and picture are aligned first, by media time (levels and frame embeddings that fall inside
the segment's span); text joins at the segment's coarser granularity (TOC/FCID's order). Each
block is optional: a radio stream has no ``seen``, a silent film no ``said``; the model learns a
stand-in for a missing block rather than reading zeros as content.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from streaming.records import SAMPLE_RATE, AudioChunk, MicroSegment, SegmentFeatures

# Names and order of the statistics block; changing them changes the model's input (retrain).
STATS = ("duration", "speech_ratio", "words_per_s", "level_db", "level_std_db", "level_peak_db",
         "visual_change", "confidence", "has_audio", "has_video")
LEVEL_STEP_S = 0.1  # loudness resolution
SILENCE_DB = -80.0


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 0 else v.astype(np.float32)


def chunk_levels(chunk: AudioChunk) -> list[tuple[float, float]]:
    """(time, dBFS) every LEVEL_STEP_S of a chunk."""
    n = int(LEVEL_STEP_S * SAMPLE_RATE)
    out = []
    for i in range(0, len(chunk.samples) - n + 1, n):
        rms = float(np.sqrt(np.mean(np.square(chunk.samples[i:i + n], dtype=np.float64))))
        out.append((chunk.t0 + i / SAMPLE_RATE, max(SILENCE_DB, 20 * np.log10(rms + 1e-12))))
    return out


class SignalWindow:
    """Recent loudness and frame embeddings, kept until the segments covering them are final."""

    def __init__(self, keep_s: float = 120.0):
        self.keep_s = keep_s
        self._levels: deque[tuple[float, float]] = deque()
        self._frames: deque[tuple[float, np.ndarray]] = deque()
        self._last_frame: np.ndarray | None = None  # carried into segments shorter than a frame step
        self.has_audio = self.has_video = False

    def add_audio(self, chunk: AudioChunk) -> None:
        self.has_audio = True
        self._levels.extend(chunk_levels(chunk))

    def add_frame(self, t: float, embedding: np.ndarray) -> None:
        self.has_video = True
        self._frames.append((t, np.asarray(embedding, dtype=np.float32)))

    def trim(self, before: float) -> None:
        """Drop what no future segment can cover; a bounded history whatever the stream's length."""
        horizon = before - self.keep_s
        while self._levels and self._levels[0][0] < horizon:
            self._levels.popleft()
        while self._frames and self._frames[0][0] < before:
            self._last_frame = self._frames.popleft()[1]

    def features(self, seg: MicroSegment, said: np.ndarray | None,
                 shown: np.ndarray | None = None) -> SegmentFeatures:
        t0, t1 = seg.t0, max(seg.t1, seg.t0 + 1e-3)
        levels = np.array([db for t, db in self._levels if t0 <= t < t1], dtype=np.float32)
        frames = [e for t, e in self._frames if t0 <= t < t1]
        if not frames:
            before = [e for t, e in self._frames if t < t0]
            prior = before[-1] if before else self._last_frame
            frames = [prior] if prior is not None else []
        seen = _unit(np.mean(frames, axis=0)) if frames else None
        change = float(1.0 - np.dot(_unit(frames[0]), _unit(frames[-1]))) if len(frames) > 1 else 0.0
        dur = t1 - t0
        spoken = sum(max(0.0, w.end - w.start) for w in seg.words)
        conf = float(np.mean([w.probability for w in seg.words])) if seg.words else 0.0
        level = float(levels.mean()) if levels.size else SILENCE_DB
        stats = np.array([
            (dur - 3.0) / 2.0,
            2.0 * min(1.0, spoken / dur) - 1.0,
            len(seg.words) / dur / 3.0 - 1.0,
            (level + 30.0) / 15.0,
            (float(levels.std()) if levels.size else 0.0) / 10.0 - 0.5,
            ((float(levels.max()) if levels.size else SILENCE_DB) + 20.0) / 15.0,
            8.0 * change - 1.0,
            2.0 * conf - 1.0,
            1.0 if self.has_audio else -1.0,
            1.0 if self.has_video else -1.0,
        ], dtype=np.float32)
        return SegmentFeatures(said=None if said is None else _unit(said),
                               shown=None if shown is None else _unit(shown),
                               seen=seen, stats=np.clip(stats, -4.0, 4.0))
