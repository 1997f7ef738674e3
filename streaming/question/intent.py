"""What a question asks about: what was said, what was shown (on-screen text, subtitles), what was
seen (the picture), or any of them; and what is left of it to search for.

"What text appears on screen?" names no content at all: searching MiniLM for it would rank text by
how much it resembles the words "text" and "screen". Such a question lists what was shown instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KINDS = {"said": {"speech"}, "shown": {"ocr", "subtitle"}, "seen": {"label", "caption", "frame"}}

# Words that only say where to look; order matters (longest phrases first). The names of written
# text, then verbs that mostly mean it ("read" may also be read aloud: an audiobook).
_TEXT_NAMES = r"on[- ]screen text|onscreen text|text|written|writing|caption(?:s|ed)?|" \
              r"subtitle(?:s|d)?|title(?: card)?s?|headlines?|banners?|tickers?|lower third|slides?|" \
              r"signs?|printed"
_SHOWN_TEXT = _TEXT_NAMES + r"|read(?:s)?|says? on"
# "What is on screen?" asks what is visible, text or not: a picture without a word has labels.
_PICTURE = r"on[- ]screen|onscreen|shown|show(?:s|ing)?|displayed|display(?:s)?|appears?|appeared|visible|seen|see|" \
           r"picture|image|frame|scene|look(?:s)? like|in view"
_SPOKEN = r"said|says|say|saying|spoken|speak(?:s|ing)?|mention(?:s|ed)?|talk(?:s|ed|ing)? about|" \
          r"heard|hear|narrat(?:or|ed|es)|voice|quote[sd]?"
_FILLER = {"what", "which", "when", "where", "who", "whom", "is", "are", "was", "were", "be", "been",
           "the", "a", "an", "of", "on", "in", "at", "to", "there", "any", "anything", "something",
           "does", "did", "do", "it", "this", "that", "video", "stream", "clip", "screen", "time",
           "times", "moment", "and", "or", "for", "me", "tell", "list", "all", "get", "find", "can",
           "you", "i", "we", "first", "last", "ever", "some", "by", "up", "out", "about", "from"}


@dataclass(frozen=True, slots=True)
class QueryIntent:
    modalities: tuple[str, ...]  # subset of ("said", "shown", "seen"), in that order
    content: str  # the question without the words that only say where to look
    listing: bool  # nothing left to match: list what the modality holds, in time order

    @property
    def kinds(self) -> set[str]:
        return set().union(*(KINDS[m] for m in self.modalities))


def _has(pattern: str, text: str) -> bool:
    return re.search(rf"\b(?:{pattern})\b", text) is not None


def names_written_text(question: str) -> bool:
    """Whether the question names written text (subtitles, a caption, text on screen), not just a
    verb that may mean speech: "what language are the subtitles in?", not "…is this passage read?"."""
    return _has(_TEXT_NAMES + r"|on[- ]?screen", " ".join(question.lower().split()))


def parse_question(question: str, modality: str | None = None) -> QueryIntent:
    """Which modalities to search (``modality`` overrides the guess) and the content words."""
    if not isinstance(question, str) or not question.strip():
        raise ValueError("question must be a non-empty string")
    if modality not in (None, "any", "said", "shown", "seen"):
        raise ValueError("modality must be one of any, said, shown, seen")
    q = " ".join(question.lower().split())
    if modality and modality != "any":
        modalities = (modality,)
    elif modality == "any":
        modalities = ("said", "shown", "seen")
    else:
        wants_text, wants_picture, wants_speech = _has(_SHOWN_TEXT, q), _has(_PICTURE, q), _has(_SPOKEN, q)
        chosen = set()
        if wants_speech:
            chosen.add("said")
        if wants_text:
            chosen.add("shown")
        elif wants_picture:
            chosen |= {"shown", "seen"}
        modalities = tuple(m for m in ("said", "shown", "seen") if m in chosen) or ("said", "shown", "seen")
    rest = re.sub(rf"\b(?:{_SHOWN_TEXT}|{_PICTURE}|{_SPOKEN})\b", " ", q)
    words = [w for w in re.findall(r"[a-z0-9']+", rest) if w not in _FILLER]
    content = " ".join(words)
    listing = not words and modalities != ("said", "shown", "seen") and "said" not in modalities
    return QueryIntent(modalities, content, listing)
