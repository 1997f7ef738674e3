"""Questions about a whole stream or a window rather than one moment: "What is this recording
about?", "What happens in this clip?", "Summarize the last ten minutes", "How does the video end?".

Searching MiniLM for "what is this recording about" ranks segments by their resemblance to those
words, and the not-found gate rightly rejects the best of them. Such a question is answered from
the hierarchy instead: the meso and macro summaries of the window (see streaming/search/retrieve.py).

Rules, not a classifier: every phrasing below is a test in tests/streaming/question/test_overview.py,
and one that does not match falls back to a search, which is what it got before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from streaming.question.timewords import parse_time_words

_THIS = r"(?:this|the|that)"
_MEDIA = (r"(?:recording|clip|video|stream|broadcast|programme|program|show|audio|file|footage|"
          r"film|movie|cartoon|episode|segment|excerpt|speech|talk|track|song|audiobook|message|"
          r"prompt|livestream|feed|scene|material|content)")
# Asking for a summary in so many words: an overview whatever else the question names.
_SUMMARY = [
    r"\bsumm?ar(?:y|ies|ise|ize|ised|ized|ising|izing)\b",
    r"\b(?:recap|overview|synopsis|rundown|gist|tl;?dr)\b",
    r"\b(?:main|key)\s+(?:points?|topics?|themes?|ideas?|events?|moments?)\b",
    r"\bin\s+(?:a|one)\s+(?:nutshell|sentence|few\s+words)\b",
    rf"\bdescribe\s+(?:{_THIS}\s+)?(?:\w+\s+)?{_MEDIA}\b",
]
# Open questions that are overviews only when they name nothing else: "what happens in this clip?"
# is one, "what happened to the bridge?" is a search.
_OPEN = [
    rf"\bwhat(?:'s| is| was)\s+{_THIS}\s+(?:\w+\s+)?{_MEDIA}(?:\s+(?:all|mostly|mainly))?(?:\s+about)?\b",
    r"\bwhat(?:'s| is| was| are| were)\s+(?:it|this|that|they)\s+(?:all\s+|mostly\s+|mainly\s+)?about\b",
    r"\bwhat(?:'s| is| was)\s+(?:being\s+)?(?:discussed|covered|talked\s+about|going\s+on|happening)\b",
    r"\bwhat\s+(?:happens|happened|goes\s+on|went\s+on|takes\s+place|took\s+place|occurs|occurred)\b",
    r"\bwhat\s+(?:topics?|subjects?|themes?)\s+(?:are|were|is|was|does|did|do)\b",
    rf"\b(?:tell|give)\s+me\s+(?:about|the\s+content\s+of)\s+{_THIS}\s+{_MEDIA}\b",
    r"\bwhat\s+(?:can|do|does|did|could)\s+(?:we|i|you|one)\s+(?:hear|see|watch|listen\s+to)\b",
    r"\bwhat\s+(?:can|could|is\s+to)\s+be\s+(?:heard|seen|watched)\b",
    rf"\bwhat\s+kind\s+of\s+{_MEDIA}\b",
]
_ENDS = (rf"\bhow\s+(?:does|did|do)\s+(?:{_THIS}\s+)?(?:\w+\s+)?{_MEDIA}?\s*"
         r"(?P<edge>end|finish|conclude|close|wrap\s+up|start|begin|open)\b")
_SUMMARY_RE = [re.compile(p, re.IGNORECASE) for p in _SUMMARY]
_OPEN_RE = [re.compile(p, re.IGNORECASE) for p in _OPEN]
_ENDS_RE = re.compile(_ENDS, re.IGNORECASE)
# Words that only point at the stream or the window: what may surround an open overview question.
_POINTERS = set("""a an the this that it its in on of during over throughout from to for me us please
    all whole entire so far now here there overall mostly mainly generally briefly roughly basically
    is are was were be been being do does did can could would will you we i one they
    and or just exactly really about discussed covered mentioned raised addressed talked
    he she his her their them speaker speakers narrator host presenter reader singer""".split())
_MEDIA_WORD = re.compile(rf"^{_MEDIA}s?$", re.IGNORECASE)


def _names_nothing_else(question: str, match: re.Match) -> bool:
    rest = question[:match.start()] + " " + question[match.end():]
    words = re.findall(r"[a-z0-9']+", rest.lower())
    return all(w in _POINTERS or _MEDIA_WORD.match(w) for w in words)


@dataclass(frozen=True, slots=True)
class Overview:
    """An overview question, and the edge of the stream it asks about (None: its whole window)."""

    edge: Literal["start", "end"] | None = None


def asks_overview(question: str) -> Overview | None:
    """An ``Overview`` when the question asks what a stream or window is about, else None."""
    if not isinstance(question, str):
        raise ValueError("question must be a string")
    time_words = parse_time_words(question)
    q = " ".join(time_words.content.split())  # "in the first minute" is the window, not content
    if any(r.search(q) for r in _SUMMARY_RE):
        return Overview()
    if time_words.at is not None or time_words.ago is not None:
        return None  # "what happens at 0:20": a moment, listed as it is, not a summary around it
    m = _ENDS_RE.search(q)
    if m and _names_nothing_else(q, m):
        edge = m.group("edge").lower()
        return Overview("start" if edge in ("start", "begin", "open") else "end")
    for r in _OPEN_RE:
        m = r.search(q)
        if m and _names_nothing_else(q, m):
            return Overview()
    return None  # "what happens at 0:20": a moment, listed as it is, not a summary around it
    q = " ".join(time_words.content.split())  # "in the first minute" is the window, not content
    m = _ENDS_RE.search(q)
    if m and _names_nothing_else(q, m):
        edge = m.group("edge").lower()
        return Overview("start" if edge in ("start", "begin", "open") else "end")
    if any(r.search(q) for r in _SUMMARY_RE):
        return Overview()
    for r in _OPEN_RE:
        m = r.search(q)
        if m and _names_nothing_else(q, m):
            return Overview()
    return None
