"""The yes/no check a ``verify`` watch asks of the answer model (streaming/watch/verify.py)."""

from streaming.watch.verify import verdict, verify_messages


def test_the_reply_decides_only_when_it_is_clear():
    assert verdict("YES") is True and verdict(" yes.") is True and verdict("Yes, the evidence shows it") is True
    assert verdict("NO") is False and verdict("no") is False
    assert verdict("") is None and verdict("Maybe") is None and verdict("The answer is yes") is None


def test_the_question_names_the_condition_and_where_the_evidence_came_from():
    system, user = verify_messages("the bridge closes", "shown", "HARBOUR BRIDGE CLOSED")
    assert system["role"] == "system" and "YES" in system["content"] and "NO" in system["content"]
    assert "the bridge closes" in user["content"] and "Shown on screen" in user["content"]
    assert "HARBOUR BRIDGE CLOSED" in user["content"]
