"""srt:// through an ffmpeg binary when PyAV's FFmpeg has no libsrt (streaming/source/relay.py): a
source that cannot be reached fails within its open timeout with a readable reason that shows no
passphrase, and no ffmpeg process is left behind, not even a zombie."""

from __future__ import annotations

import gc
import logging
import socket
import time

import pytest

from streaming.source import container as container_mod
from streaming.source.media import MediaSource, SourceError, parse_source
from streaming.source import relay
from streaming.source.redact import redact_text as redact
from streaming.source.relay import ffmpeg_with, pyav_has_protocol
from tests.support.helpers import child_processes, free_port

pytestmark = pytest.mark.timeout(60)

SECRET = "correct-horse-battery"


@pytest.fixture
def relayed(monkeypatch):
    """SRT goes through the binary: skipped where no ffmpeg on PATH has srt (CI installs Debian's);
    a PyAV built with libsrt is told it has none, so the relay is what is tested."""
    if ffmpeg_with("srt") is None:
        pytest.skip("no ffmpeg binary with srt on PATH (apt-get install ffmpeg)")
    monkeypatch.setattr(container_mod, "pyav_has_protocol", lambda name: False)


def test_listener_nobody_calls_fails_within_the_open_timeout(relayed, caplog):
    url = f"srt://127.0.0.1:{free_port(socket.SOCK_DGRAM)}?mode=listener&passphrase={SECRET}"
    caplog.set_level(logging.DEBUG)
    source = MediaSource(parse_source(url), open_timeout=1.5, read_timeout=1.5)
    started = time.monotonic()
    with pytest.raises(SourceError) as failed:
        source.probe()
    took = time.monotonic() - started
    message = str(failed.value)
    assert 1.4 < took < 4.0, took
    assert "nothing received" in message and "1.5 s" in message, message
    assert SECRET not in message and SECRET not in caplog.text
    assert child_processes("ffmpeg") == []  # killed and reaped


def test_caller_with_no_listener_gives_ffmpegs_reason(relayed):
    # connect_timeout (ms) passes through in the URL, as every SRT option does.
    url = f"srt://127.0.0.1:{free_port(socket.SOCK_DGRAM)}?connect_timeout=300&passphrase={SECRET}"
    started = time.monotonic()
    with pytest.raises(SourceError) as failed:
        MediaSource(parse_source(url), open_timeout=5, read_timeout=5).probe()
    message = str(failed.value)
    assert time.monotonic() - started < 4.0  # the reason, not the open timeout
    assert message.startswith("cannot open srt://127.0.0.1:"), message
    assert "error" in message.lower() and "Traceback" not in message and "\n" not in message
    assert SECRET not in message
    assert child_processes("ffmpeg") == []


def test_a_live_source_that_never_connected_is_not_retried(relayed):
    # A typo'd SRT address fails the stream with the reason rather than retrying forever.
    source = MediaSource(parse_source(f"srt://127.0.0.1:{free_port(socket.SOCK_DGRAM)}?connect_timeout=200"),
                         open_timeout=3, read_timeout=3)
    with pytest.raises(SourceError):
        next(iter(source))
    assert source.progress.last_error and not source.progress.ever_connected
    assert child_processes("ffmpeg") == []


def test_neither_pyav_nor_a_binary_has_the_protocol(monkeypatch, tmp_path):
    monkeypatch.setattr(container_mod, "pyav_has_protocol", lambda name: False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no ffmpeg binary at all
    with pytest.raises(SourceError, match=r"no srt:// protocol.*apt-get install ffmpeg"):
        MediaSource(parse_source(f"srt://127.0.0.1:{free_port(socket.SOCK_DGRAM)}"), open_timeout=2,
                    read_timeout=2).probe()


def test_pyavs_own_protocols_are_not_relayed():
    assert pyav_has_protocol("udp") and pyav_has_protocol("rtmp")
    assert not pyav_has_protocol("no-such-protocol")


def test_a_passphrase_is_never_shown():
    spec = parse_source(f"srt://host.example:9000?mode=caller&passphrase={SECRET}&latency=200000")
    assert spec.display == "srt://host.example:9000?mode=caller&passphrase=***&latency=200000"
    assert SECRET in spec.uri  # what is opened (and what a restart reopens) keeps it
    assert redact(f"Connection to srt://h:1?passphrase={SECRET} failed") == "Connection to srt://h:1?passphrase=*** failed"


def test_a_relay_dropped_without_close_still_ends_its_child():
    # A probed source that is never read (nor closed) must not leave its process running.
    child = relay._Child(["sleep", "30"], "srt://x", open_timeout=1, read_timeout=1)
    assert child_processes("sleep")
    del child
    gc.collect()
    assert child_processes("sleep") == []  # killed and reaped
