"""Open a live URL whose protocol PyAV's FFmpeg lacks through an ``ffmpeg`` binary that has it.

PyAV's wheels bundle an FFmpeg without libsrt, so ``srt://`` cannot be opened in-process; Debian's
``ffmpeg`` package has SRT (and RIST). Such a source is relayed: the binary connects, remuxes every
audio, video and subtitle track unchanged into MPEG-TS on its stdout, and PyAV demuxes that pipe. The
rest of the source (decoding, timeouts, reconnects, gaps) does not know the difference.

The pipe is read with ``poll`` and a deadline, because the binary may wait forever (an SRT listener
that no sender calls, a sender that went silent): the open timeout bounds the whole open, the read
timeout each later read, as PyAV's own timeouts do for a URL it opens itself. The child is killed and
reaped whenever the container closes, an open fails, or the object is garbage collected.
"""

from __future__ import annotations

import collections
import functools
import os
import re
import select
import shutil
import subprocess
import threading
import time
import weakref

import av

from streaming.source.redact import redact_text

FFMPEG = "ffmpeg"
# FFmpeg prints the URL it failed on, query string and all; an SRT passphrase must not reach a log,
# a status or an error message from there (nor from Manta's own messages, see media.SourceSpec).
_LOG_PREFIX = re.compile(r"^\[[^\]]* @ 0x[0-9a-f]+\]\s*")  # "[srt @ 0x5646...] " on each line
STDERR_LINES = 20  # kept for the reason; the rest of a long-running child's stderr is dropped


class RelayError(OSError):
    """The relay could not open or read the source; the message is readable and secret-free."""


class RelayTimeout(RelayError, TimeoutError):
    """Nothing came through the relay in time."""


class ProtocolMissing(RelayError):
    """Neither PyAV's FFmpeg nor an ffmpeg binary on PATH has the protocol."""


# The schemes a PyAV wheel's FFmpeg may lack (it is built without libsrt). Every other scheme Manta
# takes is in every FFmpeg build, and is never probed: probing udp:// binds a socket and waits a
# second, long enough to lose the start of a broadcast sent to the port being opened.
RELAYED_SCHEMES = frozenset({"srt"})


@functools.lru_cache(maxsize=None)
def pyav_has_protocol(name: str) -> bool:
    """Whether PyAV's FFmpeg has protocol ``name``: a URL without host or port fails on that (for
    srt at once, locally; other protocols may wait or connect to localhost, hence RELAYED_SCHEMES)."""
    try:
        av.open(f"{name}://", timeout=1).close()
    except av.error.ProtocolNotFoundError:
        return False
    except (av.error.FFmpegError, OSError):
        pass
    return True


def ffmpeg_with(name: str, direction: str = "input") -> str | None:
    """The path of an ``ffmpeg`` on PATH that has protocol ``name`` for ``direction`` ("input" or
    "output"), or None. Looked up each time (PATH may change; installing ffmpeg needs no restart),
    the binary's protocol list once per path."""
    path = shutil.which(FFMPEG)
    if path is None:
        return None
    return path if name in _binary_protocols(path).get(direction, ()) else None


@functools.lru_cache(maxsize=8)
def _binary_protocols(path: str) -> dict[str, frozenset[str]]:
    try:
        out = subprocess.run([path, "-hide_banner", "-protocols"], capture_output=True, text=True,
                             timeout=10, stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    found: dict[str, set[str]] = {"input": set(), "output": set()}
    section = None
    for line in out.splitlines():
        word = line.strip()
        if word.rstrip(":").lower() in found:
            section = word.rstrip(":").lower()
        elif section and word:
            found[section].add(word)
    return {k: frozenset(v) for k, v in found.items()}


def relay_command(binary: str, uri: str) -> list[str]:
    return [binary, "-nostdin", "-hide_banner", "-loglevel", "error",
            # Start quickly, as PyAV does for live URLs (media.py): 1 s of probing, not ffmpeg's 5.
            "-analyzeduration", "1000000", "-probesize", "1000000",
            "-i", uri,
            # Every audio, video and subtitle track, as they are (data tracks such as SCTE-35 may
            # not remux); "?" lets a source without one of the kinds through.
            "-map", "0:v?", "-map", "0:a?", "-map", "0:s?", "-c", "copy",
            # Each packet out as soon as it is in: no waiting to interleave with a sparse subtitle
            # track, no buffering in the muxer. Latency stays that of the protocol.
            "-max_interleave_delta", "0", "-flush_packets", "1",
            "-f", "mpegts", "pipe:1"]


class _Child:
    """The ffmpeg process and a bounded, poll-timed reader of its stdout (PyAV's file object)."""

    def __init__(self, command: list[str], uri: str, open_timeout: float, read_timeout: float):
        self.uri, self.read_timeout = uri, read_timeout
        self.deadline: float | None = time.monotonic() + open_timeout  # None once open
        self.open_timeout = open_timeout
        self.ended = False
        self.lines: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, close_fds=True)
        # A source dropped without close() (a probe whose stream never started) must not leave it.
        self._finalizer = weakref.finalize(self, _reap, self.proc)
        # stderr is drained by a thread so a chatty child never blocks on a full pipe. The thread
        # holds no reference to self, which would keep the finalizer above from ever running.
        self._stderr = threading.Thread(target=_drain, args=(self.proc.stderr, self.lines, uri),
                                        name="relay-stderr", daemon=True)
        self._stderr.start()
        self._poll = select.poll()  # not select(): no FD_SETSIZE limit in a process with many fds
        self._poll.register(self.proc.stdout.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)

    def read(self, size: int) -> bytes:
        if self.ended:
            # After a timeout, PyAV may read again before it raises the first error: EOF, not a
            # second exception (which it would print as "being dropped").
            return b""
        wait = self.read_timeout if self.deadline is None else self.deadline - time.monotonic()
        if not self._poll.poll(max(0.0, wait) * 1000):
            self.ended = True
            if self.deadline is not None:
                raise RelayTimeout(f"nothing received within {self.open_timeout:g} s")
            raise RelayTimeout(f"nothing received for {self.read_timeout:g} s")
        data = os.read(self.proc.stdout.fileno(), size)
        self.ended = not data
        return data

    def reason(self, wait: float = 1.0) -> str | None:
        """Why the child ended (its last error line), once it has; None while it runs or if it
        finished cleanly."""
        try:
            code = self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            return None
        self._stderr.join(wait)
        if code == 0:
            return None
        return self.lines[-1] if self.lines else f"ffmpeg exited with status {code}"

    def close(self) -> None:
        self.ended = True
        self._finalizer()
        self.proc.stdout.close()
        self._stderr.join(2.0)
        self.proc.stderr.close()


def _drain(stderr, lines: collections.deque[str], uri: str) -> None:
    for raw in iter(stderr.readline, b""):
        line = _LOG_PREFIX.sub("", raw.decode("utf-8", "replace").strip())
        # "srt://host:port?...: Input/output error": Manta's message names the source already.
        line = line[len(uri) + 2:] if line.startswith(uri + ": ") else line
        if line:
            lines.append(redact_text(line))


def _reap(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(5.0)
    except subprocess.TimeoutExpired:  # unkillable (uninterruptible I/O): nothing more to do here
        pass


class RelayedContainer:
    """PyAV's input container on the relay's pipe; it ends the child when closed, and a read that
    ends because the child failed raises its reason rather than looking like a clean end."""

    def __init__(self, container, child: _Child):
        self._container, self._child = container, child

    def __getattr__(self, name: str):
        return getattr(self._container, name)

    def demux(self, *streams):
        yield from self._container.demux(*streams)
        reason = self._child.reason()
        if reason is not None:
            raise RelayError(reason)

    def close(self) -> None:
        try:
            self._container.close()
        finally:
            self._child.close()


def open_relay(uri: str, scheme: str, open_timeout: float, read_timeout: float) -> RelayedContainer:
    """Open ``uri`` through an ffmpeg binary that has ``scheme``; raise ProtocolMissing when none
    has, RelayTimeout when nothing came within ``open_timeout``, or RelayError with the reason."""
    binary = ffmpeg_with(scheme)
    if binary is None:
        raise ProtocolMissing(f"no {scheme}:// protocol in PyAV's FFmpeg or an ffmpeg binary on PATH")
    child = _Child(relay_command(binary, uri), uri, open_timeout, read_timeout)
    try:
        # The same quick start as the binary's own probing (relay_command).
        container = av.open(child, format="mpegts", options={"analyzeduration": "1000000",
                                                             "probesize": "1000000"})
    except RelayTimeout:
        child.close()
        raise
    except (av.error.FFmpegError, OSError) as exc:
        # The child ended before PyAV saw a stream: its stderr says why (connection refused...).
        reason = child.reason()
        child.close()
        raise RelayError(reason or str(getattr(exc, "strerror", None) or exc)) from None
    except BaseException:
        child.close()
        raise
    child.deadline = None  # opened: from now on each read has the read timeout
    return RelayedContainer(container, child)
