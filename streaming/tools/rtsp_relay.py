"""The smallest RTSP server that serves a live stream to players, for loopback tests and trials.

FFmpeg can push RTSP (ANNOUNCE/RECORD) but cannot serve it to players that pull (DESCRIBE/SETUP/
PLAY), which is how a user points Manta at a camera or a media server. ``RtspRelay`` sits between:
an encoder pushes a path, any number of players pull it, the RTP and RTCP packets relayed as they
come, interleaved on the RTSP connection both ways (RFC 2326 §10.12).
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlparse

HOST = "127.0.0.1"
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 455: "Method Not Valid in This State",
           461: "Unsupported Transport"}
METHODS = "OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, TEARDOWN, GET_PARAMETER"


@dataclass
class _Published:
    sdp: bytes
    controls: list[str]  # each media section's a=control, in track order
    readers: list[_RtspSession] = field(default_factory=list)
    reports: dict[int, bytes] = field(default_factory=dict)  # track -> its latest RTCP sender report


def sdp_controls(sdp: bytes) -> list[str]:
    controls, in_media = [], False
    for line in sdp.decode(errors="replace").splitlines():
        if line.startswith("m="):
            in_media = True
            controls.append("")
        elif in_media and line.startswith("a=control:"):
            controls[-1] = line.split(":", 1)[1].strip()
    return controls


class RtspRelay:
    """A minimal RTSP server on loopback: one encoder per path pushes (ANNOUNCE, SETUP, RECORD),
    any number of players pull (DESCRIBE, SETUP, PLAY). TCP-interleaved RTP only, which is what
    Manta asks for (rtsp_transport=tcp); a player asking for UDP gets 461."""

    def __init__(self, port: int, host: str = HOST, on_publish: Callable[[str], None] | None = None):
        self.sock = socket.create_server((host, port))
        self.sock.settimeout(0.2)
        self.on_publish = on_publish
        self.paths: dict[str, _Published] = {}
        self.lock = threading.Lock()
        self.closed = threading.Event()
        self.sessions: set[_RtspSession] = set()

    def serve(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            session = _RtspSession(self, conn)
            with self.lock:
                self.sessions.add(session)
            threading.Thread(target=session.run, name="rtsp-session", daemon=True).start()

    def close(self) -> None:
        self.closed.set()
        self.sock.close()
        with self.lock:
            sessions = list(self.sessions)
        for session in sessions:
            session.hang_up()


class _RtspSession:
    def __init__(self, relay: RtspRelay, sock: socket.socket):
        self.relay, self.sock = relay, sock
        self.id = f"{id(self):x}"
        self.send_lock = threading.Lock()
        # A player that stops reading is dropped after 2 s rather than stalling the encoder.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 2, 0))
        self.announced: _Published | None = None  # as publisher: the stream it pushes
        self.playing: _Published | None = None  # as player
        self.path = ""
        self.in_channels: dict[int, tuple[int, int]] = {}  # publisher: channel -> (track, is_rtcp)
        self.out_channels: dict[int, int] = {}  # player: track -> its RTP channel (RTCP is +1)

    def run(self) -> None:
        rfile = self.sock.makefile("rb")
        try:
            while not self.relay.closed.is_set():
                first = rfile.read(1)
                if not first:
                    return
                if first == b"$":  # interleaved RTP/RTCP
                    channel, size = struct.unpack(">BH", rfile.read(3))
                    data = rfile.read(size)
                    if self.announced is not None:
                        self._forward(channel, data)
                    continue  # a player's receiver reports: nothing to act on
                request = (first + rfile.readline()).decode(errors="replace").split()
                headers = {}
                while line := rfile.readline().strip():
                    key, _, value = line.decode(errors="replace").partition(":")
                    headers[key.strip().lower()] = value.strip()
                body = rfile.read(int(headers.get("content-length", 0)))
                if len(request) < 2 or not self._answer(request[0], request[1], headers, body):
                    return
        except OSError:
            return
        finally:
            self._end()

    def hang_up(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def send(self, data: bytes) -> bool:
        try:
            with self.send_lock:
                self.sock.sendall(data)
            return True
        except OSError:
            self.hang_up()
            return False

    def _reply(self, headers: dict, code: int = 200, extra: dict | None = None, body: bytes = b"") -> None:
        lines = [f"RTSP/1.0 {code} {REASONS[code]}", f"CSeq: {headers.get('cseq', '0')}",
                 f"Session: {self.id};timeout=60"]
        lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    def _answer(self, method: str, url: str, headers: dict, body: bytes) -> bool:
        path = urlparse(url).path.rstrip("/")
        relay = self.relay
        if method == "ANNOUNCE":
            self.announced, self.path = _Published(body, sdp_controls(body)), path
        elif method == "DESCRIBE":
            with relay.lock:
                published = relay.paths.get(path)
            if published is None:
                self._reply(headers, 404)
                return True
            self._reply(headers, body=published.sdp,
                        extra={"Content-Type": "application/sdp", "Content-Base": url.rstrip("/") + "/"})
            return True
        elif method == "SETUP":
            return self._setup(path, headers)
        elif method == "RECORD":
            if self.announced is None:
                self._reply(headers, 455)
                return True
            with relay.lock:
                relay.paths[self.path] = self.announced
            if relay.on_publish:
                relay.on_publish(self.path)
        elif method == "PLAY":
            if self.playing is None:
                self._reply(headers, 455)
                return True
            self._reply(headers, extra={"Range": "npt=0.000-"})
            # The sender reports map RTP time to wall time: without them a player joining now
            # could not line the audio and video tracks up until the next report.
            for track, report in list(self.playing.reports.items()):
                self._send_track(track, 1, report)
            with relay.lock:
                self.playing.readers.append(self)
            return True
        elif method == "TEARDOWN":
            self._reply(headers)
            return False
        self._reply(headers, extra={"Public": METHODS} if method == "OPTIONS" else None)
        return True

    def _setup(self, path: str, headers: dict) -> bool:
        transport = headers.get("transport", "")
        params = dict(p.partition("=")[::2] for p in transport.split(";"))
        if "interleaved" not in params:
            self._reply(headers, 461)
            return True
        first = int(params["interleaved"].split("-")[0])
        base, _, control = path.rpartition("/")
        published = self.announced
        if published is None:
            with self.relay.lock:
                published = self.playing or self.relay.paths.get(base)
        if published is None or control not in published.controls:
            self._reply(headers, 404)
            return True
        track = published.controls.index(control)
        if published is self.announced:
            self.in_channels[first], self.in_channels[first + 1] = (track, 0), (track, 1)
        else:
            self.playing, self.path = published, base
            self.out_channels[track] = first
        self._reply(headers, extra={"Transport": transport})
        return True

    def _forward(self, channel: int, data: bytes) -> None:
        track, rtcp = self.in_channels.get(channel, (-1, 0))
        if track < 0:
            return
        published = self.announced
        if rtcp and len(data) > 1 and data[1] == 200:  # RTCP SR
            published.reports[track] = data
        with self.relay.lock:
            readers = list(published.readers)
        for reader in readers:
            reader._send_track(track, rtcp, data)

    def _send_track(self, track: int, rtcp: int, data: bytes) -> None:
        channel = self.out_channels.get(track)
        if channel is not None:
            self.send(struct.pack(">cBH", b"$", channel + rtcp, len(data)) + data)

    def _end(self) -> None:
        relay = self.relay
        with relay.lock:
            relay.sessions.discard(self)
            if self.playing is not None and self in self.playing.readers:
                self.playing.readers.remove(self)
            readers = []
            if self.announced is not None and relay.paths.get(self.path) is self.announced:
                del relay.paths[self.path]
                readers = self.announced.readers  # the broadcast is over for its players too
        for reader in readers:
            reader.hang_up()
        self.hang_up()
        self.sock.close()
