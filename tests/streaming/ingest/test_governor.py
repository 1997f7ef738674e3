"""Backpressure policy (streaming.ingest.governor): pure logic, no models."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.ingest.governor import Governor, degradation_ladder


def test_the_ladder_sheds_frames_then_ocr_then_asr_size():
    ladder = degradation_ladder(frame_fps=2.0, ocr_interval_s=2.0, has_fallback_asr=True)
    assert [d.level for d in ladder] == [0, 1, 2, 3]
    assert [d.frame_fps for d in ladder] == [2.0, 1.0, 0.5, 0.5]
    assert ladder[1].ocr_interval_s == 4.0 and math.isinf(ladder[2].ocr_interval_s)
    assert [d.fallback_asr for d in ladder] == [False, False, False, True]
    # Audio-only streams have nothing visual to shed; without a fallback model nothing at all.
    assert [d.level for d in degradation_ladder(0.0, 2.0, True)] == [0, 1]
    assert degradation_ladder(0.0, 2.0, False) == [degradation_ladder(0.0, 2.0, False)[0]]


def test_provisional_text_is_shed_before_any_frame_and_stays_off_below():
    ladder = degradation_ladder(2.0, 2.0, True, has_provisional=True)
    assert [d.provisional for d in ladder] == [True, False, False, False, False]
    assert (ladder[1].frame_fps, ladder[1].ocr_interval_s, ladder[1].fallback_asr) == (2.0, 2.0, False)
    assert ladder[2].frame_fps == 1.0 and ladder[-1].fallback_asr
    assert "no provisional text" in ladder[1].describe() and ladder[1].to_dict()["provisional"] is False
    gov = Governor(ladder, high_s=10, hold_s=5)
    gov.update(0.0, 20.0)
    change = gov.update(5.0, 20.0)  # the first step under load
    assert change.level == 1 and not change.provisional and change.frame_fps == 2.0
    # A stream without provisional text keeps the ladder it had.
    assert all(d.provisional for d in degradation_ladder(2.0, 2.0, False)[:1])
    assert len(degradation_ladder(2.0, 2.0, True)) == 4


def test_a_sustained_backlog_steps_down_one_level_per_hold_and_recovers_slowly():
    gov = Governor(degradation_ladder(1.0, 2.0, False), high_s=10, hold_s=5, recover_s=30)
    assert gov.update(0.0, 12.0) is None  # high, but not for long yet
    assert gov.update(4.9, 12.0) is None
    first = gov.update(5.0, 12.0)
    assert first is not None and first.level == 1 and "above 10 s" in first.reason and first.wall == 5.0
    assert gov.update(6.0, 15.0) is None  # the next step needs its own hold
    assert gov.update(10.9, 15.0) is None
    assert gov.update(11.0, 15.0).level == 2
    assert gov.update(20.0, 15.0) is None  # no rung below the last
    # Between low and high: nothing changes, however long.
    assert all(gov.update(t, 5.0) is None for t in range(21, 200))
    assert gov.update(200.0, 1.0) is None
    assert gov.update(229.0, 1.0) is None
    back = gov.update(230.0, 1.0)
    assert back.level == 1 and "below 2.5 s" in back.reason
    assert [d.level for d in gov.history] == [1, 2, 1]


def test_a_short_burst_does_not_degrade():
    gov = Governor(degradation_ladder(1.0, 2.0, False), high_s=10, hold_s=5)
    for t in range(100):  # 4 s over the mark every 10 s
        assert gov.update(float(t), 12.0 if t % 10 < 4 else 3.0) is None
    assert gov.level == 0


def test_bad_thresholds_are_rejected():
    with pytest.raises(ValueError):
        Governor([], high_s=10)
    with pytest.raises(ValueError):
        Governor(degradation_ladder(1, 2, False), high_s=0)
    with pytest.raises(ValueError):
        Governor(degradation_ladder(1, 2, False), high_s=5, low_s=6)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 60), min_size=1, max_size=300))
def test_levels_stay_on_the_ladder_and_history_is_bounded(backlogs):
    ladder = degradation_ladder(1.0, 2.0, True)
    gov = Governor(ladder, high_s=10, hold_s=0.5, recover_s=1.0)
    for i, b in enumerate(backlogs):
        change = gov.update(i * 0.5, b)
        assert 0 <= gov.level < len(ladder)
        if change is not None:
            assert change == gov.current
    assert len(gov.history) <= 100
    assert all(abs(a.level - b.level) == 1 for a, b in zip(gov.history, gov.history[1:]))


def test_manta_status_shows_what_a_degraded_stream_sheds():
    from rich.console import Console

    from actors.cli.client import status_table
    from actors.directory import totals

    ladder = degradation_ladder(1.0, 2.0, False)
    gov = Governor(ladder, high_s=10, hold_s=0)
    change = gov.update(0.0, 14.0)
    streams = [{"id": "cam1", "state": "ingesting", "lag_s": 14.2, "rtf": 1.3, "degraded": change.level,
                "degradation": change.to_dict(), "source": "udp://127.0.0.1:5000"},
               {"id": "cam2", "state": "ingesting", "lag_s": 1.0, "rtf": 0.2, "degraded": 0,
                "source": "udp://127.0.0.1:5001"}]
    console = Console(width=250, record=True)
    console.print(status_table(streams, totals(streams)))
    text = console.export_text()
    assert "-1: backlog 14.0 s above 10 s" in text and "full" in text
    assert "1 degraded" in text


def test_totals_count_listeners_waiting_for_their_broadcast():
    """A UDP stream added before its sender starts is neither failed nor ingesting: the totals (and
    `manta status`) say it waits."""
    from rich.console import Console

    from actors.cli.client import status_table
    from actors.directory import totals

    streams = [{"id": "cam1", "state": "waiting", "lag_s": None, "rtf": None, "source": "udp://127.0.0.1:5000"},
               {"id": "cam2", "state": "ingesting", "lag_s": 1.5, "rtf": 0.3, "degraded": 0,
                "source": "udp://127.0.0.1:5001"}]
    total = totals(streams)
    assert (total["ingesting"], total["waiting"], total["failed"], total["max_lag_s"]) == (1, 1, 0, 1.5)
    console = Console(width=250, record=True)
    console.print(status_table(streams, total))
    assert "1 of 2 ingesting · 1 waiting for a sender" in console.export_text()
