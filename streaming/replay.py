"""Replay a media file as a live MPEG-TS broadcast (UDP or any URL ffmpeg can write), at real-time pace.

For trying Manta's live path without a camera or ffmpeg, and for tests and benchmarks that need a
real live source on loopback. Audio is re-encoded to AAC and video to H.264 so any input works.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av


@dataclass
class ReplayLog:
    """When each media second left the sender, to measure freshness on the receiving side."""

    started_wall: float = 0.0
    first_pts: float | None = None
    sent: list[tuple[float, float]] = field(default_factory=list)  # (media seconds, wall time)
    finished: bool = False

    def wall_at(self, media_t: float) -> float | None:
        """Wall time when media time ``media_t`` (from the first packet) had been sent."""
        for t, wall in self.sent:
            if t >= media_t:
                return wall
        return None


def replay(path: str | Path, url: str, *, stop: threading.Event | None = None, speed: float = 1.0,
           max_seconds: float | None = None, video: bool = True, log: ReplayLog | None = None) -> ReplayLog:
    """Send ``path`` to ``url`` (e.g. ``udp://127.0.0.1:5000``) as MPEG-TS, paced at ``speed``×."""
    if speed <= 0:
        raise ValueError("speed must be positive")
    stop = stop or threading.Event()
    log = log or ReplayLog()
    target = url if "pkt_size" in url or not url.startswith("udp://") else (
        url + ("&" if "?" in url else "?") + "pkt_size=1316")
    with av.open(str(path)) as src, av.open(target, "w", format="mpegts") as dst:
        a_in = src.streams.audio[0] if src.streams.audio else None
        v_in = src.streams.video[0] if (video and src.streams.video) else None
        outs = {}
        if a_in is not None:
            a_out = dst.add_stream("aac", rate=48000, layout="stereo")
            outs[a_in.index] = (a_out, av.AudioResampler(format="fltp", layout="stereo", rate=48000))
        if v_in is not None:
            v_out = dst.add_stream("libx264", rate=25)
            v_out.codec_context.time_base = Fraction(1, 1000)  # pts in ms follow the source's clock
            v_out.width, v_out.height, v_out.pix_fmt = v_in.width // 2 * 2, v_in.height // 2 * 2, "yuv420p"
            v_out.options = {"preset": "ultrafast", "tune": "zerolatency"}
            outs[v_in.index] = (v_out, None)
        log.started_wall = time.time()
        inputs = [s for s in (a_in, v_in) if s is not None]
        for packet in src.demux(*inputs):
            if stop.is_set():
                break
            for frame in packet.decode():
                if frame.time is None:
                    continue
                if log.first_pts is None:
                    log.first_pts = frame.time
                media_t = frame.time - log.first_pts
                if max_seconds is not None and media_t > max_seconds:
                    stop.set()
                    break
                due = log.started_wall + media_t / speed
                if due > time.time():
                    stop.wait(due - time.time())
                out, resampler = outs[packet.stream.index]
                if resampler is not None:
                    for f in resampler.resample(frame):
                        dst.mux(out.encode(f))
                else:
                    frame = frame.reformat(width=out.width, height=out.height, format="yuv420p")
                    frame.pts, frame.time_base = int(media_t * 1000), Fraction(1, 1000)
                    dst.mux(out.encode(frame))
                log.sent.append((media_t, time.time()))
        for out, _ in outs.values():
            dst.mux(out.encode(None))
    log.finished = True
    return log
