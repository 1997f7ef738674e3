"""Incremental decoding with real PyAV: media made here and in ../shared/media, paced, stopped, live."""

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
from streaming.source.media import MAX_FRAME_WIDTH, MediaSource, SourceError, parse_source

from tests.support.helpers import free_port, media as _media
from tests.support.synth import sine


def _audio(chunks) -> list[AudioChunk]:
    return [c for c in chunks if isinstance(c, AudioChunk)]


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


@pytest.mark.slow  # waits on a real clock or decodes a whole real clip
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


@pytest.mark.parametrize("clip", ["librivox_sense_and_sensibility_0920.wav", "jfk_inaugural_1961.flac"])
def test_a_file_resumed_mid_way_gives_the_same_audio_at_the_same_times(clip: str) -> None:
    """A restart resumes a file at its checkpoint by seeking. A WAV file has no container start time,
    and the clock took the first frame after the seek as media 0: resumed at 2 s, the stream got the
    audio from 4 s on labelled as 2 s (what was said in between was lost, the rest misplaced)."""
    spec = parse_source(str(_media(clip)))
    whole = np.concatenate([c.samples for c in MediaSource(spec) if isinstance(c, AudioChunk)])
    resumed = [c for c in MediaSource(spec, start_at=2.0) if isinstance(c, AudioChunk)]
    assert resumed[0].t0 == pytest.approx(2.0, abs=0.01)
    assert resumed[-1].t1 == pytest.approx(len(whole) / SAMPLE_RATE, abs=0.05)  # nothing dropped at the end
    audio = np.concatenate([c.samples for c in resumed])
    # 3-4 s of the resumed read against the whole read around 3-4 s: the same sound at the same time
    # (a seek may start the resampler at another phase: samples differ slightly, the lag does not).
    part, slack = audio[SAMPLE_RATE:2 * SAMPLE_RATE], int(0.5 * SAMPLE_RATE)
    around = whole[3 * SAMPLE_RATE - slack:4 * SAMPLE_RATE + slack]
    scores = [float(np.dot(part, around[k:k + len(part)])) for k in range(2 * slack + 1)]
    lag = (int(np.argmax(scores)) - slack) / SAMPLE_RATE
    best = around[int(np.argmax(scores)):][:len(part)]
    assert abs(lag) <= 0.002, f"resumed audio is {lag:+.3f} s off"
    assert np.corrcoef(part, best)[0, 1] > 0.99


@pytest.mark.slow  # waits on a real clock
def test_a_paced_file_restarted_rereads_what_it_had_played_at_once_then_keeps_pace(wav5: Path) -> None:
    """A real-time-paced file restarted from its checkpoint (1 s) after a crash at 3 s of media:
    the 2 s it had played already are read again without waiting, the rest at the clock's pace."""
    src = MediaSource(parse_source(str(wav5)), pace="realtime", start_at=1.0, read_before=3.0)
    t = time.monotonic()
    arrived = [(c.t1, time.monotonic() - t) for c in src]
    caught_up = max(at for t1, at in arrived if t1 <= 3.0 + 1e-6)
    assert arrived[0][0] <= 1.6 and caught_up < 0.5, arrived  # not the 2 s a paced read takes
    # The last 2 s still follow the clock (its last half-second chunk comes with the end of file).
    assert 1.2 <= arrived[-1][1] < 3.5, arrived
    assert arrived[-1][0] == pytest.approx(5.0, abs=0.1)


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


@pytest.mark.slow  # waits on a real clock or decodes a whole real clip
def test_dead_udp_source_fails_within_open_timeout() -> None:
    spec = parse_source(f"udp://127.0.0.1:{free_port(socket.SOCK_DGRAM)}")
    assert spec.live
    src = MediaSource(spec, open_timeout=1.5, read_timeout=1.5)
    t = time.monotonic()
    with pytest.raises(SourceError, match="nothing received|cannot open"):
        next(iter(src))
    assert time.monotonic() - t < 1.5 + 2.0
    assert not src.progress.ever_connected
    assert src.progress.last_error


@pytest.mark.slow  # waits on a real clock or decodes a whole real clip
def test_a_resumed_live_source_waits_out_a_sender_that_is_down() -> None:
    """After a restart, a live stream whose sender is not back yet keeps trying (backoff, a gap
    recorded) and goes on from its old media time once packets come, instead of failing."""
    from streaming.tools.replay import replay

    port = free_port(socket.SOCK_DGRAM)
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
        tone = (sine(2.0, rate, 440.0) * 20_000).astype(np.int16)
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



@pytest.mark.slow  # waits on a real clock or decodes a whole real clip
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
