"""Time words in questions: windows, order, anchors, content stripping."""

from __future__ import annotations

import math

import pytest

from streaming.question.timewords import TimeIntent, parse_time_words

STREAM_END = 600.0


# ---------------------------------------------------------------- time words

@pytest.mark.parametrize("question, seconds", [
    ("What did she say in the last 5 minutes?", 300.0),
    ("what was said in the past 30 seconds", 30.0),
    ("what topics came up over the last hour", 3600.0),
    ("what was said in the last five minutes", 300.0),
    ("what happened in the last minute", 60.0),
    ("anything in the last half a minute", 30.0),
    ("what did they say in the past 2 hours", 7200.0),
    ("in the last twenty-five seconds what happened", 25.0),
    ("during the last 1 minute 30 seconds what was shown", 90.0),
    ("anything said recently?", 300.0),
])
def test_last_window(question, seconds):
    t = parse_time_words(question)
    assert t.last_s == seconds and t.order is None and t.first_s is None


@pytest.mark.parametrize("question, seconds", [
    ("what was shown in the first minute", 60.0),
    ("in the first 20 seconds what did he say", 20.0),
    ("in the first one and a half minutes", 90.0),
    ("what did they say at the start", 60.0),
    ("what was at the beginning of the video", 60.0),
])
def test_first_window(question, seconds):
    t = parse_time_words(question)
    assert t.first_s == seconds and t.order is None and t.last_s is None


@pytest.mark.parametrize("question, at", [
    ("what was said at 1:05", 65.0),
    ("what is on screen at 0:42?", 42.0),
    ("what was said at 90 seconds", 90.0),
    ("what happened around 2 minutes in", 120.0),
    ("what was shown at 1:02:03", 3723.0),
    ("who spoke at the 2 minute mark", 120.0),
    ("what was said 2 minutes into the video about cats", 120.0),
    ("what is shown at about 1:10", 70.0),
])
def test_at(question, at):
    assert parse_time_words(question).at == at


@pytest.mark.parametrize("question, span", [
    ("what was said between 0:30 and 1:00", (30.0, 60.0)),
    ("what was said from 10 s to 20 s", (10.0, 20.0)),
    ("what was said between 10 and 20 seconds", (10.0, 20.0)),
    ("what was said between 1m30s and 2m", (90.0, 120.0)),
    ("0:30-1:00 what did he say", (30.0, 60.0)),
    ("from 1:00 until 2:30 what was shown", (60.0, 150.0)),
])
def test_between(question, span):
    assert parse_time_words(question).between == span


def test_numbers_without_units_are_no_time():
    t = parse_time_words("what was said between 2 and 3 people")
    assert t.between is None and t.content == "what was said between 2 and 3 people"
    assert parse_time_words("what happened at 5").at is None


def test_end_and_ago_and_bounds():
    assert parse_time_words("what was said at the end").at_end
    assert parse_time_words("what happened towards the end of the stream").at_end
    assert parse_time_words("what did he say 5 minutes ago").ago == 300.0
    assert parse_time_words("what did they say half an hour ago").ago == 1800.0
    t = parse_time_words("what happened after the first 2 minutes")  # a bound, not the first 2 min
    assert t.between == (120.0, math.inf) and t.first_s is None
    assert parse_time_words("what did he say before 2:00").between == (0.0, 120.0)


@pytest.mark.parametrize("question, order, content", [
    ("When did Bob first mention the budget?", "first", "When did Bob mention the budget?"),
    ("the first time he laughed", "first", "he laughed"),
    ("earliest mention of rain", "first", "mention of rain"),
    ("what was the last thing said", "last", "what was the thing said"),
    ("the last time taxes came up", "last", "taxes came up"),
    ("when did he say bye for the last time", "last", "when did he say bye"),
    ("when was the budget most recently mentioned", "last", "when was the budget mentioned"),
])
def test_order_is_not_a_window(question, order, content):
    t = parse_time_words(question)
    assert (t.order, t.content) == (order, content)
    assert t.last_s is None and t.first_s is None


def test_last_time_vs_last_minutes_together():
    t = parse_time_words("when did he last mention taxes in the last 2 minutes")
    assert (t.order, t.last_s, t.content) == ("last", 120.0, "when did he mention taxes")
    t = parse_time_words("in the first minute, when did X first speak")
    assert (t.order, t.first_s) == ("first", 60.0)


def test_anchors():
    t = parse_time_words("what happened after the title card")
    assert (t.after, t.before, t.content) == ("the title card", None, "what happened")
    t = parse_time_words("what did he do after he says hello and before the break?")
    assert (t.after, t.before, t.content) == ("he says hello", "the break", "what did he do?")
    t = parse_time_words("when did he first speak after the break")
    assert (t.order, t.after, t.content) == ("first", "the break", "when did he speak")
    t = parse_time_words("what happened after the first goal")  # "first" belongs to the anchor
    assert (t.after, t.order) == ("the first goal", None)
    assert parse_time_words("before the break what was said").before == "the break"


@pytest.mark.parametrize("question", ["have you seen this before?", "what happened after that",
                                      "what did he say after"])
def test_no_anchor_without_a_phrase(question):
    t = parse_time_words(question)
    assert t.after is None and t.before is None and t.content == question


def test_content_stripping():
    question = "what was said between 0:30 and 1:00 and after the intro?"
    assert parse_time_words(question).content == "what was said?"
    assert parse_time_words("what did they say in the first 10 sec of the stream about rain").content == \
        "what did they say about rain"
    # Nothing but time words: the question itself is what to search.
    assert parse_time_words("In the last   5 minutes?").content == "In the last 5 minutes?"
    assert parse_time_words("what is the score").content == "what is the score"


def test_resolve_on_a_600_s_stream():
    assert parse_time_words("what was said in the last 5 minutes").resolve(STREAM_END) == (300.0, None)
    assert parse_time_words("what was said in the first minute").resolve(STREAM_END) == (0.0, 60.0)
    assert parse_time_words("what was said at the end").resolve(STREAM_END) == (540.0, None)
    assert parse_time_words("what was said at the end").resolve(100.0) == (80.0, None)  # 20 % of it
    assert parse_time_words("what was said at 1:05").resolve(STREAM_END) == (60.0, 70.0)
    assert parse_time_words("what was said at 0:02").resolve(STREAM_END) == (0.0, 7.0)
    assert parse_time_words("between 0:30 and 1:00 what").resolve(STREAM_END) == (30.0, 60.0)
    assert parse_time_words("what happened after 1:05").resolve(STREAM_END) == (65.0, None)
    assert parse_time_words("what was said 2 minutes ago").resolve(STREAM_END) == (456.0, 504.0)
    assert parse_time_words("what was said").resolve(STREAM_END) == (None, None)
    assert TimeIntent(last_s=3600.0).resolve(STREAM_END) == (0.0, None)
    # Several constraints intersect; contradicting ones leave nothing (start > end).
    assert TimeIntent(first_s=60.0, between=(30.0, 90.0)).resolve(STREAM_END) == (30.0, 60.0)
    assert TimeIntent(last_s=300.0, at_end=True).resolve(STREAM_END) == (540.0, None)
    start, end = TimeIntent(first_s=60.0, last_s=300.0).resolve(STREAM_END)
    assert start > end


def test_time_words_validate():
    with pytest.raises(ValueError):
        parse_time_words("   ")
    with pytest.raises(ValueError):
        parse_time_words(None)
    with pytest.raises(ValueError):
        TimeIntent(last_s=-1.0)
    with pytest.raises(ValueError):
        TimeIntent(between=(5.0, 1.0))
    with pytest.raises(ValueError):
        TimeIntent().resolve(float("nan"))
