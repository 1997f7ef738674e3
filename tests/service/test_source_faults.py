"""Fault injection on a live UDP source (loopback only): a sender that stalls, dies and comes back,
corrupts packets, wraps or jumps its timestamps, changes resolution. Each run is bounded in time; the
receiver must not hang, must lose or repeat nothing it received, must keep media time monotonic, and
must record outages as gaps with their wall-clock times."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest

from tests.support.helpers import free_port, media, normalise
from tests.support.faults import AUDIO_RATE, PTS_HZ, PTS_WRAP, FaultSender, Part, load_audio, pes_pts, wait_bound
from streaming.records import AudioChunk, Gap, VideoFrame
from streaming.source.media import MediaSource, parse_source

pytestmark = pytest.mark.slow

JOIN = 0.05  # audio chunks of one timeline meet within this (AAC frames at part boundaries)


@dataclass
class Run:
    audio: list[AudioChunk]
    frames: list[VideoFrame]
    gaps: list[Gap]
    source: MediaSource
    sender: FaultSender
    seconds: float  # wall time of the whole run


def run(parts: list[Part], *, read_timeout: float = 1.0, speed: float = 1.0, bound: float = 25.0) -> Run:
    """Receive ``parts`` from a FaultSender; stop once it is done and what it sent is read."""
    port = free_port(socket.SOCK_DGRAM)
    sender = FaultSender(port, parts, speed=speed)  # muxed before anything starts
    gaps: list[Gap] = []
    src = MediaSource(parse_source(f"udp://127.0.0.1:{port}"), open_timeout=2.0, read_timeout=read_timeout,
                      reconnect_initial=0.2, reconnect_max=1.0, on_gap=gaps.append, frame_fps=5.0)
    got, errors = [], []

    def read() -> None:
        try:
            got.extend(src)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    t0 = time.monotonic()
    reader = threading.Thread(target=read, name="fault-reader", daemon=True)
    reader.start()
    try:
        assert wait_bound(port), "the receiver never bound its UDP port"
        sender.start()
        assert sender.join(bound), "the sender did not finish in time"
        # The read timeout ends the connection; what was read is flushed before it counts as down.
        deadline = time.monotonic() + read_timeout + 5.0
        while src.progress.connected and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        src.stop.set()
        sender.stop()
    reader.join(read_timeout + 5.0)
    assert not reader.is_alive(), "the receiver hung"
    assert not errors, errors
    assert src.progress.ever_connected
    return Run([c for c in got if isinstance(c, AudioChunk)], [c for c in got if isinstance(c, VideoFrame)],
               gaps, src, sender, time.monotonic() - t0)


def sent_audio(parts: list[Part]) -> float:
    return sum(p.seconds for p in parts)


def received(r: Run) -> float:
    return sum(c.t1 - c.t0 for c in r.audio)


def holes(r: Run) -> list[tuple[float, float]]:
    """(media time, length) of every hole between audio chunks; overlaps fail here: a repeat."""
    out = []
    for a, b in zip(r.audio, r.audio[1:]):
        assert b.t0 >= a.t1 - 1e-6, f"audio overlaps (repeated): {a.t0:.3f}-{a.t1:.3f} then {b.t0:.3f}"
        if b.t0 - a.t1 > JOIN:
            out.append((a.t1, b.t0 - a.t1))
    return out


def assert_frames_monotonic(r: Run) -> None:
    times = [f.t for f in r.frames]
    assert times == sorted(times), times


def first_after(r: Run, wall: float) -> AudioChunk:
    return next(c for c in r.audio if c.wall >= wall)


# -- outages ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("read_timeout, path", [(4.0, "stall"), (1.0, "reconnect")])
def test_sender_dies_and_comes_back_with_a_new_timeline(read_timeout: float, path: str) -> None:
    """The sender closes its socket for 2.5 s and restarts its encoder (timestamps from 1 s again).
    Within the read timeout the connection holds: the silence is a gap and the clock rebases; past
    it the source reconnects. Either way the gap spans the outage and media time skips by it."""
    parts = [Part(3.0, pts=5000.0), Part(3.0, pts=1.0, pause=2.5, reconnect=True, freq=660.0)]
    r = run(parts, read_timeout=read_timeout)
    assert len(r.gaps) == 1, r.gaps
    gap, (down, up) = r.gaps[0], (r.sender.log[0].last_wall, r.sender.log[1].first_wall)
    assert gap.wall_start == pytest.approx(down, abs=0.4)
    assert up - 0.1 <= gap.wall_end <= up + 1.5  # reconnecting adds its backoff and probe
    assert (r.source.progress.reconnects, r.source.progress.stalls) == ((0, 1) if path == "stall" else (1, 0))
    (hole_t, hole_s), = holes(r)
    assert hole_t == pytest.approx(gap.media_t, abs=JOIN)
    assert hole_s == pytest.approx(gap.wall_end - gap.wall_start, abs=0.6)
    # Only a reconnect loses what arrived while no socket was open (backoff and probe).
    assert received(r) == pytest.approx(sent_audio(parts), abs=0.1 if path == "stall" else 1.0)
    assert received(r) <= sent_audio(parts) + 0.1
    assert_frames_monotonic(r)
    assert r.frames[-1].t > hole_t + hole_s + 1.5  # pictures came back too


@pytest.mark.parametrize("clock_runs", [False, True])
def test_a_stall_within_the_read_timeout_is_a_gap_and_loses_nothing(clock_runs: bool) -> None:
    """2.5 s of silence on a held connection. A sender that paused its timeline goes on where it was
    (no hole in media time); a live encoder whose clock ran on leaves a 2.5 s hole; both are a gap."""
    parts = [Part(3.0, pts=100.0), Part(3.0, pts=105.5 if clock_runs else None, pause=2.5)]
    r = run(parts, read_timeout=4.0)
    assert len(r.gaps) == 1 and r.source.progress.reconnects == 0
    gap = r.gaps[0]
    assert gap.wall_start == pytest.approx(r.sender.log[0].last_wall, abs=0.4)
    assert gap.wall_end == pytest.approx(r.sender.log[1].first_wall, abs=0.4)
    assert gap.reason.startswith("no data for")
    found = holes(r)
    if clock_runs:
        assert len(found) == 1 and found[0][1] == pytest.approx(2.5, abs=0.1)
    else:
        assert found == []
    assert r.source.progress.discontinuities == 0
    assert received(r) == pytest.approx(sent_audio(parts), abs=0.1)
    assert_frames_monotonic(r)


# -- damaged data ----------------------------------------------------------------------------------

def test_corrupt_packets_cost_their_own_frames_and_audio_flows_on() -> None:
    parts = [Part(8.0, pts=300.0, corrupt=0.03)]
    r = run(parts, read_timeout=2.0)
    assert r.sender.log[0].corrupted > 10
    assert r.source.progress.decode_errors > 0
    assert r.gaps == [] and r.source.progress.reconnects == 0
    for a, b in zip(r.audio, r.audio[1:]):
        assert b.t0 >= a.t1 - 1e-6  # nothing repeated, never backwards
    assert r.audio[-1].t1 - r.audio[0].t0 == pytest.approx(8.0, abs=0.5)  # no leap from a bad PTS
    assert received(r) > 0.8 * sent_audio(parts)
    assert any(c.t0 > r.audio[0].t0 + 6.0 for c in r.audio)  # still flowing at the end
    assert_frames_monotonic(r)


# -- timestamps ------------------------------------------------------------------------------------

def test_pts_wrap_keeps_media_time_going() -> None:
    """PTS start 3 s before 2**33 ticks: on the wire they wrap to 0 (FFmpeg's demuxer corrects a
    first wrap; the clock unwraps any later one). Media time neither collapses nor leaps 26.5 h."""
    start = PTS_WRAP / PTS_HZ - 3.0
    parts = [Part(7.0, pts=start)]
    r = run(parts)
    wire = [ticks for _, ticks in pes_pts(r.sender.muxed[0].data)]
    assert max(wire) > PTS_WRAP - 3 * PTS_HZ and min(wire) < 4 * PTS_HZ  # the wire really wraps
    assert holes(r) == []
    assert r.audio[0].t0 == pytest.approx(0.0, abs=0.1)
    assert r.audio[-1].t1 == pytest.approx(7.0, abs=0.2)
    late = [f for f in r.frames if f.t > 4.0]
    assert len(late) >= 10  # 5 fps sampling goes on past the wrap
    assert_frames_monotonic(r)
    assert r.gaps == []


@pytest.mark.parametrize("jump", [3600.0, -3600.0])
def test_pts_jump_is_carried_over_without_a_hole(jump: float) -> None:
    """The sender's timeline jumps an hour (a splice, a restarted encoder) without a pause. Media
    time goes on seamlessly: no hour-long hole, no collapse. (A backward jump past FFmpeg's wrap
    reference comes out of the demuxer as +25.5 h; the clock sees through that too.)"""
    parts = [Part(4.0, pts=5000.0), Part(4.0, pts=5004.0 + jump)]
    r = run(parts)
    assert holes(r) == []
    assert r.audio[-1].t1 - r.audio[0].t0 == pytest.approx(8.0, abs=0.2)
    assert r.source.progress.discontinuities >= 1 and r.gaps == []
    late = [f for f in r.frames if f.t > 5.0]
    assert len(late) >= 10  # frames are sampled after the jump, at their place
    assert late[-1].t == pytest.approx(r.audio[-1].t1, abs=0.6)  # and in sync with the audio
    assert_frames_monotonic(r)


def test_resolution_change_mid_stream() -> None:
    parts = [Part(4.0, pts=50.0, size=(320, 180)), Part(4.0, size=(640, 360))]
    r = run(parts)
    shapes = [f.image.shape for f in r.frames]
    assert (180, 320, 3) in shapes and (360, 640, 3) in shapes
    change = next(i for i, s in enumerate(shapes) if s == (360, 640, 3))
    assert all(s == (180, 320, 3) for s in shapes[:change])
    assert all(s == (360, 640, 3) for s in shapes[change:])
    assert len(shapes) - change >= 10  # frames keep coming at the new size
    assert holes(r) == [] and r.gaps == []
    assert received(r) == pytest.approx(sent_audio(parts), abs=0.1)
    assert_frames_monotonic(r)


# -- through the service ---------------------------------------------------------------------------

def test_service_shows_the_outage_and_keeps_its_segments_in_order(service) -> None:
    """Speech sent live; in a pause the sender goes down for 3 s (within the read timeout) and comes
    back with a new timeline. The stream's status lists the gap with its wall-clock span; its
    segments are in order without overlaps or repeated words; the words after the outage sit after
    it in media time, and the words of both halves are there."""
    speech = load_audio(media("jfk_inaugural_1961.flac"))
    win = AUDIO_RATE // 10
    rms = [float(np.sqrt(np.mean(speech[i:i + win] ** 2))) for i in range(4 * AUDIO_RATE, 7 * AUDIO_RATE, win)]
    cut = 4 * AUDIO_RATE + int(np.argmin(rms)) * win + win // 2  # the quietest moment from 4 s to 7 s
    first, second = speech[:cut], speech[cut:]
    parts = [Part(len(first) / AUDIO_RATE, pts=7000.0, audio=first),
             Part(len(second) / AUDIO_RATE + 0.5, pts=1.0, pause=3.0, reconnect=True, audio=second)]
    port = free_port(socket.SOCK_DGRAM)
    sid = service.add(f"udp://127.0.0.1:{port}", name="faulty-udp")
    sender = FaultSender(port, parts)
    try:
        service.wait(sid, states=("connecting",), timeout=60)
        assert wait_bound(port, timeout=60), service.get(f"/v1/streams/{sid}").json()
        sender.start()
        assert sender.join(30)
        expected_end = sum(p.seconds for p in parts) + 3.0
        deadline = time.monotonic() + 30  # the read timeout flushes what the sender sent last
        while service.get(f"/v1/streams/{sid}").json()["media_seconds"] < expected_end - 0.6:
            assert time.monotonic() < deadline, service.get(f"/v1/streams/{sid}").json()
            time.sleep(0.3)
        # The sender is gone for good: past the read timeout the words held back (waiting for the
        # silence after them) are flushed, so all it sent is searchable while the stream waits to
        # reconnect, not only once somebody stops it.
        deadline = time.monotonic() + 60
        while True:
            status = service.get(f"/v1/streams/{sid}").json()
            if status["state"] in ("reconnecting", "connecting") and \
                    status["committed_seconds"] >= status["media_seconds"] - 1.0:
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.3)
        heard = service.get(f"/v1/streams/{sid}/segments").json()["segments"]
        assert "for your country" in normalise(" ".join(s["text"] for s in heard)), heard[-2:]
    finally:
        sender.stop()
        service.delete(f"/v1/streams/{sid}")
    deadline = time.monotonic() + 60  # stopping drains what was received
    while True:
        status = service.get(f"/v1/streams/{sid}").json()
        if status["committed_seconds"] >= status["media_seconds"] - 1e-6:
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.3)

    (gap,) = status["gaps"]
    assert gap["reason"].startswith("no data for") and status["reconnects"] == 0
    assert gap["wall_start"] == pytest.approx(sender.log[0].last_wall, abs=0.4)
    assert gap["wall_end"] == pytest.approx(sender.log[1].first_wall, abs=0.4)
    assert gap["media_t"] == pytest.approx(cut / AUDIO_RATE, abs=0.3)

    segs = service.get(f"/v1/streams/{sid}/segments").json()["segments"]
    assert [s["seq"] for s in segs] == sorted({s["seq"] for s in segs})
    for a, b in zip(segs, segs[1:]):
        assert a["start"] <= a["end"] <= b["start"] + 1e-6, (a, b)
    words = [w for s in segs for w in s["words"]]
    starts = [w["start"] for w in words]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)  # none repeated
    resumed = gap["media_t"] + 3.0 - 0.5
    assert not [w for w in words if gap["media_t"] + 0.3 < w["start"] < resumed]  # nothing was sent then
    before = normalise(" ".join(w["text"] for w in words if w["start"] < gap["media_t"]))
    after = normalise(" ".join(w["text"] for w in words if w["start"] >= resumed))
    assert "fellow americans" in before, before
    assert "your country" in after, after
