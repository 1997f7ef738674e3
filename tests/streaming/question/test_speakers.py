"""Who-speaks questions are answered from speaker labels, and questions that name something else to
count or find stay searches."""

from __future__ import annotations

import pytest

from streaming.answer.decide import plan_question
from streaming.question.speakers import asks_speakers, count_words


@pytest.mark.parametrize("question, ask", [
    ("How many people speak in this recording?", "count"),
    ("How many voices can be heard?", "count"),
    ("How many speakers are there?", "count"),
    ("How many people are speaking in this recording?", "count"),
    ("How many different voices are in this prompt?", "count"),
    ("Is this read by one reader or by several?", "count"),
    ("Is there more than one speaker?", "count"),
    ("Does more than one person speak?", "count"),
    ("Are there several voices in the clip?", "count"),
    ("When does the second speaker start?", "change"),
    ("When does another voice come in?", "change"),
    ("When does the speaker change?", "change"),
    ("Who is speaking at 1:20?", "at"),
    ("Who speaks at 0:05?", "at"),
    ("Which speaker is talking at the end?", "at"),
    ("Who speaks first?", "at"),
])
def test_speaker_questions_are_recognised(question, ask):
    assert asks_speakers(question) == ask
    plan = plan_question(question)
    assert plan.speakers == ask and plan.listing and plan.query_text is None


@pytest.mark.parametrize("question", [
    "How many people live in Paris?", "How many people does he name?", "How many speakers did they sell?",
    "Who is speaking?",  # wants a name (Kennedy), which a voice label is not
    "Whose speech is this?", "Who is named in this recording?", "Whom is the speaker addressing?",
    "What does the speaker ask Americans to do?", "How many times does he say country?",
    "How many people were in the crowd?", "What did the second speaker say about taxes?",
])
def test_questions_that_name_something_else_stay_searches(question):
    assert asks_speakers(question) is None
    plan = plan_question(question)
    assert not plan.speakers


def test_a_question_must_be_text():
    with pytest.raises(ValueError):
        asks_speakers(None)  # type: ignore[arg-type]
    assert asks_speakers("how many speakers " * 500) is None


def test_counts_are_said_in_words():
    assert count_words(1) == "one speaker" and count_words(2) == "two speakers"
    assert count_words(12) == "12 speakers"
    with pytest.raises(ValueError):
        count_words(-1)
