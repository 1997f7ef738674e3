"""MediaClock: raw source timestamps (wrapping, jumping, interleaved across tracks) to media time."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.source.timeline import (
    FILE_JUMP_S,
    LIVE_AHEAD_S,
    LIVE_BACK_S,
    MAX_STEP_S,
    PTS_PERIOD_S,
    QUIET_S,
    STALL_GAP_S,
    MediaClock,
    SilenceWatch,
)

FRAME = 0.02  # an AAC frame at 48 kHz is 21 ms


def feed(clock: MediaClock, raws, track="audio", wall0=None, step=FRAME) -> list[float]:
    return [clock.observe(r, track, None if wall0 is None else wall0 + i * step) for i, r in enumerate(raws)]


def test_consistent_timestamps_map_linearly_from_the_base() -> None:
    clock = MediaClock(offset=30.0, base=100.0, live=True)
    raws = [100.0 + i * FRAME for i in range(200)]
    out = feed(clock, raws, wall0=0.0)
    assert out == pytest.approx([30.0 + r - 100.0 for r in raws])
    assert clock.count == 0 and clock.wraps == 0


def test_pts_wrap_continues_without_collapse_or_jump() -> None:
    clock = MediaClock(live=True)
    start = PTS_PERIOD_S - 1.0
    raws = [(start + i * FRAME) % PTS_PERIOD_S for i in range(150)]  # wraps 1 s in
    assert min(raws) < 1.0 < max(raws) - PTS_PERIOD_S + 2  # the input really wraps
    out = feed(clock, raws, wall0=0.0)
    assert out == pytest.approx([i * FRAME for i in range(150)], abs=1e-6)
    assert clock.wraps == 1 and clock.count == 0


def test_second_wrap_is_unwrapped_too() -> None:
    clock = MediaClock(live=False)
    out = [clock.observe((t * 30.0) % PTS_PERIOD_S) for t in range(8000)]  # 66 h in 30 s steps
    assert out == pytest.approx([t * 30.0 for t in range(8000)])
    assert clock.wraps == 2 and clock.count == 0


def test_timestamps_ffmpeg_already_unwrapped_stay_linear() -> None:
    # FFmpeg's demuxer corrects the first wrap itself: pre-wrap times come out negative.
    clock = MediaClock(base=-2.0, live=True)
    raws = [-2.0 + i * FRAME for i in range(200)]
    assert feed(clock, raws, wall0=0.0) == pytest.approx([i * FRAME for i in range(200)])
    assert clock.wraps == 0 and clock.count == 0


@pytest.mark.parametrize("jump", [3600.0, -3600.0, 40.0, -10.0])
def test_live_jump_continues_one_frame_on(jump: float) -> None:
    clock = MediaClock(live=True)
    before = feed(clock, [i * FRAME for i in range(100)], wall0=0.0)
    after = [clock.observe(99 * FRAME + jump + i * FRAME, "audio", (99 + i) * FRAME) for i in range(1, 50)]
    assert after[0] == pytest.approx(before[-1] + FRAME)
    assert after[-1] - after[0] == pytest.approx(48 * FRAME)
    assert clock.count == 1
    rec = clock.records[0]
    assert rec.raw_from == pytest.approx(99 * FRAME) and rec.jump_s == pytest.approx(jump + FRAME)
    assert rec.media_t == pytest.approx(after[0])


def test_live_restart_after_silence_keeps_the_outage_in_media_time() -> None:
    """A sender restarted within the read timeout: same socket, new timeline from 0, after 3 s of
    silence. Media time goes on by the 3 s, as a reconnect's does."""
    clock = MediaClock(live=True)
    out = feed(clock, [500.0 + i * FRAME for i in range(100)], wall0=0.0)
    t = clock.observe(1.4, "audio", 99 * FRAME + 3.0)
    assert t == pytest.approx(out[-1] + 3.0)
    assert clock.count == 1 and clock.records[0].waited_s == pytest.approx(3.0)


def test_live_hole_explained_by_the_wait_is_kept() -> None:
    """A live encoder whose clock ran on while nothing arrived for 8 s: a real 8 s hole."""
    clock = MediaClock(live=True)
    out = feed(clock, [i * FRAME for i in range(50)], wall0=0.0)
    t = clock.observe(49 * FRAME + 8.0, "audio", 49 * FRAME + 8.0)
    assert t == pytest.approx(out[-1] + 8.0) and clock.count == 0


def test_live_leap_not_explained_by_the_wait_is_a_discontinuity() -> None:
    clock = MediaClock(live=True)
    feed(clock, [i * FRAME for i in range(50)], wall0=0.0)
    t = clock.observe(49 * FRAME + LIVE_AHEAD_S + 2.0, "audio", 50 * FRAME)
    assert t == pytest.approx(50 * FRAME) and clock.count == 1


def test_tracks_stay_in_sync_across_a_jump_and_stragglers_keep_their_time() -> None:
    """Video runs 0.4 s behind audio in the mux. Audio meets the +1 h jump first; video frames still
    in the old timeline land where they belong, and the new ones keep their 0.4 s to the audio."""
    clock = MediaClock(live=True)
    wall = 0.0
    for i in range(100):
        wall += FRAME
        clock.observe(i * FRAME, "audio", wall)
        clock.observe(i * FRAME - 0.4, "video", wall)
    a_new = clock.observe(3600.0 + 100 * FRAME, "audio", wall + FRAME)
    v_old = clock.observe(100 * FRAME - 0.4, "video", wall + FRAME)  # straggler of the old timeline
    v_new = clock.observe(3600.0 + 100 * FRAME - 0.4, "video", wall + 2 * FRAME)
    assert a_new == pytest.approx(100 * FRAME)
    assert v_old == pytest.approx(100 * FRAME - 0.4)
    assert a_new - v_new == pytest.approx(0.4)
    assert clock.count == 1


def test_interleaving_jitter_is_not_a_discontinuity() -> None:
    clock = MediaClock(live=True)
    for i in range(100):
        clock.observe(i * FRAME, "audio", i * FRAME)
        clock.observe(i * FRAME - (LIVE_BACK_S - 0.5), "video", i * FRAME)
    assert clock.count == 0


def test_each_track_is_monotonic_even_when_its_timestamps_step_back_a_little() -> None:
    clock = MediaClock(live=True)
    out = [clock.observe(r, "audio", i * FRAME) for i, r in enumerate([1.0, 1.02, 0.5, 1.04, 1.06])]
    assert out == sorted(out) and clock.count == 0


def test_file_keeps_holes_and_interleaving_but_rebases_a_splice() -> None:
    clock = MediaClock(base=0.0)
    a = [clock.observe(t) for t in (0.0, 0.02, 0.04, 8.0, 8.02)]  # an 8 s hole in the recording
    assert a == pytest.approx([0.0, 0.02, 0.04, 8.0, 8.02])
    assert clock.observe(8.02 - 20.0, "video") == pytest.approx(0.0)  # badly interleaved video
    assert clock.count == 0
    t = clock.observe(8.04 + 3600.0)
    assert t == pytest.approx(8.04) and clock.count == 1
    assert FILE_JUMP_S < 3600.0


def test_map_does_not_move_the_clock() -> None:
    clock = MediaClock(base=10.0, live=True)
    assert clock.map(12.0) == pytest.approx(2.0)  # before any frame: from the base
    feed(clock, [10.0 + i * FRAME for i in range(50)], wall0=0.0)
    assert clock.map(10.0 + 30.0) == pytest.approx(30.0)  # a subtitle ending 30 s on
    assert clock.observe(10.0 + 50 * FRAME, "audio", 50 * FRAME) == pytest.approx(50 * FRAME)
    assert clock.count == 0


def test_a_start_time_far_from_the_first_frame_is_ignored() -> None:
    clock = MediaClock(offset=5.0, base=-500.0, live=True)
    assert clock.observe(1000.0, "audio", 0.0) == pytest.approx(5.0)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        MediaClock(offset=-1.0)
    with pytest.raises(ValueError):
        MediaClock(period=0.0)
    with pytest.raises(ValueError):
        MediaClock().observe(float("nan"))


# -- property: any mix of wraps, jumps, stalls and interleaving -----------------------------------

tick = st.tuples(st.just("tick"), st.floats(0.005, 0.1), st.sampled_from(["audio", "video"]))
jump = st.tuples(st.just("jump"), st.one_of(st.floats(-7200.0, -0.5), st.floats(0.5, 7200.0)), st.none())
stall = st.tuples(st.just("stall"), st.floats(0.0, 10.0), st.booleans())
ops = st.lists(st.one_of(tick, tick, tick, tick, jump, stall), min_size=1, max_size=120)


@settings(max_examples=300, deadline=None)
@given(ops=ops, origin=st.one_of(st.floats(0.0, PTS_PERIOD_S), st.floats(PTS_PERIOD_S - 20, PTS_PERIOD_S)),
       offset=st.floats(0.0, 1e5), live=st.booleans(), lag=st.floats(-1.0, 1.0))
def test_media_time_is_monotonic_bounded_and_never_collapses(ops, origin, offset, live, lag) -> None:
    """Per track never backwards; overall it neither outruns the time the source took nor falls
    behind the media it delivered, by more than a bounded slack per fault."""
    clock = MediaClock(offset=offset, live=live)
    sent = wall = 0.0  # media the sender delivered; time it took
    faults = 0
    last: dict[str, float] = {}
    for kind, value, extra in ops:
        if kind == "jump":
            origin += value
            faults += 1
        elif kind == "stall":
            wall += value
            if extra:  # the sender's clock ran on while it sent nothing: a real hole
                origin += value
            faults += 1
        else:
            sent += value
            wall += value
            raw = (origin + sent + (lag if extra == "video" else 0.0)) % PTS_PERIOD_S
            t = clock.observe(raw, extra, wall if live else None)
            assert t >= last.get(extra, offset) - 1e-6
            last[extra] = t
    if not last:
        return
    slack = faults * (max(LIVE_AHEAD_S, LIVE_BACK_S) + MAX_STEP_S) + 2 * abs(lag) + 2 * MAX_STEP_S
    if live:
        assert clock.high <= offset + wall + slack
    else:
        assert clock.high <= offset + sent + faults * (FILE_JUMP_S + MAX_STEP_S) + 2 * abs(lag) + 1.0
    back = LIVE_BACK_S if live else FILE_JUMP_S
    assert clock.high >= offset + sent - faults * (back + MAX_STEP_S) - 2 * abs(lag) - 2 * MAX_STEP_S


def test_one_damaged_timestamp_costs_one_discontinuity_and_the_timeline_goes_on() -> None:
    clock = MediaClock(live=True)
    out = feed(clock, [100.0 + i * FRAME for i in range(50)], wall0=0.0)
    bad = clock.observe(77_777.0, "audio", 50 * FRAME)  # a corrupted PES header
    after = [clock.observe(100.0 + i * FRAME, "audio", i * FRAME) for i in range(51, 300)]
    assert bad == pytest.approx(out[-1] + FRAME)
    assert after == pytest.approx([51 * FRAME + i * FRAME for i in range(249)])
    assert clock.count == 1


# -- SilenceWatch ----------------------------------------------------------------------------------

def test_a_silence_is_a_gap_once_packets_flow_again() -> None:
    watch = SilenceWatch()
    assert watch.packet(0.02, 100.0, 10.0, 5.0) is None and watch.last_heard == 100.0
    assert watch.packet(STALL_GAP_S + 1.0, 103.02, 13.02, 5.0) is None  # not yet: could be the end
    assert watch.last_heard == pytest.approx(100.02)  # heard from last before the silence
    assert watch.packet(0.02, 103.04, 13.04, 5.0) is None
    gap = watch.packet(0.02, 103.3, 13.3, 5.1)
    assert gap is not None and gap.media_t == 5.0
    assert (gap.wall_start, gap.wall_end) == pytest.approx((100.02, 103.02))
    assert watch.last_heard == 103.3


def test_what_the_demuxer_hands_out_after_a_read_timeout_is_no_gap() -> None:
    watch = SilenceWatch()
    watch.packet(0.02, 100.0, 10.0, 5.0)
    assert watch.packet(4.0, 104.0, 14.0, 5.0) is None  # held-back packets, then the error
    assert watch.packet(0.0, 104.0, 14.0, 5.0) is None
    assert watch.last_heard == pytest.approx(100.0)  # the outage began then


def test_a_short_silence_is_no_gap() -> None:
    watch = SilenceWatch()
    watch.packet(0.02, 100.0, 10.0, 5.0)
    watch.packet(QUIET_S + 0.5, 101.0, 11.0, 5.0)
    assert watch.packet(0.02, 101.5, 11.5, 5.0) is None and watch.last_heard == 101.5


def test_a_silence_followed_by_a_hiccup_is_still_recorded() -> None:
    watch = SilenceWatch()
    watch.packet(0.02, 100.0, 10.0, 5.0)
    watch.packet(3.0, 103.0, 13.0, 5.0)
    watch.packet(0.02, 103.05, 13.05, 5.0)  # the sender is back, then stutters before confirmation
    gap = watch.packet(QUIET_S + 0.1, 103.65, 13.65, 5.1)
    assert gap is not None and gap.wall_end - gap.wall_start == pytest.approx(3.0)


def test_the_wait_for_the_first_packet_is_the_open_not_a_silence() -> None:
    watch = SilenceWatch()
    watch.packet(STALL_GAP_S + 1.0, 100.0, 10.0, 0.0)
    assert watch.packet(0.02, 100.5, 10.5, 0.0) is None and watch.last_heard == 100.5
