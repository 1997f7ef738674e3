"""Before a live source's first connection: a listener waits for its sender, a pull source retries its
server for a while, and what retrying cannot fix fails at once (streaming/source/patience.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from streaming.source.patience import FirstConnect, live_state
from streaming.source.policy import SourceRefused
from streaming.source.spec import NothingReceived, SourceError, SourceUnreachable, is_listener, parse_source

SILENT = NothingReceived("nothing received from udp://127.0.0.1:5000 within 5 s")
REFUSED = SourceUnreachable("cannot open rtsp://127.0.0.1:8554/live: Connection refused")


def _tries(first: FirstConnect, errors, step: float) -> list[float | None]:
    """Attempt after attempt, each taking ``step`` seconds and failing with the next error."""
    now, waits = 0.0, []
    for exc in errors:
        first.attempt(now)
        now += step
        wait = first.after_failure(exc, now)
        waits.append(wait)
        if wait is None:
            break
        now += wait
    return waits


@pytest.mark.parametrize("url, listener", [
    ("udp://127.0.0.1:5000", True), ("rtp://127.0.0.1:5004", True),
    ("srt://127.0.0.1:9000?mode=listener", True), ("srt://127.0.0.1:9000", False),
    ("srt://127.0.0.1:9000?mode=caller", False), ("rtsp://127.0.0.1/x", False),
    ("http://127.0.0.1/live.m3u8", False), ("tcp://127.0.0.1:9000", False), ("rtmp://127.0.0.1/live", False),
])
def test_listeners_are_the_sources_that_bind_and_wait(url: str, listener: bool) -> None:
    assert is_listener(parse_source(url)) is listener


def test_a_listener_without_a_limit_waits_for_its_sender_as_long_as_it_runs() -> None:
    first = FirstConnect(listener=True, listen_wait=None)
    assert not first.waiting  # the first open is still "connecting"
    waits = _tries(first, [SILENT] * 1000, step=5.0)  # 5000 s of silence
    assert waits == [0.0] * 1000  # open after open, the port never left closed
    assert first.waiting


def test_a_listener_gives_up_after_listen_wait_saying_how_long_it_waited() -> None:
    first = FirstConnect(listener=True, listen_wait=12.0)
    assert _tries(first, [SILENT] * 10, step=5.0) == [0.0, 0.0, None]  # 5, 10, then 15 s >= 12 s
    error = first.give_up(SILENT, 15.0)
    assert isinstance(error, NothingReceived)
    assert str(error) == "nothing received from udp://127.0.0.1:5000 within 15 s (listen_wait_s)"


def test_listen_wait_zero_is_the_old_quick_failure() -> None:
    first = FirstConnect(listener=True, listen_wait=0.0)
    assert _tries(first, [SILENT], step=5.0) == [None]
    assert first.give_up(SILENT, 5.0) is SILENT and not first.waiting


def test_a_listener_that_cannot_bind_or_is_refused_fails_at_once() -> None:
    for exc in (SourceUnreachable("cannot open udp://127.0.0.1:5000: Address already in use"),
                SourceRefused("source refused: a udp:// listener receives on an address of this machine")):
        first = FirstConnect(listener=True, listen_wait=None)
        assert _tries(first, [exc], step=0.01) == [None]
        assert first.give_up(exc, 0.01) is exc


def test_a_pull_source_retries_with_backoff_within_connect_retry() -> None:
    first = FirstConnect(listener=False, connect_retry=30.0, initial=0.5, max_delay=8.0)
    waits = _tries(first, [REFUSED] * 20, step=0.01)
    assert waits[:-1] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0] and waits[-1] is None  # 23.5 s, then 31.5 > 30
    error = first.give_up(REFUSED, 23.6)
    assert str(error) == f"{REFUSED} (tried 7 times over 24 s: connect_retry_s)"
    assert not first.waiting  # a pull source shows "connecting" with its reason, not "waiting"


def test_what_retrying_cannot_fix_fails_at_the_first_attempt() -> None:
    for exc in (SourceError("cannot resolve host 'camera.lcoal'"), SourceRefused("source refused: 10.0.0.1"),
                SourceError("not a media file: http://127.0.0.1/index.html (no audio or video stream found)")):
        first = FirstConnect(listener=False, connect_retry=30.0)
        assert _tries(first, [exc], step=0.01) == [None]
        assert first.give_up(exc, 0.01) is exc


def test_connect_retry_zero_fails_at_the_first_refusal() -> None:
    first = FirstConnect(listener=False, connect_retry=0.0)
    assert _tries(first, [REFUSED], step=0.01) == [None]
    assert first.give_up(REFUSED, 0.01) is REFUSED


def _progress(**kw) -> SimpleNamespace:
    return SimpleNamespace(**({"waiting": False, "connected": False, "last_error": None} | kw))


def test_the_state_a_live_stream_shows() -> None:
    assert live_state("connecting", _progress()) == ("connecting", None)
    assert live_state("connecting", _progress(waiting=True, last_error=str(SILENT))) == ("waiting", None)
    assert live_state("connecting", _progress(last_error=str(REFUSED))) == ("connecting", str(REFUSED))
    assert live_state("ingesting", _progress(connected=True)) == ("ingesting", None)
    assert live_state("ingesting", _progress(last_error="stream interrupted")) == ("reconnecting",
                                                                                  "stream interrupted")
    assert live_state("failed", _progress(), "why") == ("failed", "why")
