"""How far one stream's ingest is, as its status shows it: media committed, lag behind the
sender's clock, decoded media waiting for the worker (backlog), and the real-time factor.

A clocked stream (live, or a file read at real-time pace) measures lag and backlog against its
``StreamClock`` (streaming/ingest/governor.py), which sees media waiting anywhere, a socket's own
buffer included; a file read fast has no clock, and its backlog is what the queue holds.
"""

from __future__ import annotations

from streaming.source.patience import live_state

ENDED = ("finished", "stopped", "failed")


class IngestProgress:
    def __init__(self, status, source, stream_clock, taken_t: float):
        self.status, self.source, self.stream_clock = status, source, stream_clock
        self.busy = 0.0  # seconds spent recognising, embedding and indexing
        self.taken_t = taken_t  # media time of the newest item the worker took off the queue

    def took(self, item) -> None:
        """The worker took ``item`` (a chunk, frame or cue) off the queue."""
        self.taken_t = max(self.taken_t, getattr(item, "t1", getattr(item, "t", 0.0)))

    def update(self, transcriber, segmenter, now: float) -> None:
        """After the worker's step: words are committed up to what the transcriber made final and
        the segmenter has put in a segment (words not yet in one are not searchable)."""
        st = self.status
        pending = segmenter.pending_start
        committed = transcriber.committed_until if pending is None else min(pending, transcriber.committed_until)
        st.committed_seconds = max(st.committed_seconds, committed)
        st.lag_s = max(0.0, st.media_seconds - st.committed_seconds, self.trailing(st.committed_seconds) or 0.0)
        st.backlog_s = self.backlog()
        st.rtf = self.busy / st.media_seconds if st.media_seconds > 0 else 0.0
        st.updated_wall = now

    def refresh(self) -> None:
        """Lag and backlog as of now, for a status read while the worker is deep in one long call."""
        st = self.status
        if st.state == "ingesting":
            st.backlog_s = self.backlog()
            st.lag_s = max(st.lag_s, self.trailing(st.committed_seconds) or 0.0)

    def sent_wall(self, t: float) -> float | None:
        """When a live (or real-time-paced) source delivered media time ``t``; None for a file read fast."""
        return self.stream_clock.wall_of(t) if self.stream_clock is not None else None

    def trailing(self, t: float) -> float | None:
        if self.stream_clock is None or not self.source.progress.connected or self.status.state in ENDED:
            return None
        return self.stream_clock.trailing(t)

    def backlog(self) -> float:
        if self.status.state in ENDED:
            return 0.0
        behind = self.trailing(self.taken_t)
        return max(0.0, self.status.media_seconds - self.taken_t) if behind is None else behind

    def snapshot(self, language: str | None, visual, heard, provisional_worker) -> dict:
        """The stream's status as a dict: its record, with the source's counters, the visual stage's,
        and the provisional text ``heard`` past what is final."""
        self.refresh()
        snap = self.status.to_dict() | {"language": language}
        progress = self.source.progress
        if self.source.spec.live:  # waiting for a sender, retrying a server, reconnecting (patience.py)
            snap["state"], snap["last_error"] = live_state(snap["state"], progress, snap["last_error"])
        snap["reconnects"] = progress.reconnects
        # Source faults survived, so a user can tell a clean feed from one that needed repair.
        snap.update(decode_errors=progress.decode_errors, discontinuities=progress.discontinuities,
                    timestamp_wraps=progress.timestamp_wraps, stalls=progress.stalls)
        if visual is not None:
            snap["visual"] = visual.counters.to_dict()
        snap["provisional"] = heard.to_dict() if heard is not None else None
        if provisional_worker is not None:
            snap["provisional_stats"] = provisional_worker.counters()
        return snap
