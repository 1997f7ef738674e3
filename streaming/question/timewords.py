"""Time words in a question become a media-time filter or an ordering; the rest is what to search.

"What did she say in the last 5 minutes?" must not rank every segment by its resemblance to the
words "last 5 minutes": the window filters, and only "what did she say" is searched. "The last time
he mentioned taxes" is no window at all but an ORDER (the latest match), and "in the first minute"
is a window while "when did X first happen" is an order: a window needs a duration after
first/last, an order is a first/last with none.

Only what is recognised is taken out of the question; anything unsure stays in it, where it costs
a little ranking noise rather than a wrong filter.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

START_S = 60.0  # "at the start/beginning": the first minute (a title, a greeting, the agenda)
RECENT_S = 300.0  # "recently", "lately": the last five minutes of a live stream
JUST_NOW_S = 60.0  # "just now"
END_S, END_FRACTION = 60.0, 0.2  # "at the end": the last min(60 s, 20 % of the stream)
AT_HALF_S = 5.0  # "at 1:05" means about then: ± 5 s
AGO_HALF_S, AGO_FRACTION = 10.0, 0.2  # "5 minutes ago": ± max(10 s, 20 % of the distance)

_MARK = "\x1f"  # stands where a recognised phrase was, so anchor phrases stop there
_MEDIA = r"(?:video|stream|clip|broadcast|show|recording|livestream|feed|match|game|meeting)"
_OF_MEDIA = rf"(?:\s+(?:of|in|into)\s+the\s+{_MEDIA})?"

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
         "nineteen"]
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
         "eighty": 80, "ninety": 90}
_WORD_VALUES = {"a couple of": 2, "couple of": 2, "a couple": 2, "a few": 3, "few": 3,
                "half an": 0.5, "half a": 0.5, "an": 1, "a": 1,
                **{w: i for i, w in enumerate(_ONES)}, **_TENS}
_WORD_NUM = "|".join(
    [rf"(?:{'|'.join(_TENS)})[- ](?:{'|'.join(_ONES[1:10])})"]
    + [re.escape(w) for w in sorted(_WORD_VALUES, key=len, reverse=True)])
_NUM = rf"(?:(?<![\d.:])\d+(?:\.\d+)?|\b(?:{_WORD_NUM})\b)"
_UNIT = r"(?:hours?|hrs?|h|minutes?|mins?|m|seconds?|secs?|s)"
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_HALF = r"(?:\s+and\s+a\s+half)"
_PART = rf"{_NUM}{_HALF}?\s*-?\s*{_UNIT}(?![a-z]){_HALF}?"  # "1m30s": no boundary after the m
_PART_RE = re.compile(rf"(?P<num>{_NUM})(?P<h1>{_HALF})?\s*-?\s*(?P<unit>{_UNIT})(?![a-z])(?P<h2>{_HALF})?",
                      re.IGNORECASE)
_DUR = rf"(?:{_PART}(?:\s*,?\s*(?:and\s+)?{_PART})*)"
_CLOCK = r"(?<![\d:.])\d{1,3}:[0-5]\d(?::[0-5]\d)?(?:\.\d+)?(?![\d:])"
_POINT = rf"(?:{_CLOCK}|{_DUR})"
# A bare number in a range takes the other end's unit: "between 10 and 20 seconds".
_END = rf"(?:{_CLOCK}|{_DUR}|(?<![\d.:])\d+(?:\.\d+)?(?![\d:]))"
_UNITLESS = r"(?:half[- ](?:an?\s+)?)?(?:hour|minute|second)\b"  # "the last minute", "past half hour"


@dataclass(frozen=True, slots=True)
class TimeIntent:
    last_s: float | None = None  # a window ending at the stream's newest media time
    first_s: float | None = None  # a window from the stream's start
    at_end: bool = False
    at: float | None = None  # a media time (± AT_HALF_S)
    ago: float | None = None  # seconds before the newest media time ("2 minutes ago")
    between: tuple[float, float] | None = None  # media times; the end may be math.inf ("after 1:05")
    order: Literal["first", "last"] | None = None
    after: str | None = None  # an anchor phrase to find first: "after the title card"
    before: str | None = None
    content: str = ""  # the question without the time words: what to search for

    def __post_init__(self):
        for name in ("last_s", "first_s", "at", "ago"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, not {value}")
        if self.between is not None:
            lo, hi = self.between
            if not (math.isfinite(lo) and lo >= 0 and hi >= lo):
                raise ValueError(f"between must be (start, end) with 0 <= start <= end, not {self.between}")
        if self.order not in (None, "first", "last"):
            raise ValueError(f"order must be None, 'first' or 'last', not {self.order!r}")

    def resolve(self, stream_end: float) -> tuple[float | None, float | None]:
        """The media-time window [start, end] (None: open) for a stream whose newest time is stream_end.

        Several constraints intersect. Contradicting ones ("the first minute" of a ten-minute
        stream "in the last 5 minutes") leave start > end: nothing can match, which is the answer.
        """
        if not isinstance(stream_end, (int, float)) or not math.isfinite(stream_end) or stream_end < 0:
            raise ValueError(f"stream_end must be a finite media time >= 0, not {stream_end!r}")
        spans: list[tuple[float, float]] = []
        if self.last_s is not None:
            spans.append((stream_end - self.last_s, math.inf))
        if self.first_s is not None:
            spans.append((0.0, self.first_s))
        if self.at_end:
            spans.append((stream_end - min(END_S, END_FRACTION * stream_end), math.inf))
        if self.at is not None:
            spans.append((self.at - AT_HALF_S, self.at + AT_HALF_S))
        if self.ago is not None:
            half = max(AGO_HALF_S, AGO_FRACTION * self.ago)
            spans.append((stream_end - self.ago - half, stream_end - self.ago + half))
        if self.between is not None:
            spans.append(self.between)
        if not spans:
            return None, None
        start, end = max(0.0, max(s for s, _ in spans)), min(e for _, e in spans)
        return start, (None if end == math.inf else end)


def _number(text: str) -> float | None:
    t = " ".join(text.lower().replace("-", " ").split())
    if t[0].isdigit():
        return float(t)
    if t in _WORD_VALUES:
        return float(_WORD_VALUES[t])
    tens, _, ones = t.partition(" ")
    return float(_TENS[tens] + _ONES.index(ones)) if tens in _TENS and ones in _ONES else None


def _duration(text: str) -> float | None:
    """Seconds in "5 minutes", "an hour and a half", "1 minute and 30 seconds"; None if not one."""
    total, found = 0.0, False
    for m in _PART_RE.finditer(text):
        n, unit = _number(m["num"]), m["unit"].lower()
        if n is None or (len(unit) == 1 and not m["num"][0].isdigit()):  # "a m", "an h": no unit
            return None
        total += (n + (0.5 if m["h1"] or m["h2"] else 0.0)) * _UNIT_SECONDS[unit[0]]
        found = True
    return total if found else None


def _seconds(text: str) -> float | None:
    """A clock ("1:05", "1:02:03") or a duration ("90 seconds"), as seconds."""
    text = text.strip()
    if re.fullmatch(_CLOCK, text):
        parts = [float(p) for p in text.split(":")]
        return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    return _duration(text)


def _window(text: str) -> float | None:
    if re.fullmatch(_UNITLESS, text.strip(), re.IGNORECASE):
        low = text.lower()
        unit = 3600.0 if "hour" in low else 60.0 if "minute" in low else 1.0
        return unit * (0.5 if "half" in low else 1.0)
    return _duration(text)


class _Parser:
    """Takes recognised phrases out of the question one kind at a time, leaving a mark in their place."""

    def __init__(self, question: str):
        self.text = " ".join(question.split())
        self.fields: dict = {}

    def take(self, pattern: str, handle) -> None:
        def replace(m: re.Match) -> str:
            return _MARK if handle(m) is not False else m.group(0)
        self.text = re.sub(pattern, replace, self.text, flags=re.IGNORECASE)

    def set_once(self, name: str, value) -> bool:
        if value is None or name in self.fields:
            return False  # the first mention wins; a later one stays in the text
        self.fields[name] = value
        return True

    def bound(self, lo: float, hi: float) -> bool:
        """Intersect with the range so far ("after 1:00 ... before 2:00" is one range)."""
        old_lo, old_hi = self.fields.get("between", (0.0, math.inf))
        lo, hi = max(lo, old_lo), min(hi, old_hi)
        self.fields["between"] = (lo, max(lo, hi))
        return True

    def range_(self, m: re.Match) -> bool:
        a, b = m["a"], m["b"]
        lo, hi = _seconds(a), _seconds(b)
        if hi is not None and lo is None and re.fullmatch(r"\d+(?:\.\d+)?", a.strip()):
            unit = _PART_RE.search(b)  # the shared unit
            lo = _seconds(a + " " + unit["unit"]) if unit else None
        if lo is None or hi is None:
            return False  # "between 2 and 3 people"
        return self.bound(min(lo, hi), max(lo, hi))


def parse_time_words(question: str) -> TimeIntent:
    """The time filter, ordering and anchors a question asks for, and what is left to search."""
    if not isinstance(question, str) or not question.strip():
        raise ValueError("question must be a non-empty string")
    p = _Parser(question)
    pre = r"(?:(?:in|during|over|within|for|from|of)\s+)?(?:the\s+)?(?:very\s+)?"
    p.take(rf"\bbetween\s+(?P<a>{_END})\s+and\s+(?P<b>{_END})", p.range_)
    p.take(rf"\bfrom\s+(?P<a>{_END})\s+(?:to|until|till|through|-)\s+(?P<b>{_END})", p.range_)
    p.take(rf"(?P<a>{_CLOCK})\s*[-–—]\s*(?P<b>{_CLOCK})", p.range_)
    p.take(rf"\b(?P<d>{_DUR})\s+ago\b", lambda m: p.set_once("ago", _duration(m["d"])))
    p.take(rf"\bat\s+(?:around\s+|about\s+|approximately\s+|roughly\s+)?(?:the\s+)?(?P<t>{_POINT})"
           rf"(?:\s+mark)?(?:\s+(?:in|into){_OF_MEDIA})?",
           lambda m: p.set_once("at", _seconds(m["t"])))
    p.take(rf"\b(?:around|about|near|approximately|roughly)\s+(?:the\s+)?"
           rf"(?:(?P<c>{_CLOCK})|(?P<d>{_DUR})(?=\s+(?:in|into|mark)\b))"
           rf"(?:\s+mark)?(?:\s+(?:in|into){_OF_MEDIA})?",
           lambda m: p.set_once("at", _seconds(m["c"] or m["d"])))
    # "up to one minute in" is a bound, not the moment "one minute in".
    p.take(rf"\b(?:before|until|till|up\s+to)\s+(?:the\s+)?(?P<t>{_POINT})\s+(?:in|into)\b"
           rf"(?:\s+the\s+{_MEDIA}\b)?",
           lambda m: _seconds(m["t"]) is not None and p.bound(0.0, _seconds(m["t"])))
    # "2 minutes in": only at the end or before "the video" ("5 minutes in the queue" is no time).
    p.take(rf"\b(?P<d>{_DUR})\s+(?:into(?:\s+the\s+{_MEDIA})?"
           rf"|in(?:\s+the\s+{_MEDIA}\b|(?=\s*(?:[?.!,;]|$))))",
           lambda m: p.set_once("at", _duration(m["d"])))
    # Bounds by a time: "after the first 2 minutes" is a start, not "the first 2 minutes".
    p.take(rf"\b(?:after|since)\s+(?:the\s+)?(?:first\s+)?(?P<t>{_POINT})(?:\s+mark)?",
           lambda m: _seconds(m["t"]) is not None and p.bound(_seconds(m["t"]), math.inf))
    p.take(rf"\b(?:before|until|till|up\s+to)\s+(?:the\s+)?(?P<t>{_POINT})(?:\s+mark)?",
           lambda m: _seconds(m["t"]) is not None and p.bound(0.0, _seconds(m["t"])))
    p.take(rf"\b{pre}(?:last|past|previous|final|latest)\s+(?P<d>{_DUR}|{_UNITLESS}){_OF_MEDIA}",
           lambda m: p.set_once("last_s", _window(m["d"])))
    p.take(rf"\b{pre}(?:first|opening|initial)\s+(?P<d>{_DUR}|{_UNITLESS}){_OF_MEDIA}",
           lambda m: p.set_once("first_s", _window(m["d"])))
    p.take(rf"\b(?:(?:at|in|near|towards?|around)\s+the\s+(?:very\s+)?(?:start|beginning|outset)|early\s+on)"
           rf"{_OF_MEDIA}", lambda m: p.set_once("first_s", START_S))
    p.take(rf"\b(?:(?:at|in|near|towards?|around|by)\s+the\s+(?:very\s+)?end(?:ing)?|(?:just\s+|right\s+)?"
           rf"before\s+the\s+end){_OF_MEDIA}", lambda m: p.set_once("at_end", True))
    p.take(r"\bjust\s+now\b", lambda m: p.set_once("last_s", JUST_NOW_S))
    p.take(r"(?<!\bmost\s)\b(?:recently|lately)\b", lambda m: p.set_once("last_s", RECENT_S))
    p.take(rf"\b(?:at|around)?\s*(?P<c>{_CLOCK})", lambda m: p.set_once("at", _seconds(m["c"])))
    _anchors(p)
    _order(p)
    fields = p.fields
    if fields.get("between") == (0.0, math.inf):
        del fields["between"]
    return TimeIntent(**fields, content=_content(p.text, question))


_NOT_A_PHRASE = {"that", "this", "it", "then", "them", "him", "her", "now", "there", "those", "these",
                 "the", "a", "an", "all", "again"}


def _anchors(p: _Parser) -> None:
    """ "after the title card" → after="the title card"; "before?" or "after that" name nothing."""
    # A phrase ends at punctuation, a mark, a new clause ("and before ...") or a question word
    # ("before the break what was said").
    stop = r"(?=\s+(?:and|but|or)\s+(?:then\s+)?(?:after|before|did|does|do|is|was|were|are)\b|" \
           r"\s+(?:what|when|who|whom|where|why|how|which)\b|\s*[\x1f?.!;,]|$)"

    def handle(m: re.Match):
        phrase = m["phrase"].strip()
        words = re.findall(r"[a-z0-9']+", phrase.lower())
        if not words or all(w in _NOT_A_PHRASE for w in words):
            return False
        return p.set_once(m["which"].lower(), phrase)
    p.take(r"\b(?:(?:right|just|immediately|shortly|soon|straight|directly)\s+)?(?P<which>after|before)\s+"
           rf"(?P<phrase>[^\x1f?.!;,]+?){stop}", handle)


def _order(p: _Parser) -> None:
    """What is left of first/last after the windows is an ordering; the first one mentioned wins."""
    first = r"\b(?:for\s+the\s+first\s+time|(?:the\s+)?first\s+time|at\s+first|earliest|initially|first)\b"
    last = r"\b(?:for\s+the\s+last\s+time|the\s+last\s+time|last\s+time|most\s+recent(?:ly)?|latest|last)\b"
    hits = [(m.start(), "first") for m in re.finditer(first, p.text, re.IGNORECASE)]
    hits += [(m.start(), "last") for m in re.finditer(last, p.text, re.IGNORECASE)]
    if hits:
        p.fields["order"] = min(hits)[1]
        p.take(first, lambda m: True)
        p.take(last, lambda m: True)


def _content(text: str, question: str) -> str:
    """Marks out, and the conjunctions they leave dangling ("said ␟ and ␟?" → "said?")."""
    joiners = r"(?:,\s*)?\b(?:and|or|but|then|from|in|at|of)\b"
    for _ in range(3):
        text = re.sub(rf"{_MARK}\s*{joiners}\s*{_MARK}", _MARK, text, flags=re.IGNORECASE)
    text = re.sub(rf"{joiners}\s*{_MARK}(?=\s*[?.!]*\s*$)", _MARK, text, flags=re.IGNORECASE)
    text = re.sub(rf"^\s*{_MARK}\s*,?\s*(?:and|or|but|then)?\b", "", text, flags=re.IGNORECASE)
    text = " ".join(text.replace(_MARK, " ").split())
    text = re.sub(r"\s+([?.!,;:])", r"\1", text).strip(" ,;")
    return text if re.search(r"\w", text) else " ".join(question.split())
