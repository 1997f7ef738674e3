"""A real-time-paced MPEG-TS sender over UDP (PyAV, codec copy) that logs when each media second left.

The log is what freshness is measured against: for every audio packet, the media time of its end
and the wall time just after it was handed to the socket. Not ``streaming.tools.replay``: that one
re-encodes so any input becomes valid MPEG-TS, which would spend the same two cores the measured
pipeline needs; this one copies packets and can loop a clip with continuous timestamps.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import av

REORDER_S = 1.0  # files interleave streams in chunks; send in decode-time order across streams


@dataclass
class SendLog:
    base: float | None = None  # earliest pts sent: the receiver's media time 0
    started_wall: float = 0.0
    ends: list[float] = field(default_factory=list)  # audio packet end, media s from base
    walls: list[float] = field(default_factory=list)  # wall time after that packet was sent
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None

    def sent_wall(self, media_t: float) -> float | None:
        """Wall time when the audio up to ``media_t`` (receiver's media seconds) had been sent."""
        i = bisect.bisect_left(self.ends, media_t - 1e-6)
        return self.walls[i] if i < len(self.walls) else None


def _selected(src) -> list[int]:
    return [s.index for s in (*src.streams.audio[:1], *src.streams.video[:1])]


def _first_pts(path: Path) -> float:
    """The earliest pts over the streams sent: where the receiver's media time starts."""
    firsts: dict[int, float] = {}
    with av.open(str(path)) as src:
        wanted = _selected(src)
        for packet in src.demux(*[src.streams[i] for i in wanted]):
            if packet.pts is not None and packet.stream.index not in firsts:
                firsts[packet.stream.index] = float(packet.pts * packet.time_base)
            if len(firsts) == len(wanted):
                break
    return min(firsts.values())


def _packets(path: Path, loops: int):
    """(dts, order, offset, stream index, is audio, packet) for ``path`` repeated ``loops`` times,
    with continuous timestamps, in dts order. Inputs stay open until the end: a packet's stream
    must not outlive its container (PyAV segfaults)."""
    heap, order, opened = [], itertools.count(), []
    try:
        for loop in range(loops):
            src = av.open(str(path))
            opened.append(src)
            offset = loop * src.duration / av.time_base
            for packet in src.demux(*[src.streams[i] for i in _selected(src)]):
                if packet.dts is None or packet.size == 0:
                    continue
                dts = float(packet.dts * packet.time_base) + offset
                item = (dts, next(order), offset, packet.stream.index, packet.stream.type == "audio",
                        packet)
                heapq.heappush(heap, item)
                while heap and heap[0][0] < dts - REORDER_S:
                    yield heapq.heappop(heap)
        while heap:
            yield heapq.heappop(heap)
    finally:
        for src in opened:
            src.close()


def send(path: Path, url: str, log: SendLog, loops: int = 1,
         stop: threading.Event | None = None) -> SendLog:
    """Send ``path`` to ``url`` as MPEG-TS (codec copy), pacing packets so dts tracks wall time."""
    stop = stop or threading.Event()
    try:
        log.base = _first_pts(path)
        with av.open(str(path)) as src, av.open(url, "w", format="mpegts") as dst:
            outs = {i: dst.add_stream_from_template(src.streams[i]) for i in _selected(src)}
            t0_dts = None
            for dts, _, offset, index, is_audio, packet in _packets(path, loops):
                if stop.is_set():
                    break
                if t0_dts is None:
                    t0_dts, log.started_wall = dts, time.time()
                wait = log.started_wall + (dts - t0_dts) - time.time()
                if wait > 0:
                    time.sleep(wait)
                end = float((packet.pts + (packet.duration or 0)) * packet.time_base) + offset
                shift = round(offset / packet.time_base)
                packet.pts, packet.dts = packet.pts + shift, packet.dts + shift
                packet.stream = outs[index]
                dst.mux(packet)
                if is_audio:
                    log.ends.append(end - log.base)
                    log.walls.append(time.time())
    except Exception as exc:  # noqa: BLE001 - reported by the benchmark, not raised in a thread
        log.error = f"{type(exc).__name__}: {exc}"
    finally:
        log.done.set()
    return log


def start_sender(path: Path, url: str, loops: int, stop: threading.Event):
    log = SendLog()
    thread = threading.Thread(target=send, args=(path, url, log, loops, stop), daemon=True,
                              name="ts-sender")
    thread.start()
    return log, thread
