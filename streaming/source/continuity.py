"""Where a live HLS playlist reopened after an outage goes on: by its encoder's timestamps.

FFmpeg's HLS demuxer starts a reopened live playlist ``live_start_index`` (3) segments before its live
edge. After a short outage that is media the source already delivered; after a longer one it is what
the encoder wrote while the server was away, which belongs where its timestamps put it, not where
the wall clock would. The encoder usually kept running (it kept writing segments), so its timestamps
run on across the outage: media time follows them, what was delivered already is dropped, and only
what is really missing is a gap. A new encoder (timestamps restarted) is placed by wall clock, as
any other reconnect is.
"""

from __future__ import annotations

from dataclasses import dataclass

from streaming.records import Gap
from streaming.source.timeline import MediaClock

# The reopened demuxer starts at most 3 segments before the live edge, and the source was at most at
# that edge when the server went away: its first timestamp is at most 3 segment durations before the
# last one delivered. Targets are 2-10 s in practice (Apple recommends 6); 40 s allows 3 x 10 s and
# a segment in flight. Not more: a restarted encoder's timestamps begin near 0 (or 1.4 s, FFmpeg's
# MPEG-TS muxer), and this bound is what tells a restart from a continuation in a stream that has
# run for a while. (One younger than 40 s is the exception: its restart looks like a continuation.)
BACK_S = 40.0
# Forward, the encoder went on by the outage's length; the source may also have been behind the live
# edge when the server went away (a slow consumer, a read waiting for a segment). A minute of that is
# allowed; a timeline further ahead is not the one the outage explains.
AHEAD_S = 60.0
# A hole shorter than this is not worth a gap record: at a segment's start the audio and video
# timestamps differ by a frame or two, and the first packet (which decides) may be either's.
HOLE_S = 0.5
EPSILON_S = 1e-3  # timestamps this close are the same frame


@dataclass(frozen=True)
class Resume:
    """What a reopened playlist may go on from: the source timestamp where the delivered media ended
    (its clock track's last frame, plus that frame's length: the next frame's timestamp) and the
    media time it ended at."""

    raw_end: float
    media_end: float
    outage: Gap  # the outage as the wall clock saw it (media_t is media_end)

    def after(self, raw: float) -> tuple[Resume | None, Gap | None]:
        """Decide on ``raw``, the reopened connection's first timestamp: this Resume to place the
        connection by, or None for a new encoder (placed by wall clock, as any reconnect is); and the
        gap to record: the outage, unless the timestamps say nothing of it is missing."""
        away = self.outage.wall_end - self.outage.wall_start
        if not self.raw_end - BACK_S <= raw <= self.raw_end + away + AHEAD_S:
            return None, self.outage
        return self, (self.outage if self.hole(raw) > HOLE_S else None)

    def clock(self) -> MediaClock:
        """Media time by the source's timestamps, going on from where the delivered media ended."""
        return MediaClock(offset=self.media_end, base=self.raw_end, live=True, keep_base=True)

    def delivered(self, raw: float | None) -> bool:
        """A frame (or cue) at ``raw`` was delivered by the previous connection: a repeat."""
        return raw is not None and raw < self.raw_end - EPSILON_S

    def hole(self, raw: float) -> float:
        """Media seconds missing before a first timestamp ``raw`` (0 when it repeats delivered media)."""
        return max(0.0, raw - self.raw_end)
