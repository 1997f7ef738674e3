"""Questions about who speaks, rather than about what is said: "How many speakers are there?",
"Is this read by one reader or by several?", "When does the second speaker start?", "Who is
speaking at 1:20?".

No transcript holds the words "two speakers": such a question is answered from the speaker labels
ingest gives each micro segment by voice (streaming/ingest/speakers.py), as a language question is
answered from the language Whisper detected. A question that names something else to count or
find ("how many people live in Paris?", "who is named?", "who is speaking?" meaning a name) stays a
search: the labels say S1 and S2, not who they are.
"""

from __future__ import annotations

import re
from typing import Literal

SpeakerAsk = Literal["count", "change", "at"]

_WHO = r"(?:speakers?|voices?|narrators?|readers?|presenters?|hosts?|announcers?)"
_PEOPLE = r"(?:people|persons?|individuals|men|women)"
_TALK = r"(?:speak(?:s|ing)?|talk(?:s|ing)?|heard|audible|narrat(?:e|es|ing)|read(?:s|ing)?|say\s+something)"
_WHERE = r"(?:in\s+(?:this|the)\s+\w+|here|there)"

_COUNT = re.compile(
    # "how many speakers are there", "how many (different) voices can be heard"
    rf"\bhow\s+many\s+(?:different\s+|distinct\s+|separate\s+)?{_WHO}\b"
    # "how many people speak in this recording", "how many people are speaking / can be heard"
    rf"|\bhow\s+many\s+(?:different\s+)?{_PEOPLE}\s+(?:(?:are|were|is|can\s+be|could\s+be|do\s+we\s+hear)\s+)?"
    rf"(?:{_TALK}|{_WHERE}\s+{_TALK})\b"
    # "one reader or several", "a single speaker or more", "one voice or two"
    rf"|\b(?:one|a\s+single|single|the\s+same)\s+{_WHO}\s+or\s+(?:several|many|more|multiple|two|different|\w+\s+{_WHO})"
    # "is there more than one speaker", "are there several voices", "does more than one person speak"
    rf"|\b(?:is|are|was|were)\s+there\s+(?:more\s+than\s+one|several|multiple|many|two|different)\s+"
    rf"(?:{_WHO}|{_PEOPLE}\s+{_TALK}|person\s+{_TALK})"
    rf"|\b(?:does|do|did)\s+more\s+than\s+one\s+(?:person|{_WHO}|{_PEOPLE})\s+{_TALK}"
    rf"|\b(?:is|was)\s+(?:it|this|that)\s+(?:read|narrated|spoken|voiced)\s+by\s+(?:one|a\s+single|several|multiple|"
    rf"more\s+than\s+one)\b"
    rf"|\b(?:single|same)\s+{_WHO}\s+(?:throughout|the\s+whole\s+time|all\s+along)\b",
    re.IGNORECASE)

_CHANGE = re.compile(
    # "when does the second / another / a new speaker start", "when does the next voice come in"
    rf"\bwhen\s+(?:does|do|did|is|will)\s+(?:the\s+|a\s+|an\s+)?(?:second|next|other|another|new|third|different)\s+"
    rf"(?:{_WHO}|person|man|woman)\s+(?:start|begin|come\s+in|appear|join|take\s+over|{_TALK})"
    # "when does the speaker change", "when do the speakers switch"
    rf"|\bwhen\s+(?:does|do|did)\s+the\s+{_WHO}\s+(?:change|switch|alternate)"
    rf"|\b(?:when|where)\s+(?:is|are|was)\s+(?:there\s+)?(?:a|the)\s+(?:change|switch)\s+of\s+{_WHO}",
    re.IGNORECASE)

# "who speaks at 1:20", "who is talking at 0:30", "which speaker is heard at the end"
_AT = re.compile(
    rf"\b(?:who|which\s+{_WHO}|which\s+person)\s+(?:is\s+|was\s+)?{_TALK}\s+"
    r"(?:at|around|from|between|in\s+the\s+(?:first|last))\b"
    r"|\b(?:who|which\s+speaker)\s+(?:speaks|talks|spoke|talked)\s+(?:first|last|next)\b",
    re.IGNORECASE)

# A question about what is said about people or voices ("how many people does he name?", "how
# many speakers did they sell?", "how many people live in Paris?") is a search, not a count.
_TOPIC = re.compile(r"\b(?:mention(?:s|ed)?|nam(?:e|es|ed)|live|lived|died|sell|sold|buy|bought|say|says|said|"
                    r"vote[sd]?|work(?:s|ed)?|attend(?:ed)?|refer(?:s|red)?|about|invited|killed|injured)\b",
                    re.IGNORECASE)


def asks_speakers(question: str) -> SpeakerAsk | None:
    """What a question asks of the stream's speakers: their ``count``, when the speaker
    ``change``s (a second speaker starts), or who speaks ``at`` a time; None for anything else."""
    if not isinstance(question, str):
        raise ValueError("question must be a string")
    q = " ".join(question.split())
    if len(q) > 2000:  # a question, not a document: nothing this long is one of these
        return None
    if _TOPIC.search(q):
        return None
    if _CHANGE.search(q):
        return "change"
    if _AT.search(q):
        return "at"
    if _COUNT.search(q):
        return "count"
    return None


_NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def count_words(n: int) -> str:
    """2 → "two speakers", 1 → "one speaker" (words, as people say them)."""
    if n < 0:
        raise ValueError("a count of speakers cannot be negative")
    word = _NUMBERS[n] if n < len(_NUMBERS) else str(n)
    return f"{word} speaker" + ("" if n == 1 else "s")
