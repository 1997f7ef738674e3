"""Questions that ask which names come up: "Who is named in this recording?", "Which authors does
the narrator name?", "What people are mentioned in the last ten minutes?".

Such a question holds no name to search for: MiniLM would rank segments by their likeness to the
words "who is named". It is answered instead by listing the proper names said or shown in the
window (streaming/search/names.py), each cited where it first comes up.
"""

from __future__ import annotations

import re

_WHOM = (r"(?:people|persons?|names?|authors?|writers?|characters?|men|women|politicians?|players?|"
         r"companies|company|organi[sz]ations?|places?|cities|countries|brands?|individuals|figures)")
_MENTION = r"(?:nam(?:e|es|ed|ing)|mention(?:s|ed|ing)?|refer(?:s|red)?\s+to|cit(?:e|es|ed))"

_NAMES_RE = re.compile(
    # "who is named / mentioned (in ...)", "who gets mentioned"
    rf"\bwho\s+(?:is|are|was|were|gets|got)\s+(?:being\s+)?{_MENTION}\b"
    # "which authors does the narrator name", "what people are mentioned", "which names come up"
    rf"|\b(?:which|what)\s+(?:\w+\s+)?{_WHOM}\s+(?:(?:is|are|was|were|does|do|did|get|gets)\s+)?"
    rf"(?:\w+\s+){{0,3}}?(?:{_MENTION}|come\s+up|appear)\b"
    # "whom does he name", "who does she mention"
    rf"|\bwho(?:m)?\s+(?:does|do|did)\s+(?:\w+\s+){{1,3}}?{_MENTION}\b"
    # "list the names", "any names mentioned"
    rf"|\b(?:list|give\s+me|tell\s+me)\s+(?:all\s+)?the\s+names\b|\bany\s+names?\s+{_MENTION}\b",
    re.IGNORECASE)


def asks_names(question: str) -> bool:
    if not isinstance(question, str):
        raise ValueError("question must be a string")
    q = " ".join(question.split())
    return len(q) <= 2000 and _NAMES_RE.search(q) is not None
