"""The read timeout, counted per packet of the tracks a source follows rather than per packet read.

PyAV's read timeout bounds one ``av_read_frame`` call. ``demux(streams)`` reads packets of every
track, skips those of tracks not asked for without returning, and never returns a track that
appeared after the open (its stream list is fixed then). When a broadcast is handed over to another
encoder with new PIDs and no pause, every read returns at once with a packet of a new track: the
timeout never fires, and the source hears nothing until the new encoder stops.

PyAV's interrupt check reads the clock through the ``time`` module of ``av.container.core``: at the
start of each read, and at every check during one (FFmpeg checks before each read from the network,
data flowing or not). ``install()`` puts a stand-in for that module there. It passes
``time.monotonic`` through, except in a thread inside ``bounded(limit)`` whose wait has lasted past
``limit``: there every reading jumps far ahead, so the next check fires and the read fails with
FFmpeg's "Immediate exit requested", as a silent source's does. The source then reopens (a reconnect,
the outage recorded as a gap), and the new open sees the new encoder's tracks.

This leans on a private detail of PyAV (checked with 18.x): ``install()`` changes nothing and says
False when that detail is not there, and tests/streaming/source/test_watchdog.py fails then.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import av.container.core as _pyav_core

JUMP_S = 1e6  # far beyond any read timeout
_local = threading.local()
_lock = threading.Lock()


class TracksSilent(OSError):
    """No packet of the followed tracks for the limit, whether or not other packets came."""


@dataclass
class Wait:
    since: float
    limit: float
    jumps: int = 0  # > 0: the limit passed and the read was interrupted

    @property
    def tripped(self) -> bool:
        return self.jumps > 0


class _Clock:
    """Stands in for the ``time`` module inside ``av.container.core``."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name: str):
        return getattr(self._real, name)

    def monotonic(self) -> float:
        now = self._real.monotonic()
        wait = getattr(_local, "wait", None)
        if wait is None or now - wait.since <= wait.limit:
            return now
        wait.jumps += 1
        return now + wait.jumps * JUMP_S  # each reading further ahead: the check after a start fires


def install() -> bool:
    """Put the stand-in clock in place (once per process); False when PyAV's internals differ."""
    with _lock:
        current = getattr(_pyav_core, "time", None)
        if isinstance(current, _Clock):
            return True
        if current is not time:
            return False
        _pyav_core.time = _Clock(time)
        return True


def installed() -> bool:
    return isinstance(getattr(_pyav_core, "time", None), _Clock)


@contextmanager
def bounded(limit: float | None) -> Iterator[Wait]:
    """While inside, PyAV reads in this thread fail once this wait has lasted ``limit`` s (None: no
    bound here, PyAV's own read timeout only)."""
    wait = Wait(time.monotonic(), float("inf") if limit is None else limit)
    _local.wait = wait if limit is not None else None
    try:
        yield wait
    finally:
        _local.wait = None
