"""Watches checked against committed content (streaming/watch/matcher.py), with hand-made vectors:
what fires, what stays quiet, and what one alert covers."""

import numpy as np
import pytest

from streaming.records import LabelSpan, MicroSegment, ShownText, Watch, Word
from streaming.watch.matcher import Observed, WatchMatcher, covers, observed, score

DIM = 8


def unit(i: int, mix: float = 0.0) -> np.ndarray:
    """Axis ``i``, tilted towards the last axis by ``mix`` (cosine to axis i: 1/sqrt(1+mix²))."""
    v = np.zeros(DIM, np.float32)
    v[i], v[-1] = 1.0, mix
    return v / np.linalg.norm(v)


def said(seq, t0, t1, text, vec):
    return Observed(("speech", seq), "speech", t0, t1, text, vec)


def matcher(*watches, stream="news", name="evening-news"):
    m = WatchMatcher(stream, name)
    m.set_watches(watches)
    return m


def test_a_phrase_said_fires_once_with_its_span_and_a_decoy_does_not():
    m = matcher((Watch("w-1", "bridge closing", threshold=0.6, cooldown_s=30), unit(0)))
    alerts = m.check([said(0, 0, 3, "weather is fine today", unit(1)),
                      said(1, 3, 6, "the bridge is closing at noon", unit(0, 1.0)),  # cosine 0.71
                      said(2, 6, 9, "a bridge over the river", unit(0, 3.0))], fired_wall=100.0)
    assert [(a.start, a.end, a.watch, a.stream) for a in alerts] == [(3, 6, "w-1", "news")]
    assert "bridge is closing" in alerts[0].quote and alerts[0].fired_wall == 100.0
    assert alerts[0].sent_wall is None  # a file: nobody sent it at a time


def test_cooldown_holds_while_the_event_goes_on_and_a_later_event_alerts_again():
    m = matcher((Watch("w-1", "goodbye and good night", threshold=0.6, cooldown_s=20), unit(0)))
    times = []
    for t0 in (10, 13, 25, 44, 70):  # said at 10, repeated within 20 s twice, then again 26 s later
        times += [a.start for a in m.check([said(t0, t0, t0 + 3, "goodbye and good night", unit(0))], 0.0)]
    assert times == [10, 70]


def test_words_raise_a_modest_cosine_and_meaning_alone_can_fire():
    assert score(0.5, 1.0) == pytest.approx(0.75)
    assert score(0.5, 0.0) == 0.5 and score(-0.3, 0.0) == 0.0
    m = matcher((Watch("w-1", "someone resigns", threshold=0.6), unit(0)))
    [alert] = m.check([said(0, 0, 3, "the minister steps down tonight", unit(0, 0.5))], 0.0)  # cosine 0.89
    assert alert.kind == "speech" and alert.modality == "said"


def test_a_phrase_split_across_two_segments_fires_spanning_both():
    m = matcher((Watch("w-1", "spectre haunting europe", threshold=0.6), unit(0)))
    alerts = m.check([said(0, 18, 21, "preamble a spectre is", unit(1)),
                      said(1, 21, 24, "haunting europe the specter of", unit(0, 2.0))], 0.0)  # cosine 0.45
    assert [(a.start, a.end) for a in alerts] == [(18, 24)]


def test_modality_and_streams_choose_what_a_watch_covers():
    text_on_screen = Observed(("ocr", 4), "ocr", 5, 9, "BREAKING NEWS", unit(0))
    m = matcher((Watch("w-said", "breaking news", modality="said", threshold=0.6), unit(0)),
                (Watch("w-shown", "breaking news", modality="shown", threshold=0.6), unit(0)))
    assert [a.watch for a in m.check([text_on_screen], 0.0)] == ["w-shown"]
    w = Watch("w-2", "x", streams=("cam-*",))
    assert covers(w, "cam-3", "") and covers(Watch("w", "x", streams=("lobby",)), "s-1", "lobby")
    assert not covers(w, "news", "evening-news") and covers(Watch("w", "x"), "any", "stream")
    assert matcher((w, unit(0))).watches == []


def test_on_screen_text_that_grows_alerts_once_and_sent_time_comes_from_the_live_clock():
    m = matcher((Watch("w-1", "breaking", threshold=0.6, cooldown_s=0), unit(0)))
    first = m.check([Observed(("ocr", 7), "ocr", 5, 6, "BREAKING", unit(0))], 0.0, sent_wall=lambda t: 1000 + t)
    again = m.check([Observed(("ocr", 7), "ocr", 5, 30, "BREAKING", unit(0))], 0.0, sent_wall=lambda t: 1000 + t)
    assert [(a.kind, a.sent_wall) for a in first] == [("ocr", 1006)] and again == []


def test_observed_takes_spoken_segments_and_shown_items_of_a_commit():
    words = (Word(" hello", 0.0, 0.5, 1.0),)
    segs = [MicroSegment("s", 0, 0, 3, words), MicroSegment("s", 1, 3, 6, ())]  # the second is silence
    items = [(ShownText(2, "subtitle", "I'm Sinbad", 1, 2), unit(1)), (LabelSpan(3, 0, 3, (("airliner", 0.9),)), unit(2))]
    got = observed(segs, [unit(0), None], items)
    assert [(o.kind, o.modality, o.key) for o in got] == [
        ("speech", "said", ("speech", 0)), ("subtitle", "shown", ("subtitle", 2)), ("label", "seen", ("label", 3))]


def test_changing_the_watches_keeps_the_cooldown_of_those_that_stay():
    keep = (Watch("w-1", "goal", threshold=0.6, cooldown_s=60), unit(0))
    m = matcher(keep)
    assert len(m.check([said(0, 0, 3, "goal", unit(0))], 0.0)) == 1
    m.set_watches([keep, (Watch("w-2", "penalty", threshold=0.6), unit(1))])
    assert [a.watch for a in m.check([said(1, 10, 13, "goal and penalty", (unit(0) + unit(1)) / np.sqrt(2))], 0.0)] == ["w-2"]  # w-1 quiet
