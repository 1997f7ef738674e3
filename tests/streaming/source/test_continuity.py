"""Resume: a reopened HLS playlist placed by its encoder's timestamps (the live run is in
test_live_edges.py; these are the decisions, on made-up numbers)."""

from __future__ import annotations

import pytest

from streaming.records import Gap
from streaming.source.continuity import AHEAD_S, BACK_S, Resume
from streaming.source.timeline import LIVE_AHEAD_S

OUTAGE = Gap(media_t=40.0, wall_start=1000.0, wall_end=1006.0, reason="Connection refused")
RESUME = Resume(raw_end=101.4, media_end=40.0, outage=OUTAGE)  # delivered up to source time 101.4 s


def test_the_same_encoders_timestamps_go_on_and_only_a_real_hole_is_a_gap() -> None:
    assert RESUME.after(104.4) == (RESUME, OUTAGE)  # 3 s the demuxer did not fetch again
    assert RESUME.after(99.4) == (RESUME, None)  # it started 2 s back: a repeat, nothing missing
    assert RESUME.after(101.7) == (RESUME, None)  # a segment boundary, not an outage
    assert RESUME.hole(104.4) == pytest.approx(3.0) and RESUME.hole(99.4) == 0.0


def test_timestamps_the_outage_does_not_explain_are_a_new_encoder_placed_by_wall_clock() -> None:
    assert RESUME.after(1.4) == (None, OUTAGE)  # restarted at FFmpeg's MPEG-TS start
    assert RESUME.after(101.4 - BACK_S - 1) == (None, OUTAGE)
    assert RESUME.after(101.4 + 6.0 + AHEAD_S + 1) == (None, OUTAGE)
    assert RESUME.after(101.4 + 6.0 + AHEAD_S - 1)[0] is RESUME


def test_what_was_delivered_is_dropped_and_the_next_frame_follows_on() -> None:
    assert RESUME.delivered(101.4 - 0.021)  # the last AAC frame delivered, again
    assert not RESUME.delivered(101.4) and not RESUME.delivered(None)
    clock = RESUME.clock()
    assert clock.observe(101.4) == pytest.approx(40.0)
    assert clock.observe(101.421) == pytest.approx(40.021)


def test_the_clock_keeps_its_base_across_a_hole_longer_than_live_jumps_are_trusted() -> None:
    clock = RESUME.clock()
    first = 101.4 + LIVE_AHEAD_S + 3.0  # a fresh live clock would start this at the offset
    assert clock.observe(first, "audio", 0.0) == pytest.approx(40.0 + LIVE_AHEAD_S + 3.0)
    assert clock.observe(first - 0.3, "video", 0.0) == pytest.approx(40.0 + LIVE_AHEAD_S + 2.7)
