"""Questions about the stream's language are told apart from languages as a topic of what was said."""

from __future__ import annotations

import pytest

from streaming.answer.decide import plan_question
from streaming.question.language import asks_language, language_name


@pytest.mark.parametrize("question", ["What language is this in?", "Which language is spoken?",
                                      "In what language is the broadcast?", "what languages are being spoken",
                                      "Is this in English?", "What is the language of the clip?"])
def test_language_questions_are_recognised(question):
    assert asks_language(question)
    plan = plan_question(question)
    assert plan.language and plan.listing and plan.query_text is None


@pytest.mark.parametrize("question", ["Which languages is the manifesto published in?",
                                      "What languages are mentioned?", "What did she say about sign language?",
                                      "Who is speaking?"])
def test_languages_as_a_topic_are_searched(question):
    assert not asks_language(question)
    assert not plan_question(question).language


def test_language_names():
    assert language_name("en") == "English" and language_name("ht") == "Haitian Creole"
    assert language_name("xx") == "xx" and language_name(None) is None
