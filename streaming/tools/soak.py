"""An hours-long stream for soak runs: silence with a real speech clip every few minutes.

A monitored broadcast is mostly talk-free hours with moments that matter, and that is what a soak
needs: media time races ahead (read as a fast file, an hour takes well under a minute) while every
stage still runs: decoding, voice detection, Whisper on each clip, quiet segments that keep the
timeline whole, meso and macro levels, FAISS, SQLite. FLAC keeps a day of 16 kHz mono in a few MB,
since near-silence compresses to almost nothing.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from streaming.source.audio_chunks import decode_audio

RATE = 16_000


def make_soak_audio(path: str | Path, hours: float, clip: str | Path, every_s: float = 300.0) -> Path:
    """Write ``hours`` of audio to ``path`` (FLAC): ``clip`` at 0 s, ``every_s``, 2·``every_s``…"""
    if hours <= 0 or every_s <= 0:
        raise ValueError("hours and every_s must be positive")
    speech = decode_audio(clip)
    if len(speech) >= every_s * RATE:
        raise ValueError("the clip must be shorter than every_s")
    # Digital silence between clips: FLAC stores it as constant frames (a day fits in a few MB),
    # where even faint noise would cost ~50 MB an hour.
    tone = np.zeros(int(every_s * RATE), dtype=np.float32)
    total = int(hours * 3600 * RATE)
    path = Path(path)
    with av.open(str(path), "w", format="flac") as dst:
        stream = dst.add_stream("flac", rate=RATE, layout="mono")
        stream.format = "s16"
        written = 0
        while written < total:
            block = tone.copy()
            block[:len(speech)] += speech
            block = block[:total - written]
            pcm = (np.clip(block, -1, 1) * 32767).astype(np.int16).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            frame.sample_rate, frame.pts = RATE, written
            for packet in stream.encode(frame):
                dst.mux(packet)
            written += pcm.shape[1]
        for packet in stream.encode(None):
            dst.mux(packet)
    return path
