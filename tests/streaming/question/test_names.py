"""Which questions ask for the names that come up, rather than naming something to search for."""

from __future__ import annotations

import pytest

from streaming.answer.decide import plan_question
from streaming.question.names import asks_names


@pytest.mark.parametrize("question", [
    "Who is named in this recording?",
    "Who is mentioned in the last ten minutes?",
    "Which authors does the narrator name?",
    "What people are mentioned?",
    "Which names come up in this clip?",
    "Which companies are named on screen?",
    "Whom does he mention?",
    "Who does the speaker refer to?",
    "List the names.",
])
def test_questions_asking_for_names(question):
    assert asks_names(question)
    plan = plan_question(question)
    assert plan.names and plan.listing and plan.query_text is None


@pytest.mark.parametrize("question", [
    "Who is speaking at 1:20?",  # a voice, from the speaker labels
    "How many speakers are there?",
    "What does the company say it provides?",
    "When is London mentioned?",  # names what to find
    "Who won the rowing final?",
    "What is the name of the book?",  # one thing, searched for
])
def test_questions_that_are_not_a_list_of_names(question):
    assert not asks_names(question)
    assert not plan_question(question).names


def test_not_a_question_is_refused():
    with pytest.raises(ValueError):
        asks_names(None)
