"""The edges real broadcasts have, on loopback with real senders (ffmpeg, PyAV): a stream added before
its broadcast starts, a server that is not up yet, an HLS server that goes away for a while, and a
sender handed over to another encoder with new PIDs and no pause (issue 18)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from streaming.records import AudioChunk, Gap
from streaming.source.media import MediaSource, NothingReceived, SourceUnreachable, parse_source
from streaming.tools import broadcast
from streaming.tools.replay import replay
from tests.support.helpers import free_port, media

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]  # real senders on a real clock

JFK = "jfk_inaugural_1961.flac"  # 11 s of speech
CLIP = "manifesto_audiobook_titlecard.mp4"  # 88 s, h264 + aac


@dataclass
class Reader:
    """Reads a source in a thread, noting when each audio chunk arrived."""

    source: MediaSource
    audio: list[tuple[AudioChunk, float]] = field(default_factory=list)  # chunk, monotonic arrival
    gaps: list[Gap] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    ended_by_itself: bool = False

    def __post_init__(self) -> None:
        self.source.on_gap = self.gaps.append
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for chunk in self.source:
                if isinstance(chunk, AudioChunk):
                    self.audio.append((chunk, time.monotonic()))
            self.ended_by_itself = not self.source.stop.is_set()
        except Exception as exc:  # noqa: BLE001 - the assertions report it
            self.errors.append(exc)

    def media_s(self) -> float:
        return self.audio[-1][0].t1 if self.audio else 0.0

    def close(self) -> None:
        self.source.stop.set()
        self.thread.join(15)
        assert not self.thread.is_alive(), "the source did not stop"


def _ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        pytest.skip("no ffmpeg binary on PATH (apt-get install ffmpeg)")
    return path


def _send_ts(path: Path, port: int, *, pmt_pid: int = 0x1000, start_pid: int = 0x100) -> subprocess.Popen:
    """``ffmpeg -re -i PATH … -f mpegts udp://127.0.0.1:PORT``, as a user would start a broadcast."""
    return subprocess.Popen(
        [_ffmpeg(), "-nostdin", "-loglevel", "error", "-re", "-i", str(path), "-c:a", "aac", "-f", "mpegts",
         "-mpegts_pmt_start_pid", str(pmt_pid), "-mpegts_start_pid", str(start_pid),
         f"udp://127.0.0.1:{port}?pkt_size=1316"])


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


# -- a stream added before its broadcast starts ------------------------------------------------------

def test_a_udp_stream_added_before_its_broadcast_waits_for_it_and_picks_it_up() -> None:
    """Registered 5 s before ``ffmpeg -re … -f mpegts udp://…`` starts: the source waits (no limit),
    says so, and takes the whole broadcast from its first packet, with media time from 0."""
    jfk = media(JFK)
    port = free_port(socket.SOCK_DGRAM)
    src = MediaSource(parse_source(f"udp://127.0.0.1:{port}"), open_timeout=1.0, read_timeout=2.0,
                      frame_fps=0, listen_wait=None)
    reader = Reader(src)
    try:
        time.sleep(5.0)  # five silent opens
        assert not reader.errors, reader.errors
        assert reader.thread.is_alive() and src.progress.waiting and not src.progress.ever_connected
        started = time.monotonic()
        sender = _send_ts(jfk, port)
        _wait(lambda: reader.audio, 10, "the broadcast was never picked up")
        picked_up = reader.audio[0][1] - started
        assert not src.progress.waiting and src.progress.connected
        assert sender.wait(20) == 0
        _wait(lambda: reader.media_s() > 10.5, 5, "not all of the broadcast arrived")
    finally:
        reader.close()
    audio = [c for c, _ in reader.audio]
    print(f"\nwaiting UDP source picked the broadcast up {picked_up:.2f} s after ffmpeg started")
    assert picked_up < 3.0
    assert audio[0].t0 == pytest.approx(0.0, abs=0.05)  # waiting is not an outage: no time skipped
    assert reader.gaps == [] and src.progress.reconnects == 0
    assert sum(len(c.samples) for c in audio) / 16_000 == pytest.approx(11.0, abs=0.6)


def test_a_listener_gives_up_after_listen_wait_with_the_reason() -> None:
    port = free_port(socket.SOCK_DGRAM)
    src = MediaSource(parse_source(f"udp://127.0.0.1:{port}"), open_timeout=1.0, read_timeout=1.0,
                      listen_wait=2.5)
    started = time.monotonic()
    with pytest.raises(NothingReceived, match=r"nothing received from udp://127.0.0.1:\d+ within 3 s "
                                              r"\(listen_wait_s\)"):
        next(iter(src))
    assert 2.5 <= time.monotonic() - started < 2.5 + 1.0 + 1.5
    assert not src.progress.ever_connected and "listen_wait_s" in src.progress.last_error


def test_a_pull_source_whose_server_is_not_up_yet_retries_until_it_is() -> None:
    """An HTTP MPEG-TS broadcast that starts 3 s after the stream was added: refused meanwhile (the
    reason shown), then received, instead of failing at the first refusal."""
    clip = media(CLIP)
    port = free_port()
    src = MediaSource(parse_source(f"http://127.0.0.1:{port}/live.ts"), open_timeout=3.0, read_timeout=3.0,
                      frame_fps=0, connect_retry=20.0, reconnect_initial=0.2, reconnect_max=1.0)
    reader = Reader(src)
    try:
        time.sleep(3.0)
        assert not reader.errors and reader.thread.is_alive(), reader.errors
        assert "Connection refused" in (src.progress.last_error or ""), src.progress.last_error
        assert not src.progress.waiting and not src.progress.ever_connected  # "connecting", with the reason
        with broadcast.http_ts(clip, port, speed=2.0, max_seconds=6.0) as b:
            assert b.ready.wait(20), b.errors
            _wait(lambda: reader.media_s() > 3.0, 15, "the broadcast was never received")
    finally:
        reader.close()
    assert not reader.errors and src.progress.reconnects == 0 and reader.gaps == []


def test_a_pull_source_gives_up_after_connect_retry_with_the_reason() -> None:
    src = MediaSource(parse_source(f"tcp://127.0.0.1:{free_port()}"), open_timeout=2.0, read_timeout=2.0,
                      connect_retry=2.0, reconnect_initial=0.2, reconnect_max=0.5)
    started = time.monotonic()
    with pytest.raises(SourceUnreachable, match=r"Connection refused \(tried \d+ times over 2 s: connect_retry_s\)"):
        next(iter(src))
    assert 1.5 < time.monotonic() - started < 4.0
    assert src.progress.last_error.startswith("cannot open tcp://127.0.0.1:")


# -- an HLS server that goes away --------------------------------------------------------------------

class _Server:
    """A folder served over HTTP on one loopback port that can go away and come back."""

    def __init__(self, folder: Path, port: int):
        self.folder, self.port = folder, port
        self.handler = type("Quiet", (SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
        self.up()

    def up(self) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port),
                                         lambda *a: self.handler(*a, directory=str(self.folder)))
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def down(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_live_hls_source_whose_server_goes_away_is_reopened_and_the_outage_is_a_gap() -> None:
    """A live playlist (no #EXT-X-ENDLIST) whose server is gone for 5 s: FFmpeg's HLS demuxer ends
    quietly when it cannot reload the playlist, which is not the end of the broadcast. The source
    reopens with backoff, records the outage as a gap, goes on with what is sent after it, and ends
    by itself once the playlist does get #EXT-X-ENDLIST."""
    clip = media(CLIP)
    folder, port = Path(tempfile.mkdtemp(prefix="manta-hls-")), free_port()
    server = _Server(folder, port)
    stop = threading.Event()
    opts = {"hls_time": "1", "hls_list_size": "5", "hls_segment_filename": str(folder / "seg_%05d.ts"),
            "hls_flags": "temp_file+independent_segments+delete_segments"}
    sender = threading.Thread(target=replay, args=(clip, str(folder / "live.m3u8")), daemon=True,
                              kwargs=dict(format="hls", options=opts, stop=stop, max_seconds=24.0))
    sender.start()
    reader = None
    try:
        _wait(lambda: (folder / "live.m3u8").exists(), 20, "no playlist was written")
        src = MediaSource(parse_source(f"http://127.0.0.1:{port}/live.m3u8"), open_timeout=5.0,
                          read_timeout=5.0, frame_fps=0, reconnect_initial=0.2, reconnect_max=1.0)
        reader = Reader(src)
        _wait(lambda: reader.media_s() > 4.0, 20, "nothing arrived from the playlist")
        server.down()
        down_at, before = time.monotonic(), reader.media_s()
        time.sleep(5.0)
        assert reader.thread.is_alive() and not reader.errors, "the source took the outage for the end"
        server.up()
        _wait(lambda: reader.media_s() > before + 4.0, 20, "nothing arrived after the server came back")
        back_after = next(at for c, at in reader.audio if c.t0 > before) - down_at
        sender.join(40)
        reader.thread.join(20)  # the encoder wrote #EXT-X-ENDLIST: the source ends by itself
        assert reader.ended_by_itself and not reader.errors, reader.errors
    finally:
        stop.set()
        if reader is not None:
            reader.close()
        server.down()
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\nHLS server down 5 s: media went on {back_after:.1f} s after it went away")
    assert src.progress.reconnects == 1 and len(reader.gaps) == 1
    gap = reader.gaps[0]
    assert gap.wall_end - gap.wall_start >= 4.5 and "Connection refused" in gap.reason
    starts = [c.t0 for c, _ in reader.audio]
    assert starts == sorted(starts)  # media time never went back across the reopen
    assert any(c.t0 >= gap.media_t + 4.5 for c, _ in reader.audio)  # and skipped the outage


# -- a broadcast handed over to another encoder ------------------------------------------------------

def test_a_sender_replaced_by_an_encoder_with_new_pids_is_followed_while_it_sends() -> None:
    """Encoder A (PMT 0x1000, audio 0x100) stops and encoder B (PMT 0x1100, audio 0x200) starts on the
    same port at once. PyAV never returns packets of tracks that appear after the open, and B's
    packets keep every read short, so before the watchdog the source heard nothing until B stopped.
    Now, read_timeout after A's last packet, it reopens and takes B's audio while B still sends."""
    jfk = media(JFK)
    port = free_port(socket.SOCK_DGRAM)
    src = MediaSource(parse_source(f"udp://127.0.0.1:{port}"), open_timeout=5.0, read_timeout=2.0,
                      frame_fps=0, reconnect_initial=0.2, reconnect_max=0.5, listen_wait=None)
    reader = Reader(src)
    sender_b = None
    try:
        time.sleep(0.3)
        assert _send_ts(jfk, port).wait(30) == 0
        a_ended, a_media = time.monotonic(), reader.media_s()
        sender_b = _send_ts(jfk, port, pmt_pid=0x1100, start_pid=0x200)
        _wait(lambda: sender_b.poll() is not None, 30, "encoder B did not finish")
        b_ended = time.monotonic()
    finally:
        if sender_b is not None and sender_b.poll() is None:
            sender_b.kill()
        reader.close()
    assert not reader.errors, reader.errors
    assert a_media > 9.0  # A was received
    during_b = [(c, at) for c, at in reader.audio if a_ended + 0.5 < at < b_ended and c.t0 > a_media]
    assert during_b, "nothing of encoder B arrived while it was sending"
    resumed_after = during_b[0][1] - a_ended
    received = sum(len(c.samples) for c, _ in during_b) / 16_000
    print(f"\nhandover: B's audio came {resumed_after:.1f} s after A's end (read timeout 2 s + reopen); "
          f"{received:.1f} s of B's 11 s received while B was sending")
    assert resumed_after < 2.0 + 2.5
    assert received > 5.0
    assert src.progress.reconnects == 1 and len(reader.gaps) == 1
    assert "tracks followed" in reader.gaps[0].reason
