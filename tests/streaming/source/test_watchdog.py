"""The per-track read timeout leans on a private detail of PyAV (streaming/source/watchdog.py): this
fails, rather than the watchdog quietly doing nothing, when an installed PyAV differs."""

from __future__ import annotations

import threading
import time

import av.container.core as pyav_core

from streaming.source import watchdog


def test_the_stand_in_clock_takes_on_the_installed_pyav() -> None:
    assert watchdog.install() and watchdog.install()  # once, and again is harmless
    assert watchdog.installed()
    assert abs(pyav_core.time.monotonic() - time.monotonic()) < 0.1  # passed through outside a wait
    assert pyav_core.time.sleep is time.sleep  # the rest of the module as it was


def test_a_wait_past_its_limit_makes_pyavs_clock_jump_in_its_own_thread_only() -> None:
    watchdog.install()
    seen_elsewhere = []
    with watchdog.bounded(0.05) as wait:
        assert abs(pyav_core.time.monotonic() - time.monotonic()) < 0.1 and not wait.tripped
        time.sleep(0.1)
        other = threading.Thread(target=lambda: seen_elsewhere.append(pyav_core.time.monotonic() - time.monotonic()))
        other.start()
        other.join()
        first, second = pyav_core.time.monotonic(), pyav_core.time.monotonic()
        assert wait.tripped and second - first > watchdog.JUMP_S / 2  # every reading further ahead
    assert abs(seen_elsewhere[0]) < 0.1  # another thread's reads are not touched
    assert abs(pyav_core.time.monotonic() - time.monotonic()) < 0.1  # nor this one's after the wait
    with watchdog.bounded(None) as wait:  # no bound: PyAV's own timeout only
        assert abs(pyav_core.time.monotonic() - time.monotonic()) < 0.1 and not wait.tripped
