"""A synthetic news-bulletin video so the pipeline has a demo source on a fresh machine.

Speech comes from an injected ``speak`` callable (normally eSpeak NG), so no
third-party media is committed and the cue times are known exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
import tempfile
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Callable

import av
import numpy as np

__all__ = ["DemoCue", "DemoMedia", "DEMO_SCRIPT", "make_demo_media", "ensure_demo_media"]

Speak = Callable[[str], tuple[np.ndarray, int]]


@dataclass(frozen=True)
class DemoCue:
    """One spoken sentence and where it lies in the demo file, in media seconds."""

    start: float
    end: float
    text: str
    headline: str


@dataclass(frozen=True)
class DemoMedia:
    """A built demo file, its duration in seconds and its cues in playback order."""

    path: pathlib.Path
    duration: float
    cues: tuple[DemoCue, ...]


DEMO_SCRIPT: tuple[tuple[str, str], ...] = (
    # "Manta" directly before "news" is what Whisper tiny.en transcribes reliably.
    ("Manta news", "Good evening. Welcome to the Manta news bulletin."),
    ("Harbour bridge", "The harbour bridge will close for repairs on Tuesday morning at nine o'clock."),
    ("Harbour bridge", "The engineers expect the work to last three weeks."),
    ("Harbour bridge", "Drivers are asked to use the tunnel road while the bridge is shut."),
    ("Sport", "The city rowing team won the regional final by two boat lengths."),
    ("Sport", "The crew will be welcomed home with a parade on Saturday."),
    ("Weather", "Tomorrow will be cloudy, with light rain in the afternoon and a high of fourteen degrees."),
    ("Weather", "Saturday and Sunday should be dry and sunny."),
    ("Good night", "That is all for tonight. Good night."),
)

LEAD_IN_S = 1.0
AUDIO_RATE = 48_000
# Part of the cache fingerprint: bump it when the file layout changes so caches rebuild.
_FORMAT_VERSION = 1
# Strongly different colours so a scene-change detector sees each new headline.
_PALETTE = ((24, 48, 120), (150, 40, 30), (20, 110, 60), (120, 90, 10), (80, 30, 110), (10, 100, 110))


def _section_frame(colour: tuple[int, int, int], headline: str, size: tuple[int, int]) -> np.ndarray:
    """An RGB frame: a vertical gradient of ``colour``, plus the headline if Pillow exists."""
    width, height = size
    shade = np.linspace(1.0, 0.55, height, dtype=np.float32)[:, None, None]
    frame = np.broadcast_to(np.asarray(colour, np.float32) * shade, (height, width, 3))
    frame = frame.round().astype(np.uint8)
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:  # Pillow is optional; the colour alone marks the section.
        return frame
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    try:
        font = ImageFont.load_default(size=max(16, height // 6))
    except TypeError:  # Pillow < 10.1 only has a small bitmap font
        font = ImageFont.load_default()
    draw.text((width / 2, height / 2), headline, fill=(255, 255, 255), font=font, anchor="mm")
    return np.asarray(image)


def make_demo_media(
    path: str | os.PathLike[str],
    speak: Speak,
    script: tuple[tuple[str, str], ...] = DEMO_SCRIPT,
    gap_s: float = 0.8,
    fps: int = 10,
    size: tuple[int, int] = (640, 360),
) -> DemoMedia:
    """Write an H.264/AAC MP4 reading ``script`` aloud, one colour per headline section."""
    if not script:
        raise ValueError("script must contain at least one (headline, sentence) pair")
    if gap_s < 0:
        raise ValueError(f"gap_s must be >= 0, got {gap_s}")
    width, height = size
    if fps <= 0 or width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(f"need fps > 0 and an even size for yuv420p, got {fps=} {size=}")

    # The speech track is a few MB at most, so it is assembled up front; only
    # video frames are produced lazily.
    speech_rate = 0
    pieces: list[np.ndarray] = []
    cues: list[DemoCue] = []
    cursor = 0  # in speech samples, so cue times are exact rather than summed floats
    for headline, sentence in script:
        samples, rate = speak(sentence)
        if speech_rate and rate != speech_rate:
            raise ValueError(f"speak() changed sample rate from {speech_rate} to {rate}")
        if not speech_rate:
            speech_rate = rate
            cursor = round(LEAD_IN_S * rate)
            pieces.append(np.zeros(cursor, np.float32))
        samples = np.clip(np.asarray(samples, np.float32).reshape(-1), -1.0, 1.0)
        gap = np.zeros(round(gap_s * rate), np.float32)
        cues.append(DemoCue(cursor / rate, (cursor + samples.size) / rate, sentence, headline))
        pieces += [samples, gap]
        cursor += samples.size + gap.size

    # Round up to whole video frames and pad the audio to match, so both streams end together.
    n_frames = math.ceil(cursor * fps / speech_rate)
    duration = n_frames / fps
    pieces.append(np.zeros(max(0, round(duration * speech_rate) - cursor), np.float32))
    track = np.concatenate(pieces)

    # A section is a run of consecutive cues sharing a headline; its colour starts at its first cue.
    sections: list[tuple[float, np.ndarray]] = []
    for i, cue in enumerate(cues):
        if i == 0 or cue.headline != cues[i - 1].headline:
            colour = _PALETTE[len(sections) % len(_PALETTE)]
            sections.append((cue.start if i else 0.0, _section_frame(colour, cue.headline, size)))

    with av.open(str(path), mode="w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.gop_size = 2 * fps  # keyframes every 2 s keep seeking cheap
        video.codec_context.options = {"preset": "ultrafast"}
        audio = container.add_stream("aac", rate=AUDIO_RATE)
        audio.layout, audio.format = "mono", "fltp"
        # AAC needs exactly frame_size samples per frame (1024), except the last.
        frame_size = audio.codec_context.frame_size or 1024
        resampler = av.AudioResampler("fltp", "mono", AUDIO_RATE, frame_size=frame_size)
        audio_pts = fed = 0

        def encode_audio(frames: list[av.AudioFrame]) -> None:
            nonlocal audio_pts
            for out in frames:
                # Our own sample counter keeps audio pts gap-free whatever the resampler reports.
                out.pts, out.time_base = audio_pts, Fraction(1, AUDIO_RATE)
                audio_pts += out.samples
                container.mux(audio.encode(out))

        section = 0
        for index in range(n_frames):
            # Feed audio up to the end of this video frame so the muxer gets both streams in step.
            upto = min(track.size, round((index + 1) * speech_rate / fps))
            if upto > fed:
                chunk = av.AudioFrame.from_ndarray(track[None, fed:upto], format="fltp", layout="mono")
                chunk.sample_rate = speech_rate
                encode_audio(resampler.resample(chunk))
                fed = upto
            while section + 1 < len(sections) and sections[section + 1][0] <= index / fps:
                section += 1
            frame = av.VideoFrame.from_ndarray(sections[section][1], format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
        encode_audio(resampler.resample(None))
        container.mux(audio.encode(None))
        container.mux(video.encode(None))

    return DemoMedia(pathlib.Path(path), duration, tuple(cues))


def ensure_demo_media(cache_dir: pathlib.Path, speak: Speak, voice_id: str) -> DemoMedia:
    """Build the demo bulletin into ``cache_dir/demo`` once and re-use it afterwards.

    ``voice_id`` names what ``speak`` does (voice, rate) so a different voice rebuilds the cache.
    """
    demo_dir = pathlib.Path(cache_dir) / "demo"
    media_path = demo_dir / "manta_demo_bulletin.mp4"
    cues_path = demo_dir / "manta_demo_bulletin.json"
    settings = {"version": _FORMAT_VERSION, "script": DEMO_SCRIPT, "voice": voice_id}
    fingerprint = hashlib.sha256(json.dumps(settings).encode()).hexdigest()

    try:
        meta = json.loads(cues_path.read_text())
        if media_path.is_file() and meta["fingerprint"] == fingerprint:
            cues = tuple(DemoCue(**cue) for cue in meta["cues"])
            return DemoMedia(media_path, float(meta["duration"]), cues)
    except (OSError, ValueError, KeyError, TypeError):
        pass  # missing, stale or corrupt cache: rebuild below

    demo_dir.mkdir(parents=True, exist_ok=True)
    # Temp names in the same directory make os.replace atomic, so a crash never leaves a half file.
    fd, tmp_media = tempfile.mkstemp(dir=demo_dir, prefix=".bulletin-", suffix=".mp4")
    os.close(fd)
    os.chmod(tmp_media, 0o644)  # mkstemp's 0600 would hide the cache from other users
    tmp_cues = tmp_media + ".json"
    try:
        built = make_demo_media(tmp_media, speak)
        cues = [asdict(cue) for cue in built.cues]
        meta = {"fingerprint": fingerprint, "duration": built.duration, "cues": cues}
        pathlib.Path(tmp_cues).write_text(json.dumps(meta, indent=1))
        # Drop the old cues first: media without cues is treated as absent and rebuilt.
        cues_path.unlink(missing_ok=True)
        os.replace(tmp_media, media_path)
        os.replace(tmp_cues, cues_path)
    finally:
        for leftover in (tmp_media, tmp_cues):
            if os.path.exists(leftover):
                os.unlink(leftover)
    return DemoMedia(media_path, built.duration, built.cues)
