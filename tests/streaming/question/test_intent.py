"""Which modalities a question searches: text words narrow it to what was shown as text; "on screen"
alone asks what is visible, text or picture."""

from __future__ import annotations

import pytest

from streaming.question.intent import parse_question


@pytest.mark.parametrize("question, modalities", [
    ("What is on screen?", ("shown", "seen")),  # a picture with no word on it still answers
    ("What is on-screen at the start?", ("shown", "seen")),
    ("What text appears on screen?", ("shown",)),
    ("What is written on screen?", ("shown",)),
    ("What does the narrator say?", ("said",)),
    ("When is an aircraft shown?", ("shown", "seen")),
    ("What happened to the bridge?", ("said", "shown", "seen")),
])
def test_modalities(question, modalities):
    assert parse_question(question).modalities == modalities


def test_naming_no_content_lists_what_was_shown():
    assert parse_question("What is on screen?").listing
    assert not parse_question("What animal is on screen?").listing


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        parse_question("  ")
    with pytest.raises(ValueError):
        parse_question("what?", modality="smell")
