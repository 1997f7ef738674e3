"""A who-speaks question is answered from the window's speaker labels: the count, where each speaker
first speaks, when the speaker changes, who speaks at a time, each cited with its span; a stream
with no labels (speaker model off) gives nothing, and the window is listed instead."""

from __future__ import annotations

import pytest

from streaming.answer.extractive import extractive_answer
from streaming.question.timewords import TimeIntent
from streaming.records import Evidence, MicroSegment, StreamStatus, Word
from streaming.search.retrieve import RetrievalPlan, speakers
from streaming.search.speakers import speaker_evidence, turns
from streaming.search.view import StreamView


def seg(seq: int, speaker: str | None, text: str = "words here") -> MicroSegment:
    t0 = 3.0 * seq
    return MicroSegment("s", seq, t0, t0 + 3.0, (Word(f" {text}", t0 + 0.2, t0 + 2.8),), speaker=speaker)


TWO = [seg(0, "S1", "and so my fellow"), seg(1, "S1"), seg(2, None), seg(3, "S1"),
       seg(4, "S2", "mister john dashwood"), seg(5, "S2"), seg(6, "S1", "ask not")]


def test_turns_join_a_speakers_segments_across_an_unlabelled_one():
    got = turns(TWO)
    assert [(t.speaker, t.t0, t.t1) for t in got] == [("S1", 0.0, 12.0), ("S2", 12.0, 18.0), ("S1", 18.0, 21.0)]


def test_count_says_how_many_and_cites_each_first_turn():
    got = speaker_evidence("s", TWO, "count")
    assert got[0].text.startswith("two speakers (S1, S2)") and (got[0].start, got[0].end) == (0.0, 21.0)
    assert [(e.start, e.end) for e in got[1:]] == [(0.0, 12.0), (12.0, 18.0)]
    assert "mister john dashwood" in got[2].text
    answer = extractive_answer("how many speakers?", got, listing=True).answer
    assert "two speakers" in answer and "[s 0:12.0–0:18.0]" in answer


def test_one_voice_is_one_speaker():
    got = speaker_evidence("s", [seg(0, "S1"), seg(1, "S1")], "count")
    assert got[0].text.startswith("one speaker (S1)") and len(got) == 2


def test_the_second_speaker_starts_where_the_voice_changes():
    got = speaker_evidence("s", TWO, "change")
    assert (got[0].start, got[0].end) == (12.0, 18.0) and got[0].text.startswith("S2 starts speaking")
    assert [(e.start, e.end) for e in got[1:]] == [(18.0, 21.0)]  # and back to S1
    only = speaker_evidence("s", TWO[:2], "change")
    assert len(only) == 1 and "one speaker (S1) throughout" in only[0].text


def test_who_speaks_at_a_time_is_the_turn_covering_it():
    got = speaker_evidence("s", TWO, "at", at=13.5)
    assert [(e.text.split(":")[0], e.start, e.end) for e in got] == [("S2 speaks", 12.0, 18.0)]


def test_no_labels_gives_nothing_so_the_window_is_listed():
    assert speaker_evidence("s", [seg(0, None), seg(1, None)], "count") == []
    with pytest.raises(ValueError):
        speaker_evidence("s", TWO, "how")


class Index:
    def __init__(self, segments):
        self.all = segments

    def segments(self, start=None, end=None):
        return [s for s in self.all if (start is None or s.t1 > start) and (end is None or s.t0 < end)]


def view(segments) -> StreamView:
    return StreamView("s", StreamStatus("s", "s", "file.mp4", False), index=Index(segments))


def test_the_plan_window_narrows_who_is_counted():
    plan = RetrievalPlan(None, 5, frozenset({"speech"}), speakers="count")
    assert speakers(view(TWO), plan, 0.0, 11.0)[0].text.startswith("one speaker (S1)")
    first = RetrievalPlan(None, 5, frozenset({"speech"}), time=TimeIntent(order="first"), speakers="at")
    assert [e.start for e in speakers(view(TWO), first, None, None)] == [0.0]
    with pytest.raises(ValueError):
        RetrievalPlan(None, 5, frozenset({"speech"}), speakers="who")


def test_evidence_shows_a_speaker_only_where_there_is_one():
    assert "speaker" not in Evidence("s", 0.0, 3.0, "hi", 1.0).to_dict()
    assert Evidence("s", 0.0, 3.0, "hi", 1.0, speaker="S2").to_dict()["speaker"] == "S2"
