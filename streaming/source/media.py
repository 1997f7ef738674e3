"""Open a recorded file or a live URL with PyAV and decode it incrementally into timestamped chunks.

Nothing here reads a whole file: packets are demuxed and decoded one at a time, audio is resampled to
16 kHz mono float32 in ~0.5 s chunks, and frames are sampled at a fixed rate. Live sources get open and
read timeouts (PyAV otherwise blocks forever on a silent UDP socket) and reconnect with backoff; media
time continues across reconnects so it never goes backwards.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import av

from streaming.source import watchdog
from streaming.source.audio_chunks import AudioChunker
from streaming.source.container import HLS_READ_TIMEOUT_S, is_playlist, open_container, reason
from streaming.source.continuity import Resume
from streaming.records import Gap, MediaChunk, VideoFrame
from streaming.source.patience import FirstConnect
from streaming.source.scenes import SceneDetector, thumbnail
from streaming.source.spec import (LIVE_SCHEMES, RECORDED_SUFFIXES, NothingReceived, SourceError, SourceSpec,
                                   SourceUnreachable, is_listener, parse_source)
from streaming.source.subtitles import SubtitleTrack, subtitle_streams
from streaming.source.timeline import MediaClock, SilenceWatch
from streaming.source.redact import redact_text

# What callers import from here (the spec's names are re-exported: parse a source, then open it).
__all__ = ["CHUNK_SECONDS", "HLS_READ_TIMEOUT_S", "LIVE_SCHEMES", "MAX_FRAME_WIDTH", "RECORDED_SUFFIXES",
           "MediaSource", "NothingReceived", "SourceError", "SourceProgress", "SourceSpec", "SourceUnreachable",
           "open_container", "parse_source"]

log = logging.getLogger("manta.sources")

CHUNK_SECONDS = 0.5
MAX_FRAME_WIDTH = 640


def _first_timestamp(container, streams) -> float:
    """The first packet time of a file's followed tracks (0 when none says): read before a seek."""
    for packet in container.demux(*streams):
        if packet.pts is not None and packet.time_base is not None:
            return float(packet.pts * packet.time_base)
    return 0.0


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
    discontinuities: int = 0  # timestamp jumps that media time was made to continue across
    timestamp_wraps: int = 0  # MPEG-TS PTS wraps unwrapped (FFmpeg's demuxer only corrects the first)
    stalls: int = 0  # silences shorter than the read timeout, recorded as gaps
    waiting: bool = False  # a listener that never heard from its sender, waiting for it (patience.py)


class MediaSource:
    """Iterate ``AudioChunk`` / ``VideoFrame`` records from one source, reconnecting live ones."""

    def __init__(self, spec: SourceSpec, *, open_timeout: float = 5.0, read_timeout: float = 5.0,
                 pace: str = "fast", frame_fps: float = 1.0, reconnect_initial: float = 0.5,
                 reconnect_max: float = 30.0, stop: threading.Event | None = None,
                 on_gap: Callable[[Gap], None] | None = None, start_at: float = 0.0,
                 subtitles: bool = True, scene_threshold: float | None = None, resumed: bool = False,
                 check: Callable[[SourceSpec], dict[str, str]] | None = None,
                 listen_wait: float | None = 0.0, connect_retry: float = 0.0, read_before: float = 0.0):
        if pace not in ("fast", "realtime"):
            raise ValueError("pace must be 'fast' or 'realtime'")
        self.spec = spec
        # Before every open, a reconnect's too (a host name can resolve elsewhere by then): the
        # source policy, which raises SourceError or returns the FFmpeg options that bound the open.
        self.check = check
        self.open_timeout, self.read_timeout = open_timeout, read_timeout
        self.pace, self.frame_fps = pace, frame_fps
        self.subtitles = subtitles
        self.scene_threshold = scene_threshold
        self.reconnect_initial, self.reconnect_max = reconnect_initial, reconnect_max
        # Before the first connection: how long a listener waits for its sender (None: no limit) and
        # a pull source retries its server (streaming/source/patience.py). 0: the first failure fails.
        self.listen_wait, self.connect_retry = listen_wait, connect_retry
        self.stop = stop or threading.Event()
        self.on_gap = on_gap
        self.progress = SourceProgress()
        if start_at < 0:
            raise ValueError("start_at must not be negative")
        # Resuming after a restart: a file seeks to start_at; a live source's media time goes on
        # from there (it cannot rewind), so times stay monotonic across the restart.
        self.start_at = start_at
        # A real-time-paced file restarted from its checkpoint had already been read up to here:
        # that part is read again at once and the pace resumes after it, so the restart does not
        # also make the stream wait out media it had played once (as a live broadcast would not).
        self.read_before = read_before
        # A live stream brought back by a restart did connect before: if its sender is down now,
        # that is an outage to wait out (with backoff, recorded as a gap), not a typo to report.
        self.progress.ever_connected = spec.live and resumed
        self._offset = 0.0  # media time where the current session starts
        self._media_end = start_at  # latest media time emitted
        self._container = None
        self._last_data_wall: float | None = None  # when the current connection last delivered a packet
        self._waited_s = 0.0  # time spent waiting on the current connection: the source's own clock
        self._decoded_to = 0.0  # media time decoded so far, emitted or not (audio waits for a full chunk)
        self._failure: Exception | None = None  # a read error, raised once what was read is flushed
        self._playlist_ended = False  # an HLS playlist with #EXT-X-ENDLIST: its clean end is the end
        self._raw_end: float | None = None  # source time where the delivered audio (or video) ended
        self._resume: Resume | None = None  # a reopened playlist, until its first packet is seen

    def probe(self) -> None:
        """Open now, so a bad file fails at once rather than later in a background thread."""
        self._container = self._open()

    def _open(self):
        options = self.check(self.spec) if self.check is not None else None
        return open_container(self.spec, self.open_timeout, self.read_timeout, options)

    def __iter__(self) -> Iterator[MediaChunk]:
        delay = self.reconnect_initial
        outage_start: float | None = None
        first = FirstConnect(is_listener(self.spec), self.listen_wait, self.connect_retry,
                             self.reconnect_initial, self.reconnect_max)
        while not self.stop.is_set():
            attempt = time.time()
            if not self.progress.ever_connected:
                first.attempt(time.monotonic())
            try:
                container = self._container or self._open()
                self._container = None
                if outage_start is not None and self._finished_playlist(container):
                    return  # a live playlist got #EXT-X-ENDLIST meanwhile: it ended, it is not down
            except SourceError as exc:
                self.progress.last_error = str(exc)
                if not self.spec.live:
                    raise
                if not self.progress.ever_connected:
                    wait = first.after_failure(exc, time.monotonic())
                    self.progress.waiting = first.waiting
                    if wait is None:
                        # Not for trying again (a typo, a refusal), or tried as long as allowed.
                        error = first.give_up(exc, time.monotonic())
                        self.progress.last_error = str(error)
                        raise error from None
                    self.stop.wait(wait)
                    continue
                outage_start = outage_start or attempt  # (a resumed source: since its first try)
                self.progress.connected = False
                self.stop.wait(delay)
                delay = min(delay * 2, self.reconnect_max)
                continue
            self._playlist_ended = is_playlist(self.spec) and container.duration is not None
            if outage_start is not None:
                now = time.time()
                self._offset = self._media_end + (now - outage_start)
                outage = Gap(self._media_end, outage_start, now, self.progress.last_error or "disconnected")
                if is_playlist(self.spec) and self._raw_end is not None:
                    # Placed by the encoder's timestamps if they go on: decided on the first packet.
                    self._resume = Resume(self._raw_end, self._media_end, outage)
                else:
                    self._gap(outage)
                self.progress.reconnects += 1
                outage_start = None
            else:
                self._offset = self._media_end if self.spec.live else 0.0
            self.progress.connected = self.progress.ever_connected = True
            self.progress.waiting = False
            delay = self.reconnect_initial
            clean_end = True
            try:
                yield from self._decode(container)
            except (av.error.FFmpegError, OSError) as exc:
                clean_end = False
                self.progress.last_error = f"stream interrupted: {reason(exc)}"
                log.warning("source %s interrupted: %s", self.spec.display, redact_text(str(exc)))
            finally:
                container.close()
                if self._resume is not None:  # the reopened playlist sent nothing: the outage goes on
                    self._gap(self._resume.outage)
                    self._resume = None
            if not self.spec.live or self.stop.is_set():
                return
            if clean_end and self._playlist_ended:
                return  # an HLS playlist that ended (#EXT-X-ENDLIST) is finished, not down
            # A live playlist (no #EXT-X-ENDLIST) also ends quietly when FFmpeg cannot reload it
            # (its server is gone): that is an outage like any other, reopened with backoff.
            # The outage began when the last packet came, not when the read timeout noticed it: the
            # gap spans it all and media time skips by all of it.
            outage_start = self._last_data_wall or time.time()
            self.progress.connected = False

    def _finished_playlist(self, container) -> bool:
        """A reopened HLS playlist that now has #EXT-X-ENDLIST (FFmpeg then knows its duration): the
        broadcast ended while the source was away; reading it again would repeat it."""
        if is_playlist(self.spec) and container.duration is not None:
            container.close()
            self.progress.connected = False
            return True
        return False

    def _gap(self, gap: Gap) -> None:
        if self.on_gap:
            self.on_gap(gap)

    def _packets(self, container, streams) -> Iterator:
        """Demux, timing each wait on the source. A silence on a live push source is recorded as a
        gap (the connection held, so no reconnect records it); playlists (HLS) fetch segments
        seconds apart and are not watched. A read error ends the packets and is kept in
        ``_failure``, so that what was decoded is flushed first."""
        watch = self.spec.live and not is_playlist(self.spec)
        self._last_data_wall, self._waited_s, self._failure = None, 0.0, None
        silence = SilenceWatch()
        packets = container.demux(*streams)
        # A live source waits at most the read timeout for a packet of the tracks it follows, other
        # tracks' packets (a new encoder's, after a handover) notwithstanding: watchdog.py.
        limit = (max(self.read_timeout, HLS_READ_TIMEOUT_S) if is_playlist(self.spec) else self.read_timeout) \
            if self.spec.live and watchdog.install() else None
        while True:
            asked = time.monotonic()
            try:
                with watchdog.bounded(limit) as wait:
                    packet = next(packets)
            except StopIteration:
                return
            except (av.error.FFmpegError, OSError) as exc:
                self._failure = exc
                if wait.tripped:
                    self._failure = watchdog.TracksSilent(
                        f"no packet of the tracks followed for {limit:g} s (the sender stopped, or was replaced "
                        "by one with other tracks)")
                return
            got = time.monotonic()
            self._waited_s += got - asked
            gap = silence.packet(got - asked, time.time(), got, max(self._media_end, self._decoded_to))
            self._last_data_wall = silence.last_heard
            if gap is not None and watch and not self.stop.is_set():
                self.progress.stalls += 1
                log.warning("source %s sent nothing for %.1f s", self.spec.display, gap.wall_end - gap.wall_start)
                self._gap(gap)
            yield packet

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
            tracks = {s.index: SubtitleTrack(s, lambda pts: clock.map(pts)) for s in subtitle_streams(container)}
        scenes = None
        if video is not None:
            scenes = SceneDetector() if self.scene_threshold is None else SceneDetector(self.scene_threshold)
        streams = [s for s in (audio, video) if s is not None]
        streams += [container.streams[i] for i in tracks]
        if not streams:
            return
        base = container.start_time / 1e6 if container.start_time is not None else None
        # One clock for all tracks of this connection: it unwraps PTS wraps and carries media time on
        # across timestamp jumps (streaming/source/timeline.py). Live sources judge jumps against the time
        # spent waiting on the source, which a slow consumer does not inflate.
        clock = MediaClock(offset=self._offset, base=base, live=self.spec.live)
        resumed: Resume | None = None  # a reopened playlist that goes on from what was delivered
        counted = (self.progress.discontinuities, self.progress.timestamp_wraps)
        next_frame_t = 0.0
        wall0 = time.monotonic()
        media0 = self._offset
        skip_until = 0.0
        if not self.spec.live and self.start_at > 0:
            if base is None:
                # No container start time (WAV): the clock would take the first frame after the
                # seek as media 0 and shift everything by start_at. The file's own first timestamp is.
                base = clock.base = _first_timestamp(container, streams)
            # Lands on the keyframe before start_at; what precedes start_at is decoded and dropped.
            container.seek(int((self.start_at + (base or 0.0)) * 1e6))
            media0 = skip_until = self.start_at
        chunker = AudioChunker(CHUNK_SECONDS, skip_until)

        def media_time(frame_time: float | None, track: str) -> float:
            if frame_time is None:
                return self._media_end
            t = clock.observe(frame_time, track, self._waited_s if self.spec.live else None)
            if counted[0] + clock.count > self.progress.discontinuities:
                jump = clock.records[-1]
                log.warning("source %s: timestamps jumped %+.1f s; media time goes on at %.2f s",
                            self.spec.display, jump.jump_s, jump.media_t)
            self.progress.discontinuities = counted[0] + clock.count
            self.progress.timestamp_wraps = counted[1] + clock.wraps
            return t

        def paced(chunk_end: float):
            nonlocal wall0, media0
            if self.pace == "realtime":
                if chunk_end <= self.read_before:
                    wall0, media0 = time.monotonic(), chunk_end  # the pace starts after it
                    return
                due = wall0 + (chunk_end - media0)
                wait = due - time.monotonic()
                if wait > 0:
                    self.stop.wait(wait)

        for packet in self._packets(container, streams):
            if self.stop.is_set():
                return
            raw = float(packet.pts * packet.time_base) if packet.pts is not None else None
            if self._resume is not None and raw is not None:  # a reopened playlist's first packet
                resumed, gap = self._resume.after(raw)
                self._resume = None
                if gap is not None:
                    self._gap(gap)
                if resumed is not None:  # its timestamps go on, and so does media time (continuity.py)
                    clock, media0 = resumed.clock(), resumed.media_end + resumed.hole(raw)
            if packet.stream.index in tracks:
                if resumed is not None and resumed.delivered(raw):
                    continue  # a cue the previous connection delivered
                for cue in tracks[packet.stream.index].push(packet):
                    if cue.t1 > skip_until:
                        yield cue
                continue
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                # A corrupt packet costs its own frames only. Decoding reads no I/O, so whatever
                # FFmpeg says here (invalid data, EPERM from a confused H.264 decoder) is about the data.
                self.progress.decode_errors += 1
                continue
            for frame in frames:
                if resumed is not None and resumed.delivered(frame.time):
                    continue  # the demuxer started before the previous connection's end: a repeat
                if packet.stream is audio:
                    t = media_time(frame.time, "audio")
                    for chunk in chunker.push(frame, t, timed=frame.time is not None):
                        paced(chunk.t1)
                        self._media_end = max(self._media_end, chunk.t1)
                        yield chunk
                    self._decoded_to = chunker.decoded_to
                    if frame.time is not None:
                        self._raw_end = frame.time + frame.samples / frame.sample_rate
                else:
                    t = media_time(frame.time, "video")
                    # Every decoded frame goes through the cut detector (64x36, well under 1 ms), so
                    # a new shot is sampled as soon as the cut is confirmed (3 frames into it),
                    # between the regular samples.
                    cut = scenes.update(t, thumbnail(frame))
                    if audio is None:  # pictures are the clock: the stream lasts to its last frame
                        step = float(frame.duration * frame.time_base) if frame.duration else 0.0
                        self._media_end = max(self._media_end, t + step)
                        if frame.time is not None:
                            self._raw_end = frame.time + step
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
        for chunk in chunker.flush():
            self._media_end = max(self._media_end, chunk.t1)
            yield chunk
        if self._failure is not None:
            raise self._failure

    @staticmethod
    def _frame_record(frame, t: float, cut: float | None = None) -> VideoFrame:
        width, height = frame.width, frame.height
        if width > MAX_FRAME_WIDTH:
            height = max(2, int(height * MAX_FRAME_WIDTH / width) // 2 * 2)
            width = MAX_FRAME_WIDTH
        image = frame.to_ndarray(format="rgb24", width=width, height=height)
        return VideoFrame(image=image, t=t, wall=time.time(), cut=cut)
