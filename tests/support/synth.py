"""Media made here with PyAV, for tests that need a file of known content: a pure tone in WAV, and
H.264 + AAC in MP4 wider than the frames Manta keeps."""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np

def sine(seconds: float, rate: int, freq: float) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_wav(path: Path, seconds: float, rate: int = 44_100, freq: float = 440.0) -> Path:
    """A stereo 16-bit WAV holding a pure tone."""
    tone = (sine(seconds, rate, freq) * 32767).astype(np.int16)
    interleaved = np.stack([tone, tone], axis=1).reshape(1, -1)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout="stereo")
        for i in range(0, len(tone), 4096):
            block = np.ascontiguousarray(interleaved[:, 2 * i: 2 * min(len(tone), i + 4096)])
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="stereo")
            frame.sample_rate, frame.pts = rate, i
            frame.time_base = fractions.Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def make_mp4(path: Path, seconds: float, fps: int = 10, size: tuple[int, int] = (1280, 720),
             rate: int = 44_100, freq: float = 440.0) -> Path:
    """H.264 video (wider than MAX_FRAME_WIDTH) plus an AAC stereo tone."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        video.options = {"preset": "ultrafast"}
        audio = out.add_stream("aac", rate=rate, layout="stereo")
        for i in range(int(seconds * fps)):
            img = np.zeros((size[1], size[0], 3), np.uint8)
            img[..., 0] = (i * 6) % 256
            img[:, (i * 20) % size[0]:, 1] = 200
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        tone = sine(seconds, rate, freq)
        for i in range(0, len(tone), 1024):
            block = np.ascontiguousarray(np.stack([tone[i:i + 1024]] * 2))
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = rate, i
            for packet in audio.encode(frame):
                out.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                out.mux(packet)
    return path
