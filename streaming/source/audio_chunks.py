"""Decoded audio frames to chunks of 16 kHz mono float32, timed by counting samples.

Counting samples keeps chunks exactly contiguous where a container's timestamps jitter; the
timestamps still win where they show audio missing (a hole), so later words keep their time.
"""

from __future__ import annotations

import time
from pathlib import Path

import av
import numpy as np

from streaming.records import SAMPLE_RATE, AudioChunk

AUDIO_GAP_S = 0.25  # audio timestamps this far past the samples counted so far: a hole, not jitter


def _resampler() -> av.AudioResampler:
    return av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)


class AudioChunker:
    """Resample frames and cut a chunk whenever ``chunk_s`` seconds have gathered."""

    def __init__(self, chunk_s: float, skip_until: float = 0.0):
        if chunk_s <= 0:
            raise ValueError("chunk_s must be positive")
        self.chunk_n = int(chunk_s * SAMPLE_RATE)
        self.skip_until = skip_until  # resuming a file: what precedes this media time is dropped
        self.t0: float | None = None  # media time of the next sample to emit
        self._pending: list[np.ndarray] = []
        self._n = 0
        self._resampler = _resampler()

    @property
    def decoded_to(self) -> float | None:
        """Media time up to which audio was decoded, emitted or not."""
        return None if self.t0 is None else self.t0 + self._n / SAMPLE_RATE

    def push(self, frame, t: float, timed: bool = True) -> list[AudioChunk]:
        """Add a decoded frame whose media time is ``t`` (``timed``: from its own timestamp)."""
        out = []
        if self.t0 is None:
            self.t0 = t
        elif timed and t - self.decoded_to > AUDIO_GAP_S:
            # Audio missing from the container (a clip without sound, packets lost on the wire):
            # counting samples would pull every later word earlier. What came before goes out as it
            # is, and audio time jumps with the timestamps.
            out += self._emit(final=True)
            self.t0 = t
        try:
            resampled = self._resampler.resample(frame)
        except ValueError:
            # The sender changed its audio format (rate, channels) mid-stream, or a damaged header
            # says so: finish the old conversion and start one for the new format.
            resampled = self._resampler.resample(None)
            self._resampler = _resampler()
            resampled += self._resampler.resample(frame)
        self._add(resampled)
        return out + self._emit()

    def flush(self) -> list[AudioChunk]:
        """At the end of a connection: what the resampler holds and the last, shorter chunk."""
        if self.t0 is None:
            return []
        self._add(self._resampler.resample(None))
        return self._emit(final=True)

    def _add(self, frames) -> None:
        for out in frames:
            pcm = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
            self._pending.append(pcm)
            self._n += len(pcm)

    def _emit(self, final: bool = False) -> list[AudioChunk]:
        if self._n == 0 or (not final and self._n < self.chunk_n):
            return []
        samples = np.concatenate(self._pending)
        chunk = AudioChunk(samples, self.t0, time.time())
        self.t0 += self._n / SAMPLE_RATE
        self._pending, self._n = [], 0
        if chunk.t0 < self.skip_until:
            cut = int(round((self.skip_until - chunk.t0) * SAMPLE_RATE))
            if cut >= len(samples):
                return []
            chunk = AudioChunk(samples[cut:], chunk.t0 + cut / SAMPLE_RATE, chunk.wall)
        return [chunk]


def decode_audio(path: str | Path, rate: int = SAMPLE_RATE, seconds: float | None = None) -> np.ndarray:
    """A media file's first audio track as mono float32 at ``rate`` Hz (the first ``seconds`` only,
    when given): what tools, benchmarks and tests feed a recogniser or a fault sender."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    blocks: list[np.ndarray] = []
    limit = None if seconds is None else int(seconds * rate)
    with av.open(str(path)) as src:
        for frame in src.decode(audio=0):
            blocks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            if limit is not None and sum(b.size for b in blocks) >= limit:
                break
        else:
            blocks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    audio = np.concatenate(blocks).astype(np.float32) if blocks else np.zeros(0, np.float32)
    return audio if limit is None else audio[:limit]
