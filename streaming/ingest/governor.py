"""Backpressure: when a live (or real-time-paced) stream cannot keep up, degrade on purpose.

The reader queue is bounded, so a stream that falls behind never holds more than ``queue_seconds``
of decoded media; without a policy the rest would be lost at the socket, silently and at random.
The governor watches the backlog (media decoded but not yet taken by the worker) and steps
through quality levels that shed the optional work first:

  0  full quality
  1  no provisional text (when the stream has it): the fast re-decodes are the first thing to go
  2  half the frames, OCR at most half as often
  3  a quarter of the frames, OCR only at shot cuts
  4  the smaller fallback ASR model, when one is configured

(A stream without provisional text, frames or a fallback model has only the rungs that apply.)

Speech is never dropped: it is what most questions are about. Levels change with hysteresis (the
backlog must stay high for ``hold_s`` to step down, low for ``recover_s`` to step back up), so a
burst does not make quality flap, and every change is recorded with its reason and time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from streaming.settings import Settings


@dataclass(frozen=True, slots=True)
class Degradation:
    """What one level sheds: the knobs the pipeline applies when the level changes."""

    level: int
    frame_fps: float
    ocr_interval_s: float  # inf: OCR only at shot cuts
    fallback_asr: bool
    reason: str = ""
    wall: float = 0.0  # when the governor decided it
    provisional: bool = True  # provisional text on (streams that have it)

    def describe(self) -> str:
        ocr = "at cuts only" if math.isinf(self.ocr_interval_s) else f"every {self.ocr_interval_s:g} s"
        return (("" if self.provisional else "no provisional text, ") + f"frames {self.frame_fps:.2g}/s, OCR {ocr}"
                + (", fallback ASR" if self.fallback_asr else ""))

    def to_dict(self) -> dict:
        return {"level": self.level, "frame_fps": self.frame_fps,
                "ocr_interval_s": None if math.isinf(self.ocr_interval_s) else self.ocr_interval_s,
                "fallback_asr": self.fallback_asr, "provisional": self.provisional, "reason": self.reason,
                "wall": self.wall}


def degradation_ladder(frame_fps: float, ocr_interval_s: float, has_fallback_asr: bool,
                       has_provisional: bool = False) -> list[Degradation]:
    """The ladder for a stream's own settings (a stream without frames has fewer rungs)."""
    ladder = [Degradation(0, frame_fps, ocr_interval_s, False)]
    off = not has_provisional  # provisional text is shed first, and stays off on every later rung
    if has_provisional:
        ladder.append(Degradation(1, frame_fps, ocr_interval_s, False, provisional=False))
    if frame_fps > 0:
        ladder += [Degradation(len(ladder), frame_fps / 2, max(2 * ocr_interval_s, 2.0), False, provisional=off),
                   Degradation(len(ladder) + 1, frame_fps / 4, math.inf, False, provisional=off)]
    if has_fallback_asr:
        top = ladder[-1]
        ladder.append(Degradation(len(ladder), top.frame_fps, top.ocr_interval_s, True, provisional=off))
    return ladder


class Governor:
    """Feed it the backlog after each piece of work; it answers with a new level when one is due."""

    @classmethod
    def from_settings(cls, s: Settings, frame_fps: float, has_fallback_asr: bool,
                      has_provisional: bool = False) -> Governor:
        """The governor a live-paced stream runs with: its ladder from the stream's own frame rate."""
        return cls(degradation_ladder(frame_fps, s.ocr_interval_s, has_fallback_asr, has_provisional),
                   high_s=s.degrade_backlog_s,
                   hold_s=s.degrade_hold_s, recover_s=s.degrade_recover_s)

    def __init__(self, ladder: list[Degradation], high_s: float = 10.0, low_s: float | None = None,
                 hold_s: float = 5.0, recover_s: float = 30.0):
        if not ladder:
            raise ValueError("the ladder needs at least the full-quality level")
        if high_s <= 0 or hold_s < 0 or recover_s < 0:
            raise ValueError("high_s must be positive, hold_s and recover_s not negative")
        self.ladder = ladder
        self.high_s = high_s
        self.low_s = high_s / 4 if low_s is None else low_s
        if not 0 <= self.low_s < self.high_s:
            raise ValueError("low_s must be below high_s")
        self.hold_s, self.recover_s = hold_s, recover_s
        self.current = ladder[0]
        self.history: list[Degradation] = []
        self._high_since: float | None = None
        self._low_since: float | None = None

    @property
    def level(self) -> int:
        return self.current.level

    def update(self, wall: float, backlog_s: float) -> Degradation | None:
        """``backlog_s``: media seconds waiting for the worker. Returns the new level on a change."""
        if backlog_s <= self.high_s:
            self._high_since = None
        elif self._high_since is None:
            self._high_since = wall
        if backlog_s >= self.low_s:
            self._low_since = None
        elif self._low_since is None:
            self._low_since = wall
        step = 0
        if self._high_since is not None and wall - self._high_since >= self.hold_s \
                and self.level < len(self.ladder) - 1:
            step, why = 1, f"backlog {backlog_s:.1f} s above {self.high_s:g} s for {self.hold_s:g} s"
        elif self._low_since is not None and wall - self._low_since >= self.recover_s and self.level > 0:
            step, why = -1, f"backlog below {self.low_s:g} s for {self.recover_s:g} s"
        if step == 0:
            return None
        # Each step needs its own hold: the last change gets time to show its effect.
        self._high_since = self._low_since = None
        base = self.ladder[self.level + step]
        self.current = Degradation(base.level, base.frame_fps, base.ocr_interval_s, base.fallback_asr,
                                   why, wall, base.provisional)
        self.history.append(self.current)
        if len(self.history) > 100:  # days of flapping must not grow the status without bound
            del self.history[:-100]
        return self.current


class StreamClock:
    """Where a clocked stream (live, or a file read at real-time pace) should be by now.

    Anchored at the first chunk of each connection, the stream's media time advances with the wall
    clock (a reconnect moves media time on by the outage, so re-anchoring keeps that true); how
    far any media time trails it is that media's real age, wherever it waited: our queue, a
    blocked file reader, or a socket's own buffer, which the queue alone cannot see. Sender clocks
    drift by parts per million, well under a second a day, so no drift correction is attempted.
    """

    def __init__(self, clock):
        self.clock = clock
        self._origin: tuple[float, float] | None = None
        self._connection = -1

    def on_read(self, media_t: float, connection: int) -> None:
        """Every chunk the reader gets; ``connection`` counts reconnects."""
        if connection != self._connection:
            self._connection = connection
            self._origin = (self.clock(), media_t)

    def wall_of(self, media_t: float) -> float | None:
        """When media time ``media_t`` arrived (or will), on this clock; None before the first chunk."""
        if self._origin is None:
            return None
        wall0, t0 = self._origin
        return wall0 + (media_t - t0)

    def trailing(self, media_t: float) -> float | None:
        """Seconds ``media_t`` trails the clock; None before the first chunk."""
        if self._origin is None:
            return None
        wall0, t0 = self._origin
        return max(0.0, (self.clock() - wall0) - (media_t - t0))
