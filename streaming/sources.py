"""Open a recorded file or a live URL with PyAV and decode it incrementally into timestamped chunks.

Nothing here reads a whole file: packets are demuxed and decoded one at a time, audio is resampled to
16 kHz mono float32 in ~0.5 s chunks, and frames are sampled at a fixed rate. Live sources get open and
read timeouts (PyAV otherwise blocks forever on a silent UDP socket) and reconnect with backoff; media
time continues across reconnects so it never goes backwards.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import av
import numpy as np

from .records import SAMPLE_RATE, AudioChunk, Gap, MediaChunk, VideoFrame
from .scenes import SceneDetector, thumbnail
from .subtitles import SubtitleTrack, subtitle_streams

log = logging.getLogger("manta.sources")
# PyAV's bridge from FFmpeg's log to Python logging takes a lock per message from every decoder
# thread: it contends under threads and can deadlock (PyAV issues 751, 2276). FFmpeg's own messages
# are not needed: errors still raise with their reason.
av.logging.set_level(None)

LIVE_SCHEMES = ("udp", "rtp", "tcp", "http", "https", "rtmp", "rtmps", "rtsp", "rtsps", "srt")
RECORDED_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".wav", ".flac", ".mp3", ".ogg", ".m4a",
                     ".aac", ".opus")
# ffmpeg will happily "decode" plain text as ANSI art (tty demuxer); that is never what a user meant.
NOT_MEDIA_FORMATS = {"tty", "ffmetadata", "srt", "webvtt", "ass", "subviewer", "microdvd"}

CHUNK_SECONDS = 0.5
MAX_FRAME_WIDTH = 640


AUDIO_GAP_S = 0.25  # audio timestamps this far past the samples counted so far: a hole, not jitter


class SourceError(ValueError):
    """A source that cannot be used; the message is meant for the user."""


@dataclass(frozen=True, slots=True)
class SourceSpec:
    uri: str  # what PyAV opens
    live: bool
    scheme: str  # "file" for local paths

    @property
    def display(self) -> str:
        return self.uri


def parse_source(text: str) -> SourceSpec:
    """Validate a user-given path or URL and say whether it is live."""
    if not isinstance(text, str) or not text.strip():
        raise SourceError("source must be a non-empty path or URL")
    text = text.strip()
    if "://" not in text:
        return _file_spec(text)
    scheme = text.split("://", 1)[0].lower()
    if scheme == "file":
        return _file_spec(unquote(urlparse(text).path))
    if scheme not in LIVE_SCHEMES:
        raise SourceError(f"unsupported scheme '{scheme}://'; use a file path, file://, or one of "
                          + ", ".join(s + "://" for s in LIVE_SCHEMES))
    parsed = urlparse(text)
    if not parsed.hostname:
        raise SourceError(f"'{text}' has no host")
    # A plain HTTP file download is recorded media, not a broadcast: do not reconnect at its end.
    live = not (scheme in ("http", "https") and parsed.path.lower().endswith(RECORDED_SUFFIXES))
    return SourceSpec(uri=text, live=live, scheme=scheme)


def _file_spec(path_text: str) -> SourceSpec:
    path = Path(path_text).expanduser()
    if not path.exists():
        raise SourceError(f"no such file: {path}")
    if not path.is_file():
        raise SourceError(f"not a regular file: {path}")
    if not os.access(path, os.R_OK):
        raise SourceError(f"file is not readable: {path}")
    return SourceSpec(uri=str(path.resolve()), live=False, scheme="file")


def _open_options(spec: SourceSpec) -> dict[str, str]:
    opts = {}
    if spec.live:
        # Start quickly: ffmpeg's default 5 s probe would be 5 s of extra latency on every connect.
        opts.update(analyzeduration="1000000", probesize="1000000")
    if spec.scheme == "udp":
        opts.update(overrun_nonfatal="1", fifo_size="278876")  # ~50 MB of 188-byte TS packets
    elif spec.scheme in ("rtsp", "rtsps"):
        opts["rtsp_transport"] = "tcp"
    elif spec.scheme == "srt":
        opts["mode"] = "listener" if "mode=listener" in spec.uri else "caller"
    return opts


def open_container(spec: SourceSpec, open_timeout: float, read_timeout: float):
    """Open with bounded waits; raise SourceError with a readable reason."""
    try:
        container = av.open(spec.uri, options=_open_options(spec), timeout=(open_timeout, read_timeout))
    except av.error.ExitError:
        raise SourceError(f"nothing received from {spec.display} within {open_timeout:g} s") from None
    except av.error.FFmpegError as exc:
        raise SourceError(f"cannot open {spec.display}: {_reason(exc)}") from None
    except OSError as exc:
        raise SourceError(f"cannot open {spec.display}: {exc.strerror or exc}") from None
    fmt = container.format.name.split(",")[0] if container.format else ""
    if fmt in NOT_MEDIA_FORMATS or not (container.streams.audio or container.streams.video):
        container.close()
        raise SourceError(f"not a media file: {spec.display} (no audio or video stream found)")
    return container


def _reason(exc: Exception) -> str:
    msg = getattr(exc, "strerror", None) or str(exc)
    return msg.split(":")[0] if "Errno" in msg and ":" in msg else msg


@dataclass
class SourceProgress:
    """Counters the reader keeps for status reporting."""

    connected: bool = False
    ever_connected: bool = False
    reconnects: int = 0
    decode_errors: int = 0
    last_error: str | None = None
    has_audio: bool = False
    has_video: bool = False


class MediaSource:
    """Iterate ``AudioChunk`` / ``VideoFrame`` records from one source, reconnecting live ones."""

    def __init__(self, spec: SourceSpec, *, open_timeout: float = 5.0, read_timeout: float = 5.0,
                 pace: str = "fast", frame_fps: float = 1.0, reconnect_initial: float = 0.5,
                 reconnect_max: float = 30.0, stop: threading.Event | None = None,
                 on_gap: Callable[[Gap], None] | None = None, start_at: float = 0.0,
                 subtitles: bool = True, scene_threshold: float | None = None, resumed: bool = False):
        if pace not in ("fast", "realtime"):
            raise ValueError("pace must be 'fast' or 'realtime'")
        self.spec = spec
        self.open_timeout, self.read_timeout = open_timeout, read_timeout
        self.pace, self.frame_fps = pace, frame_fps
        self.subtitles = subtitles
        self.scene_threshold = scene_threshold
        self.reconnect_initial, self.reconnect_max = reconnect_initial, reconnect_max
        self.stop = stop or threading.Event()
        self.on_gap = on_gap
        self.progress = SourceProgress()
        if start_at < 0:
            raise ValueError("start_at must not be negative")
        # Resuming after a restart: a file seeks to start_at; a live source's media time goes on
        # from there (it cannot rewind), so times stay monotonic across the restart.
        self.start_at = start_at
        # A live stream brought back by a restart did connect before: if its sender is down now,
        # that is an outage to wait out (with backoff, recorded as a gap), not a typo to report.
        self.progress.ever_connected = spec.live and resumed
        self._offset = 0.0  # media time where the current session starts
        self._media_end = start_at  # latest media time emitted
        self._container = None

    def probe(self) -> None:
        """Open now, so a bad file fails at once rather than later in a background thread."""
        self._container = open_container(self.spec, self.open_timeout, self.read_timeout)

    def __iter__(self) -> Iterator[MediaChunk]:
        delay = self.reconnect_initial
        outage_start: float | None = None
        while not self.stop.is_set():
            attempt = time.time()
            try:
                container = self._container or open_container(self.spec, self.open_timeout,
                                                              self.read_timeout)
                self._container = None
            except SourceError as exc:
                self.progress.last_error = str(exc)
                if not self.spec.live or not self.progress.ever_connected:
                    raise  # never reached: a clear failure beats retrying a typo forever
                outage_start = outage_start or attempt  # (a resumed source: since its first try)
                self.progress.connected = False
                self.stop.wait(delay)
                delay = min(delay * 2, self.reconnect_max)
                continue
            if outage_start is not None:
                now = time.time()
                self._offset = self._media_end + (now - outage_start)
                gap = Gap(self._media_end, outage_start, now, self.progress.last_error or "disconnected")
                if self.on_gap:
                    self.on_gap(gap)
                self.progress.reconnects += 1
                outage_start = None
            else:
                self._offset = self._media_end if self.spec.live else 0.0
            self.progress.connected = self.progress.ever_connected = True
            delay = self.reconnect_initial
            clean_end = True
            try:
                yield from self._decode(container)
            except (av.error.FFmpegError, OSError) as exc:
                clean_end = False
                self.progress.last_error = f"stream interrupted: {_reason(exc)}"
                log.warning("source %s interrupted: %s", self.spec.display, exc)
            finally:
                container.close()
            if not self.spec.live or self.stop.is_set():
                return
            if clean_end and self.spec.uri.lower().split("?")[0].endswith(".m3u8"):
                return  # an HLS playlist that ended (#EXT-X-ENDLIST) is finished, not down
            outage_start = time.time()
            self.progress.connected = False

    def _decode(self, container) -> Iterator[MediaChunk]:
        audio = container.streams.audio[0] if container.streams.audio else None
        video = container.streams.video[0] if container.streams.video and self.frame_fps > 0 else None
        self.progress.has_audio = audio is not None
        self.progress.has_video = bool(container.streams.video)
        if video is not None:
            video.thread_type = "AUTO"
            video.thread_count = 2  # bounded: many streams share the cores
        tracks = {}
        if self.subtitles:
            tracks = {s.index: SubtitleTrack(s, lambda pts: media_time(pts)) for s in subtitle_streams(container)}
        scenes = None
        if video is not None:
            scenes = SceneDetector() if self.scene_threshold is None else SceneDetector(self.scene_threshold)
        streams = [s for s in (audio, video) if s is not None]
        streams += [container.streams[i] for i in tracks]
        if not streams:
            return
        base = container.start_time / 1e6 if container.start_time is not None else None
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        pending: list[np.ndarray] = []
        pending_n = 0
        audio_t0: float | None = None  # media time of the next sample to emit
        next_frame_t = 0.0
        wall0 = time.monotonic()
        media0 = self._offset
        skip_until = 0.0
        if not self.spec.live and self.start_at > 0:
            # Lands on the keyframe before start_at; what precedes start_at is decoded and dropped.
            container.seek(int((self.start_at + (base or 0.0)) * 1e6))
            media0 = skip_until = self.start_at

        def media_time(frame_time: float | None) -> float:
            nonlocal base
            if frame_time is None:
                return self._media_end
            if base is None:
                base = frame_time
            return self._offset + max(0.0, frame_time - base)

        def emit_audio(final: bool = False):
            nonlocal pending, pending_n, audio_t0
            if pending_n == 0 or (not final and pending_n < CHUNK_SECONDS * SAMPLE_RATE):
                return None
            samples = np.concatenate(pending)
            chunk = AudioChunk(samples, audio_t0, time.time())
            audio_t0 += pending_n / SAMPLE_RATE
            pending, pending_n = [], 0
            if chunk.t0 < skip_until:
                cut = int(round((skip_until - chunk.t0) * SAMPLE_RATE))
                if cut >= len(samples):
                    return None
                chunk = AudioChunk(samples[cut:], chunk.t0 + cut / SAMPLE_RATE, chunk.wall)
            return chunk

        def paced(chunk_end: float):
            if self.pace == "realtime":
                due = wall0 + (chunk_end - media0)
                wait = due - time.monotonic()
                if wait > 0:
                    self.stop.wait(wait)

        for packet in container.demux(*streams):
            if self.stop.is_set():
                return
            if packet.stream.index in tracks:
                for cue in tracks[packet.stream.index].push(packet):
                    if cue.t1 > skip_until:
                        yield cue
                continue
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                self.progress.decode_errors += 1  # a corrupt packet costs its own frames only
                continue
            for frame in frames:
                if packet.stream is audio:
                    t = media_time(frame.time)
                    if audio_t0 is None:
                        audio_t0 = t
                    elif frame.time is not None and t - (audio_t0 + pending_n / SAMPLE_RATE) > AUDIO_GAP_S:
                        # Audio missing from the container (a clip without sound, packets lost on
                        # the wire): counting samples would pull every later word earlier. What came
                        # before goes out as it is, and audio time jumps with the timestamps.
                        chunk = emit_audio(final=True)
                        if chunk is not None:
                            self._media_end = max(self._media_end, chunk.t1)
                            yield chunk
                        audio_t0 = t
                    for out in resampler.resample(frame):
                        pcm = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                        pending.append(pcm)
                        pending_n += len(pcm)
                    chunk = emit_audio()
                    if chunk is not None:
                        paced(chunk.t1)
                        self._media_end = max(self._media_end, chunk.t1)
                        yield chunk
                else:
                    t = media_time(frame.time)
                    # Every decoded frame goes through the cut detector (64x36, well under 1 ms), so
                    # a new shot is sampled as soon as the cut is confirmed (3 frames into it),
                    # between the regular samples.
                    cut = scenes.update(t, thumbnail(frame))
                    if audio is None:  # pictures are the clock: the stream lasts to its last frame
                        step = float(frame.duration * frame.time_base) if frame.duration else 0.0
                        self._media_end = max(self._media_end, t + step)
                    on_grid = t + 1e-6 >= next_frame_t
                    if t + 1e-6 < skip_until or not (on_grid or cut is not None):
                        continue
                    next_frame_t = t + 1.0 / self.frame_fps
                    yield self._frame_record(frame, t, None if cut is None else cut.t)
                    if audio is None:
                        paced(t)
        for track in tracks.values():
            for cue in track.flush(self._media_end):
                if cue.t1 > skip_until:
                    yield cue
        if audio is not None and audio_t0 is not None:
            for out in resampler.resample(None):
                pcm = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                pending.append(pcm)
                pending_n += len(pcm)
            chunk = emit_audio(final=True)
            if chunk is not None:
                self._media_end = max(self._media_end, chunk.t1)
                yield chunk

    @staticmethod
    def _frame_record(frame, t: float, cut: float | None = None) -> VideoFrame:
        width, height = frame.width, frame.height
        if width > MAX_FRAME_WIDTH:
            height = max(2, int(height * MAX_FRAME_WIDTH / width) // 2 * 2)
            width = MAX_FRAME_WIDTH
        image = frame.to_ndarray(format="rgb24", width=width, height=height)
        return VideoFrame(image=image, t=t, wall=time.time(), cut=cut)
