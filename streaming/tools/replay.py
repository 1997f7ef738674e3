"""Replay a media file as a live broadcast at real-time pace: MPEG-TS to UDP/TCP, FLV to RTMP, RTSP
push, or any container PyAV can write (an HLS folder, a Python file object).

For trying Manta's live path without a camera or ffmpeg, and for tests and benchmarks that need a
real live source on loopback. Audio is re-encoded to AAC and video to H.264 so any input works.
``streaming.tools.broadcast`` builds loopback servers (HTTP, HLS, RTMP, RTSP) on top of this.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
from av.codec.context import Flags as CodecFlags
from av.format import Flags

GLOBAL_HEADER = CodecFlags.global_header.value
STALL_S = 0.2  # a mux call blocked this long was held back by the output, not slow encoding
VIDEO_FPS = 25
GOP_SECONDS = 1.0  # a keyframe every second: a viewer joining mid-broadcast sees pictures at once
# What each URL scheme carries when the caller names no container format.
SCHEME_FORMATS = {"rtmp": "flv", "rtmps": "flv", "rtsp": "rtsp", "rtsps": "rtsp"}


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

    @property
    def media_sent(self) -> float:
        """Media seconds handed to the output so far."""
        return self.sent[-1][0] if self.sent else 0.0


def output_format(url: str) -> str:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    return SCHEME_FORMATS.get(scheme, "mpegts")


def replay(path: str | Path, url, *, stop: threading.Event | None = None, speed: float = 1.0,
           max_seconds: float | None = None, video: bool = True, log: ReplayLog | None = None,
           format: str | None = None, options: dict[str, str] | None = None, listen: bool = False,
           buffer_size: int = 32768) -> ReplayLog:
    """Send ``path`` to ``url`` (e.g. ``udp://127.0.0.1:5000``), paced at ``speed``×.

    ``url`` may also be a file path or a writable file object; ``format`` defaults by scheme (FLV
    for rtmp://, RTSP push for rtsp://, else MPEG-TS) and ``options`` go to the muxer and protocol.
    ``listen``: the sender is the server (an rtmp:// URL: players connect to it); the broadcast
    starts when the first one has connected."""
    if speed <= 0:
        raise ValueError("speed must be positive")
    stop = stop or threading.Event()
    log = log or ReplayLog()
    target = url
    if isinstance(url, str) and url.startswith("udp://") and "pkt_size" not in url:
        target = url + ("&" if "?" in url else "?") + "pkt_size=1316"  # 7 TS packets per datagram
    if not isinstance(url, str):
        format = format or "mpegts"
    fmt = format or output_format(str(url))
    opts = dict(options or {})
    if fmt == "rtsp":
        opts.setdefault("rtsp_transport", "tcp")
    # PyAV's own global-header switch looks at the outer muxer only (not fifo's inner one).
    global_header = bool(av.format.ContainerFormat(fmt, "w").flags & Flags.global_header.value)
    if listen or fmt == "rtsp" or str(url).lower().startswith("srt://"):
        # PyAV writes the header, where a network output connects or waits for its peer, holding
        # the GIL (an RTSP server in this process could not answer), and opens the protocol
        # without options ("listen" would not reach RTMP). FFmpeg's fifo muxer does both in its
        # own thread, with format_opts. One queued packet: until the peer is there, the sender
        # blocks (see _send).
        if listen:
            opts["listen"] = "1"
        opts = {"fifo_format": fmt, "queue_size": "1",
                "format_opts": ":".join(f"{k}={v}" for k, v in opts.items())}
        fmt = "fifo"
    with av.open(str(path)) as src, av.open(target, "w", format=fmt, container_options=opts,
                                            buffer_size=buffer_size) as dst:
        _send(src, dst, stop=stop, speed=speed, max_seconds=max_seconds, video=video, log=log,
              global_header=global_header)
    log.finished = True
    return log


def _send(src, dst, *, stop: threading.Event, speed: float, max_seconds: float | None, video: bool,
          log: ReplayLog, global_header: bool = False) -> None:
    a_in = src.streams.audio[0] if src.streams.audio else None
    v_in = src.streams.video[0] if (video and src.streams.video) else None
    outs = {}
    if a_in is not None:
        a_out = dst.add_stream("aac", rate=48000, layout="stereo")
        outs[a_in.index] = (a_out, av.AudioResampler(format="fltp", layout="stereo", rate=48000))
    if v_in is not None:
        v_out = dst.add_stream("libx264", rate=VIDEO_FPS)
        v_out.codec_context.time_base = Fraction(1, 1000)  # pts in ms follow the source's clock
        v_out.codec_context.gop_size = int(GOP_SECONDS * VIDEO_FPS)
        v_out.width, v_out.height, v_out.pix_fmt = v_in.width // 2 * 2, v_in.height // 2 * 2, "yuv420p"
        v_out.options = {"preset": "ultrafast", "tune": "zerolatency"}
        outs[v_in.index] = (v_out, None)
    if global_header:
        for out, _ in outs.values():
            out.codec_context.flags |= GLOBAL_HEADER
    dst.start_encoding()
    log.started_wall = time.time()

    def mux(packets) -> None:
        held = time.monotonic()
        dst.mux(packets)
        held = time.monotonic() - held
        if held > STALL_S:
            # The output held us back (a listener with no player yet, a slow TCP peer): the
            # broadcast clock waits too, rather than bursting what was due meanwhile.
            log.started_wall += held

    inputs = [s for s in (a_in, v_in) if s is not None]
    done = False  # max_seconds reached: the caller's stop event is theirs, not set here
    for packet in src.demux(*inputs):
        if stop.is_set() or done:
            break
        for frame in packet.decode():
            if frame.time is None:
                continue
            if log.first_pts is None:
                log.first_pts = frame.time
            media_t = frame.time - log.first_pts
            if max_seconds is not None and media_t > max_seconds:
                done = True
                break
            due = log.started_wall + media_t / speed
            if due > time.time():
                stop.wait(due - time.time())
            out, resampler = outs[packet.stream.index]
            if resampler is not None:
                for f in resampler.resample(frame):
                    mux(out.encode(f))
            else:
                frame = frame.reformat(width=out.width, height=out.height, format="yuv420p")
                frame.pts, frame.time_base = int(media_t * 1000), Fraction(1, 1000)
                mux(out.encode(frame))
            log.sent.append((media_t, time.time()))
    for out, _ in outs.values():
        dst.mux(out.encode(None))
