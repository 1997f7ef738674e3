"""A misbehaving live MPEG-TS sender for tests: stalls, dies and comes back, corrupts packets, wraps or
jumps its timestamps, changes resolution, all on UDP loopback.

The broadcast is a list of ``Part``s. Each is muxed with PyAV into bytes up front (encoding cost does
not disturb the send timing, and the bytes can be damaged on purpose before they go out), then sent
as 1316-byte datagrams (7 TS packets, what ``pkt_size=1316`` gives) at real-time pace or ``speed``×.
A part is its own mux, as a restarted or reconfigured encoder is: its own PAT/PMT and SPS/PPS, its own
timeline when ``pts`` is given. ``FaultSender.log`` says when each part's first and last datagram
left, to check the receiver's gap records against.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from streaming.source.audio_chunks import decode_audio

TS = 188
DATAGRAM = 7 * TS
PTS_HZ = 90_000
PTS_WRAP = 2**33  # ticks: the muxer writes PTS modulo this
AUDIO_RATE = 48_000
AUDIO_FRAME = 1024  # AAC


@dataclass
class Part:
    seconds: float  # media it carries
    pts: float | None = None  # its first timestamp in seconds; None: the previous part's timeline goes on
    size: tuple[int, int] = (160, 96)
    pause: float = 0.0  # silence before it
    reconnect: bool = False  # the sender closes its socket during the pause (dies and comes back)
    corrupt: float = 0.0  # share of its TS packets that get random bytes (after its first second)
    freq: float = 440.0  # of the tone it carries, unless ``audio`` is given
    audio: np.ndarray | None = field(default=None, repr=False)  # mono float32 at 48 kHz, e.g. speech


@dataclass
class PartLog:
    first_wall: float = 0.0
    last_wall: float = 0.0
    datagrams: int = 0
    corrupted: int = 0  # TS packets damaged


@dataclass
class _Muxed:
    data: bytes
    marks: list[tuple[int, float]]  # (byte offset, media seconds into the part when it was written)
    end_pts: float  # timeline position right after the part, seconds


class _Recorder:
    """A write-only file for PyAV that notes how far the muxing had got when each byte came out."""

    def __init__(self):
        self.buf = bytearray()
        self.marks: list[tuple[int, float]] = []
        self.now = 0.0

    def write(self, data) -> int:
        self.marks.append((len(self.buf), self.now))
        self.buf += data
        return len(data)


def mux_part(part: Part, pts: float, fps: int = 25) -> _Muxed:
    """Encode ``part`` (an AAC tone and H.264 frames with a moving bar) as MPEG-TS starting at ``pts``."""
    rec = _Recorder()
    with av.open(rec, "w", format="mpegts", buffer_size=DATAGRAM) as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height = part.size
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = Fraction(1, PTS_HZ)
        video.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(fps)}  # a keyframe a second
        audio = out.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        a0, v0 = round(pts * AUDIO_RATE), round(pts * PTS_HZ)
        n_audio = int(part.seconds * AUDIO_RATE) // AUDIO_FRAME
        n_video = int(part.seconds * fps)
        if part.audio is not None:
            tone = np.zeros(AUDIO_FRAME * n_audio, np.float32)
            tone[:len(part.audio)] = part.audio[:len(tone)]
        else:
            tone = 0.4 * np.sin(2 * np.pi * part.freq * np.arange(AUDIO_FRAME * n_audio) / AUDIO_RATE)
            tone = tone.astype(np.float32)
        w, h = part.size
        ai = 0
        for vi in range(n_video + 1):
            t = vi / fps
            while ai < n_audio and ai * AUDIO_FRAME / AUDIO_RATE <= t:
                block = tone[None, ai * AUDIO_FRAME:(ai + 1) * AUDIO_FRAME]
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="fltp", layout="mono")
                frame.sample_rate, frame.pts = AUDIO_RATE, a0 + ai * AUDIO_FRAME
                frame.time_base = Fraction(1, AUDIO_RATE)
                rec.now = ai * AUDIO_FRAME / AUDIO_RATE
                out.mux(audio.encode(frame))
                ai += 1
            if vi == n_video:
                break
            img = np.full((h, w, 3), 40, np.uint8)
            img[:, (vi * 4) % w:(vi * 4) % w + 8, :] = 230
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = v0 + vi * PTS_HZ // fps, Fraction(1, PTS_HZ)
            rec.now = t
            out.mux(video.encode(frame))
        rec.now = part.seconds
        out.mux(audio.encode(None))
        out.mux(video.encode(None))
    rec.marks.append((len(rec.buf), part.seconds))
    return _Muxed(bytes(rec.buf), rec.marks, pts + part.seconds)


def corrupt(data: bytes, share: float, rng: random.Random, skip_bytes: int = 0) -> tuple[bytes, int]:
    """Random bytes in ``share`` of the TS packets after ``skip_bytes``; the sync byte is kept, so
    the damage is to headers, PES headers and payload as a bad link does it, not to framing."""
    out = bytearray(data)
    hit = 0
    for start in range(skip_bytes - skip_bytes % TS, len(out) - TS + 1, TS):
        if rng.random() < share:
            for _ in range(4):
                out[start + rng.randrange(1, TS)] ^= rng.randrange(1, 256)
            hit += 1
    return bytes(out), hit


def pes_pts(data: bytes) -> list[tuple[int, int]]:
    """(pid, PTS ticks) of every PES that starts in ``data``: the timestamps as they are on the wire,
    before any demuxer corrects a wrap."""
    found = []
    for start in range(0, len(data) - TS + 1, TS):
        pkt = data[start:start + TS]
        if pkt[0] != 0x47 or not pkt[1] & 0x40:
            continue
        pid = (pkt[1] & 0x1F) << 8 | pkt[2]
        body = 4 + (1 + pkt[4] if pkt[3] & 0x20 else 0)
        pes = pkt[body:]
        if len(pes) < 14 or pes[:3] != b"\x00\x00\x01" or not pes[7] & 0x80:
            continue
        p = pes[9:14]
        ticks = ((p[0] >> 1) & 7) << 30 | p[1] << 22 | (p[2] >> 1) << 15 | p[3] << 7 | p[4] >> 1
        found.append((pid, ticks))
    return found


@dataclass
class FaultSender:
    """Send ``parts`` to udp://host:port on a thread; ``start()``, then ``join()`` or ``stop()``."""

    port: int
    parts: list[Part]
    speed: float = 1.0
    host: str = "127.0.0.1"
    seed: int = 7
    log: list[PartLog] = field(default_factory=list)
    muxed: list[_Muxed] = field(default_factory=list)

    def __post_init__(self):
        rng = random.Random(self.seed)
        pts = self.parts[0].pts if self.parts[0].pts is not None else 10.0
        for part in self.parts:
            pts = part.pts if part.pts is not None else pts
            m = mux_part(part, pts)
            hit = 0
            if part.corrupt:
                after_1s = next((off for off, t in m.marks if t >= 1.0), len(m.data))
                m.data, hit = corrupt(m.data, part.corrupt, rng, after_1s)
            self.muxed.append(m)
            self.log.append(PartLog(corrupted=hit))
            pts = m.end_pts
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-sender", daemon=True)

    def start(self) -> FaultSender:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # a test that failed before start() must see its own error
            self._thread.join(5)

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for part, m, log in zip(self.parts, self.muxed, self.log):
                if part.pause:
                    if part.reconnect:
                        sock.close()
                    if self._stop.wait(part.pause):
                        return
                    if part.reconnect:
                        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self._send(sock, m, log)
                if self._stop.is_set():
                    return
        finally:
            sock.close()

    def _send(self, sock: socket.socket, m: _Muxed, log: PartLog) -> None:
        t0 = time.monotonic()
        marks = m.marks
        mi = 0
        for off in range(0, len(m.data), DATAGRAM):
            while mi + 1 < len(marks) and marks[mi + 1][0] <= off:
                mi += 1
            wait = t0 + marks[mi][1] / self.speed - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return
            sock.sendto(m.data[off:off + DATAGRAM], (self.host, self.port))
            log.last_wall = time.time()
            log.first_wall = log.first_wall or log.last_wall
            log.datagrams += 1


def wait_bound(port: int, timeout: float = 10.0) -> bool:
    """Wait until something listens on UDP ``port`` (Linux /proc), so no datagram is sent into the void."""
    table = Path("/proc/net/udp")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not table.exists():
            time.sleep(1.0)
            return True
        for line in table.read_text().splitlines()[1:]:
            local = line.split()[1]
            if int(local.split(":")[1], 16) == port:
                return True
        time.sleep(0.02)
    return False


def load_audio(path: str | Path) -> np.ndarray:
    """A media file's audio as mono float32 at 48 kHz, for a Part to carry."""
    return decode_audio(path, rate=AUDIO_RATE)
