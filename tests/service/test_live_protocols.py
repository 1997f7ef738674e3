"""Each live protocol exercised for real on loopback: a local server (or sender) broadcasts real media
at real-time pace (``speed``× faster), and Manta's source is pointed at the URL exactly as a user
would type it. What a user would notice is asserted: audio arrives while the broadcast is still
going, media time starts at 0 and runs on without holes, as much media arrives as was sent, at the
pace it was sent, and pictures come with it."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

import pytest

from tests.support.helpers import child_processes, free_port, media, normalise
from streaming.tools import broadcast
from streaming.records import AudioChunk, VideoFrame
from streaming.tools.rtsp_relay import RtspRelay
from streaming.source import container as source_container
from streaming.source.media import MediaSource, SourceError, parse_source
from streaming.source.relay import ffmpeg_with, pyav_has_protocol

pytestmark = pytest.mark.timeout(90)  # every wait below is bounded; this catches what is not

CLIP = "manifesto_audiobook_titlecard.mp4"  # h264 320x180 + aac, speech from 1.6 s
SPEED = 2.0
SEND_S = 10.0  # media seconds broadcast: 5 s of wall time at SPEED


@dataclass
class Reception:
    audio: list[tuple[AudioChunk, float, bool]] = field(default_factory=list)  # chunk, arrival, sending
    frames: list[VideoFrame] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    ended_by_itself: bool = False


def connect(url: str, stop: threading.Event, within: float = 15.0, read_timeout: float = 5.0) -> MediaSource:
    """Open ``url`` as Manta does, retrying a refused first try (a server still starting) the way a
    user would try again."""
    deadline = time.monotonic() + within
    while True:
        source = MediaSource(parse_source(url), open_timeout=5.0, read_timeout=read_timeout, stop=stop,
                             reconnect_initial=0.2, reconnect_max=0.5)
        try:
            source.probe()
            return source
        except SourceError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def receive(b: broadcast.Broadcast, *, drain_s: float = 1.5, ends_by_itself: bool = False,
            read_timeout: float = 5.0) -> Reception:
    """Read ``b.url`` until the broadcast has been over for ``drain_s`` (or, with ``ends_by_itself``,
    until the source says it is finished), with bounded waits everywhere."""
    assert b.ready.wait(20), f"{b.url} never came up: {b.errors}"
    stop, got = threading.Event(), Reception()
    source = connect(b.url, stop, read_timeout=read_timeout)

    def read() -> None:
        try:
            for chunk in source:
                if isinstance(chunk, AudioChunk):
                    got.audio.append((chunk, time.monotonic(), b.sending))
                elif isinstance(chunk, VideoFrame):
                    got.frames.append(chunk)
            got.ended_by_itself = not stop.is_set()
        except Exception as exc:  # noqa: BLE001 - reported by the assertions
            got.errors.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + SEND_S / SPEED + 15
    while b.sending and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not b.sending, "the broadcast did not finish in time"
    reader.join(10.0 if ends_by_itself else drain_s)
    stop.set()
    reader.join(10)
    assert not reader.is_alive()
    return got


def assert_received_live(got: Reception, b: broadcast.Broadcast) -> None:
    assert not got.errors and not b.errors, (got.errors, b.errors)
    audio = [c for c, _, _ in got.audio]
    assert audio, "no audio arrived"
    assert audio[0].t0 == pytest.approx(0.0, abs=0.05)  # media time starts at 0
    for a, c in zip(audio, audio[1:]):
        assert c.t0 == pytest.approx(a.t1, abs=0.02), f"hole or overlap at {a.t1:.2f} s"
    received = audio[-1].t1 - audio[0].t0
    # All that was sent arrived (a client that joined a running broadcast misses at most ~1 s).
    assert received == pytest.approx(b.log.media_sent, abs=1.5), (received, b.log.media_sent)

    live = [(c, at) for c, at, sending in got.audio if sending]
    assert len(live) >= 0.6 * len(audio), "most audio came only after the broadcast ended"
    (first, t_first), (last, t_last) = live[0], live[-1]
    pace = (last.t1 - first.t1) / (t_last - t_first)
    print(f"\n{b.url}: {received:.1f} s of audio ({len(live)}/{len(audio)} chunks while sending), "
          f"{pace:.2f} media s per wall s (sent at {SPEED:g}), {len(got.frames)} frames")
    assert 0.6 * SPEED < pace < 1.5 * SPEED

    frames = got.frames
    assert len(frames) >= received - 2  # one a second
    assert all(f.image.shape == (180, 320, 3) for f in frames)
    assert all(a.t < c.t for a, c in zip(frames, frames[1:]))
    assert frames[-1].t == pytest.approx(audio[-1].t1, abs=1.5)  # pictures keep up with the sound


@pytest.mark.slow
def test_http_mpegts_received_while_broadcasting():
    with broadcast.http_ts(media(CLIP), free_port(), speed=SPEED, max_seconds=SEND_S) as b:
        assert b.url.endswith("/live.ts")
        got = receive(b)
    assert_received_live(got, b)


@pytest.mark.slow
def test_hls_growing_playlist_received_and_finished_at_endlist():
    with broadcast.hls(media(CLIP), free_port(), speed=SPEED, max_seconds=SEND_S, segment_s=1) as b:
        assert b.url.endswith("/live.m3u8")
        got = receive(b, ends_by_itself=True)
    assert_received_live(got, b)
    # The broadcast ended with #EXT-X-ENDLIST: the source is finished, not reconnecting.
    assert got.ended_by_itself


@pytest.mark.slow
def test_hls_sliding_window_with_long_segments():
    """Segments longer than the read timeout (6 s of media: 3 s of wall time at SPEED, against a
    2 s read timeout): waiting at the live edge for the next one is neither an outage nor the end."""
    with broadcast.hls(media(CLIP), free_port(), speed=SPEED, max_seconds=SEND_S, segment_s=6,
                       window=3) as b:
        got = receive(b, ends_by_itself=True, read_timeout=2.0)
    assert not got.errors and not b.errors, (got.errors, b.errors)
    audio = [c for c, _, _ in got.audio]
    assert audio and audio[-1].t1 == pytest.approx(b.log.media_sent, abs=1.0)
    assert all(c.t0 == pytest.approx(a.t1, abs=0.02) for a, c in zip(audio, audio[1:]))
    assert got.ended_by_itself


@pytest.mark.slow
def test_rtmp_pull_from_a_listening_server():
    with broadcast.rtmp(media(CLIP), free_port(), speed=SPEED, max_seconds=SEND_S) as b:
        assert b.url.startswith("rtmp://127.0.0.1:") and b.url.endswith("/live/stream")
        got = receive(b)
    assert_received_live(got, b)


@pytest.mark.slow
def test_rtsp_pull_over_tcp_from_a_relay():
    with broadcast.rtsp(media(CLIP), free_port(), speed=SPEED, max_seconds=SEND_S) as b:
        assert b.url.startswith("rtsp://127.0.0.1:") and b.url.endswith("/live/stream")
        got = receive(b)
    assert_received_live(got, b)


def test_rtsp_unknown_path_is_a_clear_failure():
    port = free_port()
    relay = RtspRelay(port)
    server = threading.Thread(target=relay.serve, daemon=True)
    server.start()
    try:
        with pytest.raises(SourceError, match="404"):
            MediaSource(parse_source(f"rtsp://127.0.0.1:{port}/nobody/here"), open_timeout=3,
                        read_timeout=3).probe()
    finally:
        relay.close()
        server.join(5)
    assert not server.is_alive()


def need_srt() -> None:
    """SRT both ways, by PyAV or (its wheels have no libsrt) an ffmpeg binary: CI installs Debian's."""
    if not broadcast.can_send("srt") or not (pyav_has_protocol("srt") or ffmpeg_with("srt")):
        pytest.skip("no SRT: neither PyAV's FFmpeg nor an ffmpeg binary on PATH has srt (apt-get install ffmpeg)")


@pytest.mark.slow
def test_srt_pull_from_a_listener():
    need_srt()
    with broadcast.srt(media(CLIP), free_port(socket.SOCK_DGRAM), speed=SPEED, max_seconds=SEND_S) as b:
        got = receive(b)
    assert_received_live(got, b)
    assert child_processes("ffmpeg") == []  # the relay and the sender are gone, not even zombies


@pytest.mark.slow
def test_srt_sender_lost_mid_stream_reconnects_with_a_gap():
    """The sender dies without hanging up (killed): the relay's read timeout notices the silence, the
    source reconnects with backoff until a sender is back on the same port, and the outage is a gap
    that media time skips, with a reason."""
    need_srt()
    port, stop, gaps = free_port(socket.SOCK_DGRAM), threading.Event(), []
    audio: list[AudioChunk] = []
    first = broadcast.srt(media(CLIP), port, speed=SPEED)
    try:
        source = connect(first.url, stop, read_timeout=2.0)
        source.on_gap = gaps.append
        reader = threading.Thread(target=lambda: audio.extend(
            c for c in source if isinstance(c, AudioChunk)), daemon=True)
        reader.start()
        deadline = time.monotonic() + 15
        while (not audio or audio[-1].t1 < 3.0) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert audio and audio[-1].t1 >= 3.0, "nothing arrived before the sender was lost"
        first.processes[0].kill()  # gone without a word: no SRT shutdown reaches the relay
        lost_at = audio[-1].t1
        time.sleep(3.0)  # down for a while: the read timeout fires and reconnects fail meanwhile
    finally:
        first.close()
    with broadcast.srt(media(CLIP), port, speed=SPEED) as second:
        deadline = time.monotonic() + 30
        while not (gaps and audio[-1].t1 > gaps[0].media_t + 3.0) and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        reader.join(10)
    assert not reader.is_alive()
    assert not second.errors, second.errors
    assert len(gaps) == 1 and source.progress.reconnects == 1, (gaps, source.progress)
    gap = gaps[0]
    print(f"\ngap at {gap.media_t:.1f} s for {gap.wall_end - gap.wall_start:.1f} s: {gap.reason}")
    assert gap.media_t == pytest.approx(lost_at, abs=1.0)
    assert gap.wall_end - gap.wall_start >= 3.0
    assert gap.reason and "Traceback" not in gap.reason
    after = [c for c in audio if c.t0 > gap.media_t]
    assert after and after[0].t0 >= gap.media_t + 3.0  # media time skipped the outage
    assert all(b.t0 >= a.t1 - 0.02 for a, b in zip(audio, audio[1:]))  # and never went back
    assert child_processes("ffmpeg") == []


def test_srt_with_neither_libsrt_nor_an_ffmpeg_binary_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(source_container, "pyav_has_protocol", lambda name: False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no ffmpeg binary
    spec = parse_source(f"srt://127.0.0.1:{free_port(socket.SOCK_DGRAM)}")
    assert spec.live
    with pytest.raises(SourceError, match=r"no srt:// protocol.*apt-get install ffmpeg"):
        MediaSource(spec, open_timeout=2, read_timeout=2).probe()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_live_hls_answerable_while_still_broadcasting(service):
    with broadcast.hls(media(CLIP), free_port(), segment_s=1) as b:  # the whole 88 s clip
        assert b.ready.wait(20), b.errors
        sid = service.add(b.url, name="live-hls")
        found, deadline = None, time.monotonic() + 85
        while found is None and time.monotonic() < deadline:
            time.sleep(0.5)
            # Evidence only: the answer model would take the CPU the stream needs to keep up.
            for e in service.ask("spectre haunting Europe", streams=[sid], generate=False)["evidence"]:
                if "haunting europe" in normalise(e["text"]):
                    found = e
        assert found is not None, service.get(f"/v1/streams/{sid}").json()
        assert b.sending, "the answer came only after the broadcast ended"
        print(f"\nanswerable {time.time() - b.log.started_wall:.1f} s into the broadcast "
              f"(said at 19-23 s of the clip)")
        status = service.get(f"/v1/streams/{sid}").json()
        assert status["state"] == "ingesting" and status["live"] is True, status
        assert not b.errors
    stopped = service.delete(f"/v1/streams/{sid}").json()
    assert stopped["state"] in ("stopped", "finished")
