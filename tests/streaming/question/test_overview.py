"""Questions about a whole stream or window are told apart from questions about one thing in it."""

from __future__ import annotations

import pytest

from streaming.answer.decide import plan_question
from streaming.question.overview import asks_overview

OVERVIEWS = [
    "What is this recording about?",
    "what's this video about",
    "What was the broadcast mostly about?",
    "What is it about?",
    "What happens in this clip?",
    "What happened during the stream?",
    "What is going on?",
    "What's happening here?",
    "What is being discussed?",
    "What topics are covered?",
    "Summarize the last ten minutes.",
    "Can you summarise this for me?",
    "Give me a quick recap",
    "Overview of the first half hour please",
    "What are the main points?",
    "Describe this video.",
    "Tell me about this recording",
    "What can you hear in this clip?",
    "What can be heard in the recording?",
    "What kind of video is this?",
    "Sum it up in one sentence",
    "tl;dr?",
]
SEARCHES = [
    "What happened to the bridge?",
    "What is the rowing team about to do?",
    "What did the speaker say about taxes?",
    "When does the narrator mention Europe?",
    "What is on screen at 0:20?",
    "What happens at 1:05?",
    "Which key do I press for sales?",
    "What does the title card say?",
    "Who won the final?",
]


@pytest.mark.parametrize("question", OVERVIEWS)
def test_overview_questions_are_recognised(question):
    assert asks_overview(question) is not None


@pytest.mark.parametrize("question", SEARCHES)
def test_questions_about_one_thing_are_not_overviews(question):
    assert asks_overview(question) is None


@pytest.mark.parametrize("question, edge", [("How does the video end?", "end"), ("How does it finish?", "end"),
                                            ("How does the speech begin?", "start"),
                                            ("How does the clip open?", "start"),
                                            ("How did she wrap up?", "end")])
def test_how_it_ends_or_begins_asks_about_that_edge(question, edge):
    assert asks_overview(question).edge == edge


def test_an_overview_plan_lists_the_windows_summaries_in_every_modality():
    plan = plan_question("What can be heard in this clip?")
    assert plan.overview and plan.listing and plan.query_text is None
    assert plan.modalities == ("said", "shown", "seen")  # "heard" does not narrow an overview
    assert not plan_question("What is said at 0:20?").overview


def test_an_overview_keeps_its_window_and_anchor():
    assert plan_question("Summarize the first minute").time_words.first_s == 60.0
    assert plan_question("Give me a summary of how it opens, up to one minute in.").time_words.between == (0.0, 60.0)
    assert plan_question("How does the video end?").time_words.at_end
    assert plan_question("How does the speech begin?").time_words.first_s == 60.0
    plan = plan_question("What happens after the title card?")
    assert plan.overview and plan.anchor_text == "the title card"


def test_a_question_that_is_not_a_string_is_refused():
    with pytest.raises(ValueError):
        asks_overview(None)
