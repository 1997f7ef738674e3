"""Questions about the stream's language are told apart from languages as a topic of what was said."""

from __future__ import annotations

import pytest

from streaming.answer.decide import plan_question
from streaming.question.language import asks_language, language_name, written_language


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


@pytest.mark.parametrize("lines, code", [
    (["Ohh! Let me go! Let me go!", "Nonono! Don't drop me now!"], "en"),
    (["I'm Sinbad the sailor", "So hearty and hale"], "en"),
    (["Je ne sais pas ce que tu veux", "Nous avons une maison dans la ville"], "fr"),
    (["Ich weiß nicht, was du willst", "Wir haben ein Haus in der Stadt"], "de"),
    (["No sé lo que quieres, pero está bien", "Tenemos una casa en la ciudad"], "es"),
    (["Non so cosa vuoi, questo è il mio", "Abbiamo una casa nella città"], "it"),
    (["Eu não sei o que você quer", "Nós temos uma casa na cidade"], "pt"),
    (["Ik weet niet wat je wilt", "We hebben een huis in de stad"], "nl"),
    (["[squawk]"], None),  # no words of any language
    (["Audible Socialism", "Karl Marx Friedrich Engels"], None),  # names and titles: too little to tell
])
def test_written_text_is_told_by_its_commonest_words(lines, code):
    assert written_language(lines) == code
