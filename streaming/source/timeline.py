"""Turn a source's raw timestamps into media time that never runs backwards and never leaps.

Senders misbehave: MPEG-TS PTS are 33 bits at 90 kHz and wrap to 0 every ~26.5 h, a restarted encoder
or a spliced feed starts a new timeline an hour ahead or behind, a sender that dies and comes back
within the read timeout restarts its clock on the same socket. Mapped naively (``time - first_time``)
a wrap or a backward jump collapses every later time onto the start, and a forward jump opens an hour
of nothing in the index. ``MediaClock`` keeps one linear mapping ("segment") per stretch of consistent
timestamps and starts a new one, continuing from the media time already reached, when the source's
timestamps stop making sense. One clock serves all tracks of a connection, so audio and video stay in
sync across a rebase: whichever track sees the new timeline first places it, and the other tracks'
timestamps in the same timeline land at the same offset from it as they had before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from streaming.records import Gap

PTS_PERIOD_S = 2**33 / 90_000  # MPEG-TS PTS/DTS: 33 bits of a 90 kHz clock, ~26.5 h

# Live: audio and video of one program are muxed within ~0.7 s of each other (mpegts max_delay) and
# a threaded video decoder adds a few frames; anything further back than this is a new timeline.
LIVE_BACK_S = 3.0
# Live: timestamps may run ahead of the time the source took to deliver them by this much (bursts
# after a network hiccup, a sender clock that runs slightly fast). A gap in the timestamps that the
# wait for data explains is a real hole (a live encoder kept its clock running) and is kept.
LIVE_AHEAD_S = 5.0
# Recorded files carry no wall clock to compare with, and their timestamps are usually right: holes up
# to a minute (a paused recording, a clip without sound) are kept as they are, and so is audio/video
# interleaving of badly muxed files, which can reach several seconds. Beyond it a jump is a splice.
FILE_JUMP_S = 60.0
# A rebase places the first new timestamp one frame after the last old one: frames are at most
# this long in anything a person watches or listens to (it bounds a wild step measured across a gap).
MAX_STEP_S = 0.5
KEEP_SEGMENTS = 3  # earlier timelines kept to place stragglers of other tracks across a jump
KEEP_RECORDS = 32  # discontinuities kept for status; the count goes on past it

# A live push source (UDP, RTP, SRT, RTMP...) sends packets every few tens of ms: a wait this long
# for one is a silence, and one longer than STALL_GAP_S while the connection holds is an outage shorter
# than the read timeout, recorded as a gap. Packets still coming STALL_CONFIRM_S after a silence
# mean the sender is back.
QUIET_S = 0.5
STALL_GAP_S = 2.0
STALL_CONFIRM_S = 0.2


@dataclass(frozen=True, slots=True)
class Discontinuity:
    """Where the source's timestamps jumped and media time was made to go on instead."""

    media_t: float  # media time the new timeline was placed at
    raw_from: float  # the latest source timestamp (seconds) before the jump
    raw_to: float  # the first one after it
    waited_s: float  # how long the source had been silent just before (live; 0 for files)

    @property
    def jump_s(self) -> float:
        return self.raw_to - self.raw_from


@dataclass(slots=True)
class _Segment:
    raw0: float  # unwrapped source seconds that map to media0
    media0: float
    hi: float  # latest unwrapped timestamp seen in this timeline
    hi_wall: float | None  # the caller's clock when ``hi`` was seen
    turns: int = 0  # wraps unwrapped so far in this timeline

    def unwrap(self, raw: float, period: float | None) -> tuple[float, int]:
        """``raw`` moved by whole periods to lie nearest this timeline's latest timestamp."""
        if not period:
            return raw, 0
        k = round((self.hi - raw) / period)
        return raw + k * period, k

    def media(self, unwrapped: float) -> float:
        return self.media0 + (unwrapped - self.raw0)


@dataclass(slots=True)
class _Track:
    out: float  # latest media time returned for this track
    raw: float  # its unwrapped source timestamp
    wall: float | None
    step: float = 0.0  # its latest positive timestamp step: a frame's length
    seg: _Segment | None = None  # the timeline its latest timestamp was in


@dataclass
class MediaClock:
    """Monotonic media time for one connection to a source.

    ``offset`` is the media time this connection starts at (where the previous one ended, plus the
    outage), ``base`` the source timestamp that maps to it (the container's start time; the first
    timestamp if None). Live sources pass ``wall`` to ``observe``: the seconds the source has taken
    to deliver so far, measured only while waiting on it, so a slow consumer does not look like a
    sender outage. Without it (recorded files) jumps are judged against ``FILE_JUMP_S``.
    ``keep_base``: ``base`` is a timestamp of this very source's timeline (where a reopened HLS
    playlist's previous connection ended, streaming/source/continuity.py), kept however far the
    first frame is from it.
    """

    offset: float = 0.0
    base: float | None = None
    live: bool = False
    period: float | None = PTS_PERIOD_S
    keep_base: bool = False
    count: int = field(default=0, init=False)  # discontinuities so far
    wraps: int = field(default=0, init=False)  # timestamp wraps unwrapped so far
    records: list[Discontinuity] = field(default_factory=list, init=False)
    _segments: list[_Segment] = field(default_factory=list, init=False, repr=False)  # the current last
    _tracks: dict[str, _Track] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        if not math.isfinite(self.offset) or self.offset < 0:
            raise ValueError(f"offset must be a finite, non-negative media time, got {self.offset!r}")
        if self.period is not None and self.period <= 0:
            raise ValueError("period must be positive or None")

    @property
    def back_s(self) -> float:
        return LIVE_BACK_S if self.live else FILE_JUMP_S

    @property
    def high(self) -> float:
        """The latest media time returned for any track (``offset`` before the first)."""
        return max([self.offset] + [t.out for t in self._tracks.values()])

    def observe(self, raw: float, track: str = "audio", wall: float | None = None) -> float:
        """Media time of a decoded frame with source timestamp ``raw`` (seconds) on ``track``.

        Never earlier than the previous frame of the same track, nor than ``offset``."""
        if not math.isfinite(raw):
            raise ValueError(f"timestamp must be finite, got {raw!r}")
        if not self._segments:
            self._segments.append(self._first_segment(raw, wall))
        seg = self._segments[-1]
        u, k = seg.unwrap(raw, self.period)
        if self._fits(seg, u, wall, self._tracks.get(track)):
            if k > seg.turns:
                self.wraps += k - seg.turns
                seg.turns = k
            if u > seg.hi:
                seg.hi, seg.hi_wall = u, wall
            t = seg.media(u)
        else:
            old = self._straggler(raw)
            if old is not None:
                # A late frame of an earlier timeline (video behind audio across a jump), or that
                # timeline going on after one damaged timestamp: it keeps its place, and if it moves
                # on it is the current timeline again.
                seg, u = old
                t = seg.media(u)
                if u > seg.hi:
                    seg.hi, seg.hi_wall = u, wall
                    self._segments.remove(seg)
                    self._segments.append(seg)
            else:
                t = self._rebase(u, track, wall)
                seg = self._segments[-1]
        return self._emit(track, t, u, wall, seg)

    def map(self, raw: float) -> float:
        """Media time of a timestamp that must not move the clock (subtitle ends, durations)."""
        if not self._segments:
            base = self.base if self.base is not None else raw
            return self.offset + max(0.0, raw - base)
        seg = self._segments[-1]
        u, _ = seg.unwrap(raw, self.period)
        if u < seg.hi - self.back_s:
            old = self._straggler(raw)
            if old is not None:
                return max(self.offset, old[0].media(old[1]))
        return max(self.offset, seg.media(u))

    # -- internals -------------------------------------------------------------------------------
    def _first_segment(self, raw: float, wall: float | None) -> _Segment:
        base = self.base
        if base is not None and self.live:
            base = _Segment(raw, 0.0, raw, None).unwrap(base, self.period)[0]
            # A live start time far from the first frame belongs to some other stream (a data track,
            # a stale probe): mapping by it would open a hole right at the start. A file's is kept:
            # it is where a seek lands and where its own media time counts from.
            if abs(raw - base) > LIVE_AHEAD_S and not self.keep_base:
                base = None
        return _Segment(raw0=raw if base is None else base, media0=self.offset, hi=raw, hi_wall=wall)

    def _fits(self, seg: _Segment, u: float, wall: float | None, track: _Track | None) -> bool:
        behind = seg.hi - self.back_s
        if track is not None and track.seg is seg:
            # Frames a decoder held back (threads, reordering) may come after another track already
            # crossed a real hole: behind the timeline's newest, yet right after their own track's.
            behind = min(behind, track.raw - self.back_s)
        if u < behind:
            return False
        if self.live and wall is not None and seg.hi_wall is not None:
            ahead = (wall - seg.hi_wall) + LIVE_AHEAD_S
        else:
            ahead = FILE_JUMP_S
        return u - seg.hi <= ahead

    def _straggler(self, raw: float) -> tuple[_Segment, float] | None:
        for seg in reversed(self._segments[:-1]):
            u, _ = seg.unwrap(raw, self.period)
            if abs(u - seg.hi) <= self.back_s:
                return seg, u
        return None

    def _rebase(self, raw: float, track: str, wall: float | None) -> float:
        """Start a timeline at ``raw`` (unwrapped near the current one, so the record's jump is the
        real one, not a wrap period off)."""
        seg = self._segments[-1]
        prev = self._tracks.get(track)
        if prev is None:
            last, step, waited = self.high, 0.0, 0.0
        else:
            last, step = prev.out, min(prev.step, MAX_STEP_S)
            waited = (wall - prev.wall) if (self.live and wall is not None and prev.wall is not None) else 0.0
        # Live: the new timeline starts when it arrived, so an outage inside one connection (a sender
        # restarted within the read timeout) shows in media time as a reconnect's outage does.
        # Files: one frame on, as if the splice were seamless.
        media0 = last + max(step, waited)
        self.count += 1
        self.records.append(Discontinuity(media0, seg.hi, raw, max(0.0, waited)))
        del self.records[:-KEEP_RECORDS]
        self._segments.append(_Segment(raw0=raw, media0=media0, hi=raw, hi_wall=wall))
        del self._segments[:-(KEEP_SEGMENTS + 1)]
        return media0

    def _emit(self, track: str, t: float, u: float, wall: float | None, seg: _Segment) -> float:
        prev = self._tracks.get(track)
        t = max(t, self.offset)
        if prev is None:
            self._tracks[track] = _Track(t, u, wall, seg=seg)
            return t
        t = max(t, prev.out)
        if u > prev.raw and u - prev.raw <= MAX_STEP_S:
            prev.step = u - prev.raw
        prev.out, prev.raw, prev.wall, prev.seg = t, u, wall, seg
        return t


@dataclass
class SilenceWatch:
    """When a live connection last heard from its source, and the silences it sat through.

    A silence stays pending until packets are seen flowing after it: when the read timeout ends a
    connection the demuxer still hands out what it held back, which looks like data after a
    silence, and that outage is the reconnect's to record. Until confirmed, the source was last
    heard from when the silence began.
    """

    last_heard: float | None = None  # wall time
    _pending: tuple[Gap, float] | None = field(default=None, init=False, repr=False)  # and when it ended
    _after: int = field(default=0, init=False, repr=False)  # packets since the pending silence

    def packet(self, waited: float, wall: float, mono: float, media_t: float) -> Gap | None:
        """A packet came after ``waited`` s; returns a silence longer than STALL_GAP_S once confirmed."""
        confirmed = None
        if waited > QUIET_S and self.last_heard is not None:  # (the first packet's wait is the open's)
            if self._pending is not None and self._after:
                confirmed = self._pending[0]  # data flowed between two silences: the first was real
            self._pending, self._after = (Gap(media_t, wall - waited, wall, f"no data for {waited:.1f} s"), mono), 0
        elif self._pending is not None:
            self._after += 1
            if mono - self._pending[1] > STALL_CONFIRM_S:
                confirmed, self._pending = self._pending[0], None
        self.last_heard = wall if self._pending is None else self._pending[0].wall_start
        if confirmed is not None and confirmed.wall_end - confirmed.wall_start <= STALL_GAP_S:
            return None
        return confirmed
