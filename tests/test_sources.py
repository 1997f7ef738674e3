"""Source validation and incremental decoding with real PyAV on media generated here or in shared/media."""

from __future__ import annotations

import fractions
import socket
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from streaming.records import SAMPLE_RATE, AudioChunk, SubtitleCue, VideoFrame
from streaming.source.media import (
    LIVE_SCHEMES,
    MAX_FRAME_WIDTH,
    MediaSource,
    SourceError,
    open_container,
    parse_source,
)

from conftest import media as _media


# -- media made here with PyAV ---------------------------------------------------------------------

def _tone(seconds: float, rate: int, freq: float) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_wav(path: Path, seconds: float, rate: int = 44_100, freq: float = 440.0) -> Path:
    """A stereo 16-bit WAV holding a pure tone."""
    tone = (_tone(seconds, rate, freq) * 32767).astype(np.int16)
    interleaved = np.stack([tone, tone], axis=1).reshape(1, -1)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout="stereo")
        for i in range(0, len(tone), 4096):
            block = np.ascontiguousarray(interleaved[:, 2 * i: 2 * min(len(tone), i + 4096)])
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="stereo")
            frame.sample_rate, frame.pts = rate, i
            frame.time_base = fractions.Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def make_mp4(path: Path, seconds: float, fps: int = 10, size: tuple[int, int] = (1280, 720),
             rate: int = 44_100, freq: float = 440.0) -> Path:
    """H.264 video (wider than MAX_FRAME_WIDTH) plus an AAC stereo tone."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        video.options = {"preset": "ultrafast"}
        audio = out.add_stream("aac", rate=rate, layout="stereo")
        for i in range(int(seconds * fps)):
            img = np.zeros((size[1], size[0], 3), np.uint8)
            img[..., 0] = (i * 6) % 256
            img[:, (i * 20) % size[0]:, 1] = 200
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        tone = _tone(seconds, rate, freq)
        for i in range(0, len(tone), 1024):
            block = np.ascontiguousarray(np.stack([tone[i:i + 1024]] * 2))
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = rate, i
            for packet in audio.encode(frame):
                out.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                out.mux(packet)
    return path


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def wav5(media_dir: Path) -> Path:
    return make_wav(media_dir / "tone5.wav", 5.0)


@pytest.fixture(scope="module")
def wav3(media_dir: Path) -> Path:
    return make_wav(media_dir / "tone3.wav", 3.0)


@pytest.fixture(scope="module")
def mp4(media_dir: Path) -> Path:
    return make_mp4(media_dir / "clip.mp4", 4.0)


def _audio(chunks) -> list[AudioChunk]:
    return [c for c in chunks if isinstance(c, AudioChunk)]


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


# -- decoding --------------------------------------------------------------------------------------

def test_wav_decodes_to_contiguous_16k_mono_chunks(wav5: Path) -> None:
    src = MediaSource(parse_source(str(wav5)))
    chunks = list(src)
    audio = _audio(chunks)
    assert len(audio) == len(chunks) >= 8  # audio only, ~0.5 s each
    assert audio[0].t0 == pytest.approx(0.0, abs=1e-6)
    for a, b in zip(audio, audio[1:]):
        assert b.t0 == pytest.approx(a.t1, abs=1e-6)  # no gaps, no overlaps
        assert b.t0 > a.t0
    for c in audio:
        assert c.samples.dtype == np.float32 and c.samples.ndim == 1
    total = sum(len(c.samples) for c in audio)
    assert abs(total - 5.0 * SAMPLE_RATE) <= 0.01 * SAMPLE_RATE
    assert audio[-1].t1 == pytest.approx(5.0, abs=0.02)
    assert src.progress.has_audio and not src.progress.has_video


def test_tone_frequency_and_level_survive_resampling(wav5: Path) -> None:
    samples = np.concatenate([c.samples for c in _audio(MediaSource(parse_source(str(wav5))))])
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / len(samples)
    assert abs(peak_hz - 440.0) < 2.0
    # Two identical 0.5-amplitude channels are mixed down (ffmpeg's -3 dB matrix gives ~0.71), not
    # summed into clipping at 1.0 and not dropped to near silence.
    assert 0.4 < np.abs(samples).max() < 0.9
    assert 0.25 < np.sqrt(np.mean(samples ** 2)) < 0.6


def test_mp4_audio_and_sampled_frames(mp4: Path) -> None:
    src = MediaSource(parse_source(str(mp4)), frame_fps=2.0)
    chunks = list(src)
    audio = _audio(chunks)
    frames = [c for c in chunks if isinstance(c, VideoFrame)]
    assert src.progress.has_audio and src.progress.has_video
    assert audio[0].t0 == pytest.approx(0.0, abs=0.05)
    for a, b in zip(audio, audio[1:]):
        assert b.t0 == pytest.approx(a.t1, abs=1e-6)
    assert audio[-1].t1 == pytest.approx(4.0, abs=0.1)
    samples = np.concatenate([c.samples for c in audio])
    assert abs(np.argmax(np.abs(np.fft.rfft(samples))) * SAMPLE_RATE / len(samples) - 440.0) < 2.0

    assert 7 <= len(frames) <= 9  # 2 per second over 4 s
    times = [f.t for f in frames]
    assert times[0] == pytest.approx(0.0, abs=0.05)
    for a, b in zip(times, times[1:]):
        assert 0.5 - 1e-3 <= b - a <= 0.6 + 1e-3  # next frame at or just after the 0.5 s mark
    for f in frames:
        h, w, ch = f.image.shape
        assert ch == 3 and f.image.dtype == np.uint8
        assert w <= MAX_FRAME_WIDTH
        assert w / h == pytest.approx(1280 / 720, rel=0.02)  # aspect kept when scaling down


def test_frames_are_not_decoded_when_frame_fps_is_zero(mp4: Path) -> None:
    chunks = list(MediaSource(parse_source(str(mp4)), frame_fps=0.0))
    assert chunks and all(isinstance(c, AudioChunk) for c in chunks)


def test_realtime_pace_follows_the_clock(wav3: Path) -> None:
    spec = parse_source(str(wav3))
    t = time.monotonic()
    fast = list(MediaSource(spec, pace="fast"))
    fast_s = time.monotonic() - t
    t = time.monotonic()
    paced = list(MediaSource(spec, pace="realtime"))
    paced_s = time.monotonic() - t
    assert paced_s >= 2.5
    assert paced_s < 4.5
    assert fast_s < 1.0
    assert sum(len(c.samples) for c in paced) == sum(len(c.samples) for c in fast)


def test_stop_event_ends_iteration_promptly(wav5: Path) -> None:
    stop = threading.Event()
    src = MediaSource(parse_source(str(wav5)), pace="realtime", stop=stop)
    timer = threading.Timer(1.0, stop.set)
    timer.start()
    t = time.monotonic()
    try:
        chunks = list(src)
    finally:
        timer.cancel()
    elapsed = time.monotonic() - t
    assert elapsed < 2.5  # not the 5 s the file lasts
    assert 1 <= len(chunks) < 10
    assert chunks[-1].t1 < 3.0


def test_dead_udp_source_fails_within_open_timeout() -> None:
    spec = parse_source(f"udp://127.0.0.1:{_free_udp_port()}")
    assert spec.live
    src = MediaSource(spec, open_timeout=1.5, read_timeout=1.5)
    t = time.monotonic()
    with pytest.raises(SourceError, match="nothing received|cannot open"):
        next(iter(src))
    assert time.monotonic() - t < 1.5 + 2.0
    assert not src.progress.ever_connected
    assert src.progress.last_error


def test_a_resumed_live_source_waits_out_a_sender_that_is_down() -> None:
    """After a restart, a live stream whose sender is not back yet keeps trying (backoff, a gap
    recorded) and goes on from its old media time once packets come, instead of failing."""
    from streaming.tools.replay import replay

    port = _free_udp_port()
    gaps = []
    src = MediaSource(parse_source(f"udp://127.0.0.1:{port}"), open_timeout=1.0, read_timeout=1.5,
                      reconnect_initial=0.2, reconnect_max=0.5, start_at=30.0, resumed=True,
                      on_gap=gaps.append, frame_fps=0)
    got, errors = [], []

    def read() -> None:
        try:
            for chunk in src:
                got.append(chunk)
        except Exception as exc:  # noqa: BLE001 - the assertion below reports it
            errors.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(2.5)  # the sender is down: several attempts fail meanwhile
    assert not errors and reader.is_alive() and not src.progress.connected
    replay(_media("jfk_inaugural_1961.flac"), f"udp://127.0.0.1:{port}", speed=4.0)
    time.sleep(1.0)
    src.stop.set()
    reader.join(timeout=10)
    assert not reader.is_alive() and not errors, errors
    audio = _audio(got)
    assert audio and audio[0].t0 >= 30.0 + 2.0  # media time went on, across the outage
    assert sum(len(c.samples) for c in audio) / SAMPLE_RATE == pytest.approx(11.0, abs=1.0)
    assert len(gaps) == 1 and gaps[0].wall_end - gaps[0].wall_start >= 2.0 and src.progress.reconnects == 1


def test_a_hole_in_the_audio_track_keeps_later_audio_at_its_time(tmp_path: Path) -> None:
    """2 s of tone, nothing from 2 s to 10 s (a clip without sound, lost packets), 2 s more: the
    second part is at 10 s, not at 2 s where counting samples would put it."""
    path = tmp_path / "hole.mkv"
    rate = 16_000
    with av.open(str(path), "w", format="matroska") as out:
        audio = out.add_stream("pcm_s16le", rate=rate, layout="mono")
        tone = (_tone(2.0, rate, 440.0) * 20_000).astype(np.int16)
        for start in (0, 10 * rate):
            for i in range(0, len(tone), 1600):
                frame = av.AudioFrame.from_ndarray(tone[None, i:i + 1600], format="s16", layout="mono")
                frame.sample_rate, frame.pts = rate, start + i
                frame.time_base = fractions.Fraction(1, rate)
                for packet in audio.encode(frame):
                    out.mux(packet)
    chunks = _audio(MediaSource(parse_source(str(path))))
    starts = [c.t0 for c in chunks]
    assert starts == sorted(starts)
    late = [c for c in chunks if c.t0 >= 5.0]
    assert late and late[0].t0 == pytest.approx(10.0, abs=0.05)
    assert late[-1].t1 == pytest.approx(12.0, abs=0.05)
    assert sum(len(c.samples) for c in chunks) / SAMPLE_RATE == pytest.approx(4.0, abs=0.05)  # no filler


# -- real media ------------------------------------------------------------------------------------

def test_jfk_flac_is_eleven_seconds_of_audio() -> None:
    path = _media("jfk_inaugural_1961.flac")
    audio = _audio(MediaSource(parse_source(str(path))))
    total = sum(len(c.samples) for c in audio) / SAMPLE_RATE
    assert total == pytest.approx(11.0, abs=0.05)
    assert audio[-1].t1 == pytest.approx(11.0, abs=0.05)
    assert np.abs(np.concatenate([c.samples for c in audio])).max() > 0.1  # speech, not silence


def test_popeye_mkv_has_video_but_no_audio() -> None:
    path = _media("popeye_sinbad_1936_p1.mkv")
    stop = threading.Event()
    src = MediaSource(parse_source(str(path)), frame_fps=1.0, stop=stop)
    it = iter(src)
    first = next(it)
    stop.set()
    it.close()
    assert isinstance(first, VideoFrame)
    assert src.progress.has_audio is False
    assert src.progress.has_video is True
    assert first.image.shape[1] == MAX_FRAME_WIDTH  # 1440 px wide source, scaled down
    assert first.image.shape[0] == pytest.approx(1074 * MAX_FRAME_WIDTH / 1440, abs=2)


def test_no_audio_file_with_frames_off_yields_nothing() -> None:
    path = _media("popeye_sinbad_1936_p1.mkv")
    src = MediaSource(parse_source(str(path)), frame_fps=0.0, subtitles=False)
    assert list(src) == []
    assert src.progress.has_audio is False and src.progress.has_video is True
    # Subtitle tracks are read without decoding a single frame.
    cues = list(MediaSource(parse_source(str(path)), frame_fps=0.0))
    assert len(cues) == 13 and all(isinstance(c, SubtitleCue) for c in cues)



def test_pyav_log_bridge_is_off_and_cut_frames_are_sampled_between_the_grid() -> None:
    """PyAV's FFmpeg->Python log bridge locks per message from every decoder thread (contention and
    deadlocks under threads): importing the sources module turns it off. A new shot is sampled as
    soon as the detector confirms it, not at the next whole second."""
    import av

    assert av.logging.get_level() is None
    frames = [c for c in MediaSource(parse_source(str(_media("big_buck_bunny_0_30.webm"))), frame_fps=1.0)
              if isinstance(c, VideoFrame)]
    cuts = [f for f in frames if f.cut is not None]
    assert [round(f.cut, 2) for f in cuts] == [11.79, 15.67, 22.96]  # ../shared/media/README.md
    assert all(0 < f.t - f.cut <= 0.2 for f in cuts)  # confirmed 3 frames into the new shot
    assert 30 <= len(frames) <= 34 and max(f.image.shape[1] for f in frames) == 640  # 1 fps + cuts
