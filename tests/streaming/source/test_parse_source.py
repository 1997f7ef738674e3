"""Which sources are accepted, and the clear errors for those that are not (real PyAV, media made here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streaming.source.media import (
    LIVE_SCHEMES,
    MediaSource,
    SourceError,
    open_container,
    parse_source,
)

from tests.support.synth import make_wav


# -- parse_source ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_empty_source_is_rejected(text: str) -> None:
    with pytest.raises(SourceError, match="non-empty"):
        parse_source(text)


def test_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    with pytest.raises(SourceError, match="no such file") as err:
        parse_source(str(missing))
    assert "nope.mp4" in str(err.value)


@pytest.mark.parametrize("text", ["~no-such-user-here/a.mp4", "x" * 300, "/tmp/" + "y" * 300 + "/a.mp4"],
                         ids=["unknown-user", "long-name", "long-directory"])
def test_impossible_path_is_a_missing_file_not_a_crash(text: str) -> None:
    # Found by bench/fuzz_api.py: expanduser raised RuntimeError (a 500) for an unknown user's "~".
    with pytest.raises(SourceError, match="no such file"):
        parse_source(text)


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not a regular file"):
        parse_source(str(tmp_path))


def test_unsupported_scheme_lists_supported_ones() -> None:
    with pytest.raises(SourceError) as err:
        parse_source("ftp://example.com/clip.mp4")
    msg = str(err.value)
    assert "ftp://" in msg
    for scheme in LIVE_SCHEMES:
        assert f"{scheme}://" in msg
    assert "file://" in msg


def test_local_path_is_recorded_and_resolved(wav3: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(wav3.parent)
    spec = parse_source(f"  {wav3.name}  ")
    assert (spec.live, spec.scheme) == (False, "file")
    assert Path(spec.uri) == wav3.resolve()


def test_file_url_becomes_a_local_path(wav3: Path) -> None:
    spec = parse_source(f"file://{wav3}")
    assert (spec.live, spec.scheme, spec.uri) == (False, "file", str(wav3.resolve()))
    with pytest.raises(SourceError, match="no such file"):
        parse_source(f"file://{wav3.parent / 'missing.wav'}")


def test_file_url_with_percent_encoded_path(tmp_path: Path) -> None:
    """``Path.as_uri()`` (and every browser) percent-encodes spaces; such a URL names the file."""
    wav = make_wav(tmp_path / "my clip.wav", 0.5)
    spec = parse_source(wav.as_uri())  # file:///.../my%20clip.wav
    assert spec.uri == str(wav.resolve())


@pytest.mark.parametrize("url, live", [
    ("http://example.com/videos/clip.mp4", False),
    ("https://example.com/a/b/Movie.MKV?token=1", False),
    ("http://example.com/live/stream.ts", True),
    ("https://example.com/hls/index.m3u8", True),
    ("udp://239.0.0.1:1234", True),
    ("rtsp://camera.local/stream1", True),
    ("srt://example.com:9000", True),
])
def test_network_urls_live_or_recorded(url: str, live: bool) -> None:
    spec = parse_source(url)
    assert spec.live is live
    assert spec.uri == url
    assert spec.scheme == url.split("://")[0]


@pytest.mark.parametrize("url", ["http:///clip.ts", "udp://:1234", "rtsp://"])
def test_url_without_host_is_rejected(url: str) -> None:
    with pytest.raises(SourceError, match="no host"):
        parse_source(url)


# -- open_container --------------------------------------------------------------------------------

def test_text_file_is_not_media(tmp_path: Path) -> None:
    prose = tmp_path / "notes.txt"
    prose.write_text("It was the best of times, it was the worst of times, it was the age of wisdom.\n" * 40)
    with pytest.raises(SourceError, match="not a media file"):
        open_container(parse_source(str(prose)), 2.0, 2.0)


def test_random_bytes_are_rejected(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(7).integers(0, 256, 64 * 1024, dtype=np.uint8).tobytes())
    with pytest.raises(SourceError) as err:
        open_container(parse_source(str(junk)), 2.0, 2.0)
    assert str(junk.resolve()) in str(err.value)


def test_media_source_rejects_unknown_pace(wav3: Path) -> None:
    with pytest.raises(ValueError, match="pace"):
        MediaSource(parse_source(str(wav3)), pace="slow")


def test_probe_fails_at_once_for_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_text("RIFF but not really")
    src = MediaSource(parse_source(str(bad)))
    with pytest.raises(SourceError):
        src.probe()
