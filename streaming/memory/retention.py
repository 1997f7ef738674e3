"""Retention: keep a stream that runs for days inside an age limit and a disk budget.

A stream's data grows with media time (segments, shown text, labels, frames). When the oldest of it
is older than ``retention_hours`` (media time before the newest), or the stream's file uses more
than ``retention_mb``, the oldest data goes, whole macros at a time: what is left then replays into
exactly the parents it had, so a restart answers the same. A repeat whose representative goes
becomes the representative of the repeats after it, so "when" questions still find them all.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace

from streaming.records import RetentionCut
from streaming.settings import Settings

log = logging.getLogger("manta.retention")

SIZE_MARGIN = 0.1  # over the budget, drop this much more than the excess, so cuts are not constant


@dataclass(frozen=True)
class RetentionPolicy:
    hours: float | None = None
    max_bytes: int | None = None
    every_s: float = 60.0  # media seconds between checks

    @classmethod
    def from_settings(cls, s: Settings, live: bool = False) -> RetentionPolicy:
        """``live``: a live source never ends, so without a limit it would fill the disk; it gets
        ``live_retention_hours`` unless ``retention_hours`` is set. A file's data ends with the file."""
        mb = s.retention_mb
        hours = s.retention_hours if s.retention_hours is not None or not live else s.live_retention_hours
        return cls(hours, None if mb is None else int(mb * 1024 * 1024), s.retention_every_s)

    @property
    def active(self) -> bool:
        return self.hours is not None or self.max_bytes is not None

    def limit(self, newest_t: float, used_bytes: int, time_at_fraction) -> float | None:
        """Media time before which data should go, or None. ``time_at_fraction(f)``: when the oldest
        fraction f of the stored data ends."""
        limits = []
        if self.hours is not None:
            limits.append(newest_t - self.hours * 3600.0)
        if self.max_bytes is not None and used_bytes > self.max_bytes:
            t = time_at_fraction(min(1.0, (used_bytes - self.max_bytes) / used_bytes + SIZE_MARGIN))
            if t is not None:
                limits.append(t)
        t = max(limits, default=None)
        return t if t is not None and t > 0 else None


class Retention:
    """Applies a policy across one stream's stages: its index, levels, visual items and store."""

    def __init__(self, policy: RetentionPolicy, index, levels, visual, store=None,
                 cut: RetentionCut | None = None):
        self.policy, self.index, self.levels, self.visual, self.store = policy, index, levels, visual, store
        self.cut = cut
        self._checked = float("-inf")
        self.dropped = 0  # micro segments dropped so far (this run)
        self.promoted = 0  # repeats that became representatives when theirs went

    def info(self) -> dict:
        """For the checkpoint: where the last cut was, so a restart replays from there."""
        return {"retained": asdict(self.cut)} if self.cut is not None else {}

    def after_commit(self, newest_t: float) -> RetentionCut | None:
        p = self.policy
        if not p.active or newest_t - self._checked < p.every_s:
            return None
        self._checked = newest_t
        used = self.store.nbytes if self.store is not None else 0
        frac = self.store.time_at_fraction if self.store is not None else (lambda f: None)
        t = p.limit(newest_t, used, frac)
        cut = self.levels.cut_before(t) if t is not None else None
        if cut is None or (self.cut is not None and cut.seq <= self.cut.seq):
            return None
        self.apply(cut)
        return cut

    def apply(self, cut: RetentionCut) -> None:
        promoted = self.levels.remove_before(cut)
        self.dropped += self.index.remove_before(cut.t + 1e-6)  # segments end where the next starts
        self.visual.remove_before(cut.t)
        stored = self.store.vectors([p.seq for p in promoted]) if self.store is not None else {}
        for p in promoted:
            vector = stored.get(p.seq, p.vector)
            for seg in self.index.segments(p.t0, p.t0):
                if seg.seq == p.seq and vector is not None:
                    self.index.promote(replace(seg, merged_into=None), vector)
            for seq, t0, _ in p.others:
                for seg in self.index.segments(t0, t0):
                    if seg.seq == seq:
                        self.index.update(replace(seg, merged_into=p.seq))
        if self.store is not None:
            self.store.remove_before(cut, {p.seq: [seq for seq, _, _ in p.others] for p in promoted})
        self.cut = cut
        self.promoted += len(promoted)
        log.info("retention cut at %.1f s (segment %d): %d segments dropped, %d repeats promoted",
                 cut.t, cut.seq, self.dropped, len(promoted))
