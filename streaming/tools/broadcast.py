"""Loopback broadcast servers: a media file sent live at real-time pace (or ``speed``× faster) the
way each protocol is really served, so Manta can be pointed at it exactly as a user would.

- ``http_ts``: a growing MPEG-TS body at ``http://127.0.0.1:PORT/live.ts`` (one encoder, every
  client gets the broadcast from the moment it connects).
- ``hls``: FFmpeg's HLS muxer writes segments and a growing ``live.m3u8`` (``#EXT-X-ENDLIST`` once the
  broadcast ends) into a folder that a local HTTP server serves.
- ``rtmp``: the sender is the RTMP server (FFmpeg's listen mode); Manta plays
  ``rtmp://127.0.0.1:PORT/live/stream`` as a client.
- ``rtsp``: FFmpeg cannot serve RTSP to players, only push to a server, so ``RtspRelay`` is that
  server: the encoder pushes (ANNOUNCE/RECORD), players pull ``rtsp://127.0.0.1:PORT/live/stream``
  (DESCRIBE/SETUP/PLAY), RTP interleaved on the RTSP connection both ways (RFC 2326 §10.12).
- ``srt``: an SRT listener; Manta calls it. PyAV's wheels lack libsrt, so an ffmpeg binary that has
  it (Debian's) sends, fed by this process through a pipe.
  (UDP needs nothing more than ``replay``: Manta is the one listening there.)

Each returns a started ``Broadcast``; ``close()`` (or leaving its ``with`` block) stops it.
"""

from __future__ import annotations

import fcntl
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from streaming.source.relay import ffmpeg_with, pyav_has_protocol
from streaming.tools.replay import ReplayLog, replay
from streaming.tools.rtsp_relay import RtspRelay

HOST = "127.0.0.1"


@dataclass
class Broadcast:
    """One sender running in the background. ``url`` is what a user gives Manta."""

    url: str
    stop: threading.Event = field(default_factory=threading.Event)
    log: ReplayLog = field(default_factory=ReplayLog)
    ready: threading.Event = field(default_factory=threading.Event)  # the url answers now
    errors: list[BaseException] = field(default_factory=list)  # what failed before close()
    threads: list[threading.Thread] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)  # unblock the threads
    cleanups: list[Callable[[], None]] = field(default_factory=list)  # once they have ended
    sender: threading.Thread | None = None  # the one that encodes and paces
    processes: list[subprocess.Popen] = field(default_factory=list)  # killed and reaped by close()

    def spawn(self, target: Callable[[], object], name: str, sender: bool = False) -> None:
        def run() -> None:
            try:
                target()
            except Exception as exc:  # noqa: BLE001 - kept for the caller; after close() it is expected
                if not self.stop.is_set():
                    self.errors.append(exc)

        thread = threading.Thread(target=run, name=name, daemon=True)
        self.threads.append(thread)
        if sender:
            self.sender = thread
        thread.start()

    @property
    def sending(self) -> bool:
        return self.sender is not None and self.sender.is_alive() and not self.log.finished

    def close(self, timeout: float = 10.0) -> None:
        self.stop.set()
        for close in self.closers:
            close()
        for proc in self.processes:  # also unblocks a sender writing to one that waits for a caller
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout)
        for thread in self.threads:
            thread.join(timeout)
        for cleanup in self.cleanups:
            cleanup()

    def __enter__(self) -> Broadcast:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _send(b: Broadcast, path, target, name: str, **send) -> None:
    b.spawn(lambda: replay(path, target, stop=b.stop, log=b.log, **send), name, sender=True)


def srt(path, port: int, **send) -> Broadcast:
    """An SRT listener sending MPEG-TS; Manta calls ``srt://127.0.0.1:PORT``. Sent by PyAV when its
    FFmpeg has libsrt, else by an ffmpeg binary that has SRT (Debian's), fed MPEG-TS on its stdin
    (``can_send("srt")`` says whether either can)."""
    b = Broadcast(f"srt://{HOST}:{port}")
    b.ready.set()  # a caller that comes too early is refused and tries again, as with RTMP
    target = f"{b.url}?mode=listener&transtype=live"
    if protocol_available("srt"):
        _send(b, path, target, "srt-sender", **send)
        return b
    binary = ffmpeg_with("srt", "output")
    if binary is None:
        raise RuntimeError("no SRT: neither PyAV's FFmpeg nor an ffmpeg binary on PATH has srt://")
    # A small probe: the listener opens (and the broadcast clock starts) at once, not 5 s of media later.
    proc = subprocess.Popen([binary, "-nostdin", "-hide_banner", "-loglevel", "error", "-probesize", "32768",
                             "-analyzeduration", "0", "-f", "mpegts", "-i", "pipe:0", "-map", "0", "-c", "copy",
                             "-flush_packets", "1", "-f", "mpegts", target], stdin=subprocess.PIPE)
    # A 4 KiB pipe: while no caller is there the sender blocks (and its clock waits, see replay._send)
    # instead of queueing seconds of media that would reach the caller in a burst.
    fcntl.fcntl(proc.stdin.fileno(), fcntl.F_SETPIPE_SZ, 4096)
    b.processes.append(proc)

    def send_to_binary() -> None:
        try:
            replay(path, proc.stdin, stop=b.stop, log=b.log, buffer_size=188 * 7,
                   options={"flush_packets": "1"}, **send)
        finally:
            try:  # the end of the broadcast: the binary flushes and hangs up (close() reaps it)
                proc.stdin.close()
            except OSError:
                pass

    b.spawn(send_to_binary, "srt-sender", sender=True)
    return b


def can_send(name: str) -> bool:
    """Whether ``srt`` (or another sender here) can send protocol ``name``: by PyAV or a binary."""
    return protocol_available(name) or ffmpeg_with(name, "output") is not None


def rtmp(path, port: int, *, app: str = "live/stream", accept_s: int = 60, **send) -> Broadcast:
    """An RTMP server (FFmpeg's listen mode) that starts sending when a player connects."""
    b = Broadcast(f"rtmp://{HOST}:{port}/{app}")
    b.ready.set()  # the port listens as soon as the thread runs; Manta retries a refused first try
    _send(b, path, b.url, "rtmp-server", listen=True, options={"timeout": str(accept_s)}, **send)
    # FFmpeg waits in accept() with no way to interrupt it: a connection that is not RTMP ends it.
    b.closers.append(lambda: _poke(port))
    return b


def http_ts(path, port: int, *, name: str = "live.ts", **send) -> Broadcast:
    """One MPEG-TS encoder whose output every client of ``http://127.0.0.1:PORT/live.ts`` receives
    from the moment it connects, as a body that grows until the broadcast ends."""
    b = Broadcast(f"http://{HOST}:{port}/{name}")
    fanout = _Fanout()
    _serve(b, port, _ts_handler(fanout, b.stop, "/" + name))

    def encode() -> None:
        try:  # flushed every TS packet: a client is no further behind than the muxer itself
            replay(path, fanout, stop=b.stop, log=b.log, buffer_size=188 * 7,
                   options={"flush_packets": "1"}, **send)
        finally:
            fanout.close()  # the bodies end with the broadcast

    b.spawn(encode, "http-ts-encoder", sender=True)
    b.closers.insert(0, fanout.close)
    b.ready.set()
    return b


def hls(path, port: int, *, segment_s: float = 1.0, window: int = 0, folder: Path | None = None,
        host: str = HOST, **send) -> Broadcast:
    """HLS at ``http://HOST:PORT/live.m3u8``. ``window`` 0 keeps every segment listed (an EVENT
    playlist that only grows); otherwise a sliding window of that many, older segments deleted.
    ``host``: another loopback address (127.0.0.2) stands for a remote server: ``no_proxy`` and
    the like single out 127.0.0.1 only."""
    own = folder is None
    folder = Path(tempfile.mkdtemp(prefix="manta-hls-")) if own else Path(folder)
    b = Broadcast(f"http://{host}:{port}/live.m3u8")
    _serve(b, port, _quiet(SimpleHTTPRequestHandler), host=host, directory=str(folder))
    # temp_file: segments and the playlist appear by rename, so a client never reads half of one.
    flags = ["temp_file", "independent_segments"] + ([] if window == 0 else ["delete_segments"])
    opts = {"hls_time": f"{segment_s:g}", "hls_list_size": str(window), "hls_flags": "+".join(flags),
            "hls_segment_filename": str(folder / "seg_%05d.ts")}
    if window == 0:
        opts["hls_playlist_type"] = "event"
    playlist = folder / "live.m3u8"
    _send(b, path, str(playlist), "hls-encoder", format="hls", options=opts, **send)

    def watch() -> None:
        while not b.stop.wait(0.05) and not b.ready.is_set():
            if playlist.exists():
                b.ready.set()

    b.spawn(watch, "hls-ready")
    if own:
        b.cleanups.append(lambda: shutil.rmtree(folder, ignore_errors=True))
    return b


def rtsp(path, port: int, *, name: str = "live/stream", **send) -> Broadcast:
    """An encoder pushing to an ``RtspRelay`` that players pull ``rtsp://127.0.0.1:PORT/live/stream``
    from."""
    b = Broadcast(f"rtsp://{HOST}:{port}/{name}")
    relay = RtspRelay(port, on_publish=lambda p: b.ready.set() if p == "/" + name else None)
    b.spawn(relay.serve, "rtsp-relay")
    b.closers.append(relay.close)
    _send(b, path, b.url, "rtsp-pusher", **send)
    return b


def protocol_available(name: str) -> bool:
    """Whether PyAV's FFmpeg has protocol ``name``, for SRT (it needs a build with libsrt)."""
    return pyav_has_protocol(name)


def _poke(port: int) -> None:
    try:
        socket.create_connection((HOST, port), timeout=0.5).close()
    except OSError:
        pass


def _quiet(handler: type) -> type:
    return type(handler.__name__, (handler,), {"log_message": lambda self, *args: None})


def _serve(b: Broadcast, port: int, handler: type, host: str = HOST, **handler_kw) -> ThreadingHTTPServer:
    make = (lambda *a: handler(*a, **handler_kw)) if handler_kw else handler
    server = ThreadingHTTPServer((host, port), make)
    server.daemon_threads = True
    b.spawn(lambda: server.serve_forever(poll_interval=0.1), "http-server")
    b.closers.append(lambda: (server.shutdown(), server.server_close()))
    return server


class _Fanout:
    """A writable file for PyAV whose bytes go to every connected client's queue."""

    def __init__(self, backlog: int = 4096):  # chunks of 1316 bytes: ~5 MB, seconds of video
        self.lock = threading.Lock()
        self.clients: set[queue.Queue] = set()
        self.backlog = backlog
        self.closed = False

    def write(self, data) -> int:
        chunk = bytes(data)
        with self.lock:
            for q in list(self.clients):
                if q.qsize() >= self.backlog:  # a client this far behind is dropped, not waited for
                    self.clients.discard(q)
                    q.put(None)
                else:
                    q.put(chunk)
        return len(chunk)

    def join(self) -> queue.Queue:
        q: queue.Queue = queue.Queue()
        with self.lock:
            if self.closed:
                q.put(None)
            else:
                self.clients.add(q)
        return q

    def leave(self, q: queue.Queue) -> None:
        with self.lock:
            self.clients.discard(q)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            for q in self.clients:
                q.put(None)
            self.clients.clear()


def _ts_handler(fanout: _Fanout, stop: threading.Event, route: str) -> type:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.split("?")[0] != route or fanout.closed:
                self.send_error(404)  # nothing on air (any more): a client retries later
                return
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()  # no Content-Length: the body lasts as long as the broadcast
            q = fanout.join()
            try:
                while not stop.is_set():
                    try:
                        chunk = q.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    if chunk is None:
                        return
                    self.wfile.write(chunk)
            except OSError:
                return  # the client went away
            finally:
                fanout.leave(q)

    return _quiet(Handler)

