"""Grounded answers: the prompt an answer model sees, when to say "not found", "when" answers
refined to word times, and the answer text with its citations.

An answer model, above all a small one, will answer anything it is asked. So the decision that the
stream does not hold the answer is made twice: by retrieval (nothing relevant enough came back, and
then no model is called) and by the model (told to reply NOT FOUND when the evidence does not
answer). "When" questions are answered from the evidence's own times, never from generated text:
a number a model writes is a guess, a word timestamp is a measurement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from streaming.answer.extractive import cite, clock, quote
from streaming.records import Evidence

NOT_FOUND = "NOT FOUND"
NOT_FOUND_ANSWER = "Not found in the stream: nothing ingested so far answers this question."
# Retrieval-side bar for "found": a strong dense match, or a weaker one sharing a content word.
STRONG_DENSE = 0.42
WEAK_DENSE = 0.2

# Worded for the smallest model: SmolLM2-135M answers the question best when it comes right
# after the evidence as "According to the evidence, …", and the best evidence comes first.
SYSTEM_PROMPT = ("Answer only from the numbered evidence, using its own words. Reply in one sentence. "
                 f"If the evidence does not say, reply: {NOT_FOUND}")
_SENTENCE_END = re.compile(r"[.!?](?=\s)")


def first_sentence_end(text: str) -> int | None:
    """Where the first sentence of generated text ends (small models ramble past "one sentence");
    None while it has not ended. A period inside a number or "www.x.org" is not an end."""
    m = _SENTENCE_END.search(text)
    return m.end() if m else None

_WHEN = re.compile(r"^\s*(when|at what (time|point|moment)|what time|how long (ago|into))\b|"
                   r"\b(what|which) (time|timestamp|moment|second|minute)\b", re.I)
_QUOTED = re.compile(r"[\"“”'‘’]([^\"“”‘’]{3,})[\"“”'‘’]")
_TOKEN = re.compile(r"[a-z0-9']+")
_STOP = {"when", "what", "does", "did", "do", "is", "was", "the", "a", "an", "say", "says", "said",
         "word", "words", "someone", "somebody", "he", "she", "they", "it", "narrator", "speaker",
         "of", "to", "in", "on", "at", "time", "first", "last", "shown", "appear", "appears", "text",
         "mention", "mentioned", "mentions", "shout", "shouts", "talk", "about", "there", "is",
         "evidence", "states", "suggests", "that", "this", "and", "by", "be", "being", "are"}


# "When does he say X" asks for a moment of the stream; "when will the bridge close" asks about the
# world, and its answer is whatever the stream said ("on Tuesday at nine"), not a timestamp.
_MEDIA_EVENT = re.compile(
    r"\b(say|says|said|saying|mention(s|ed)?|talk(s|ed)? about|speak(s)?|spoke|sing(s)?|sang|sung|"
    r"shout(s|ed)?|scream(s|ed)?|ask(s|ed)?|read(s)?|heard|hear|appear(s|ed)?|shown|show(s|n)?|"
    r"displayed|visible|seen|come(s)? (on|up)|cut(s)?|begin(s)?|began|start(s|ed)?|end(s|ed)?|"
    r"in the (video|stream|clip|broadcast|recording|film|footage))\b", re.I)


def is_when(question: str) -> bool:
    """Does the question ask for a moment of the stream ("when does he say…", "at what point is
    the title shown")? A "when will it happen" about the world is answered like any question."""
    return bool(_WHEN.search(question)) and bool(_MEDIA_EVENT.search(question))


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower().replace("’", "'"))


def target_words(question: str) -> list[str]:
    """What a "when" question wants timed: its quoted phrase, else its content words."""
    quoted = _QUOTED.search(question)
    if quoted:
        return _tokens(quoted.group(1))
    return [w for w in _tokens(question) if w not in _STOP]


def refine_span(words, question: str) -> tuple[float, float] | None:
    """The tightest run of ``words`` (records with text/start/end) holding the question's target
    words: the longest in-order match of the target, then the shortest span. None when none match."""
    target = target_words(question)
    if not words or not target:
        return None
    toks = [(_tokens(w.text) or [""])[0] for w in words]
    best = None  # (matched, -span, i, j)
    for i, tok in enumerate(toks):
        if tok not in target:
            continue
        # Follow the target in order from here, letting one unmatched word sit between matches
        # (Whisper splits or drops a word now and then).
        ti, matched, j, k = target.index(tok) + 1, 1, i, i + 1
        while k < len(toks) and ti < len(target) and k - j <= 2:
            if toks[k] == target[ti]:
                matched, j, ti = matched + 1, k, ti + 1
            k += 1
        key = (matched, -(words[j].end - words[i].start), i, j)
        if best is None or key[:2] > best[:2]:
            best = key
    if best is None:
        return None
    _, _, i, j = best
    return words[i].start, words[j].end


MATCH_COST = 0.35  # what an unmatched word costs a span, against 1 for a word the answer used


def answer_span(words, generated: str) -> tuple[float, float] | None:
    """Where in the evidence the generated answer comes from: the run of evidence words that the
    answer repeats, densest first (maximum subarray: +1 for a word the answer uses, −MATCH_COST
    for one it does not). A 7 s segment cited for a 3 s sentence is imprecise."""
    used = {w for w in _tokens(generated) if w not in _STOP}
    if not words or not used:
        return None
    best, best_ij, run, i0 = 0.0, None, 0.0, 0
    for k, w in enumerate(words):
        tok = (_tokens(w.text) or [""])[0]
        gain = (1 - MATCH_COST) if tok in used else -MATCH_COST
        if run <= 0:
            run, i0 = gain, k
        else:
            run += gain
        if run > best:
            best, best_ij = run, (i0, k)
    if best_ij is None or best < 2 * (1 - MATCH_COST):  # one shared word locates nothing
        return None
    i, j = best_ij
    inside = {(_tokens(w.text) or [""])[0] for w in words[i:j + 1]}
    if len(used & inside) < ANSWER_COVERED * len(used):
        return None  # the sentence says things the span does not: it is no guide to where
    return words[i].start, words[j].end


def answer_source(word_lists, generated: str) -> int | None:
    """Which of the evidence the model read its answer from (index into ``word_lists``, best
    evidence first): the one holding most of the answer's words, at least two. A model given five
    segments may well answer from the third; the citation must follow it, not the ranking. Ties
    go to the better ranked; None when no evidence holds two of its words."""
    used = {w for w in _tokens(generated) if w not in _STOP}
    best, best_n = None, 1
    for n, words in enumerate(word_lists):
        held = len(used & {(_tokens(w.text) or [""])[0] for w in words})
        if held > best_n:
            best, best_n = n, held
    return best


ANSWER_COVERED = 0.75


@dataclass(frozen=True, slots=True)
class Citation:
    stream: str
    start: float
    end: float

    def to_dict(self) -> dict:
        return {"stream": self.stream, "start": round(self.start, 3), "end": round(self.end, 3)}


# "Which version number…", "what phone number…", "in what year…", "how many…": the answer is a
# number, and evidence without one cannot hold it, however close its topic (a small model asked
# anyway invents one: "version 1.0.2").
_WANTS_NUMBER = re.compile(
    r"\b(?:what|which)\s+(?:\w+\s+)?(?:number|year|version|date|price|percentage|score|digits?|amount)s?\b"
    r"|\bhow\s+many\b|\bhow\s+much\s+(?:does|do|did|is|are|was|were|will)\b.*\b(?:cost|pay|charge|worth)\b",
    re.IGNORECASE)
_NUMBER = re.compile(
    r"\d|\b(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|"
    r"fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|"
    r"ninety|hundred|thousand|million|billion|dozen|once|twice|single|double|first|second|third)\b",
    re.IGNORECASE)


def wants_number(question: str) -> bool:
    return _WANTS_NUMBER.search(question) is not None


def has_number(text: str) -> bool:
    return _NUMBER.search(text) is not None


def retrieval_found(best_dense: float, best_lexical: float) -> bool:
    """Whether the best candidate is close enough to the question to be worth an answer."""
    return best_dense >= STRONG_DENSE or (best_lexical > 0 and best_dense >= WEAK_DENSE)


def build_messages(question: str, evidence_lines: list[str], background: list[str] = ()) -> list[dict]:
    """Chat messages for the answer model: the rules, background (the summaries of the parts of
    the stream the evidence comes from), the numbered evidence, then the question."""
    q = question.strip()
    if not q:
        raise ValueError("question must not be empty")
    parts = []
    if background:
        parts.append("Background:\n" + "\n".join(f"- {b}" for b in background))
    parts.append("\n".join(evidence_lines))
    parts.append(f"According to the evidence, {q[0].lower()}{q[1:]}")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n\n".join(parts)}]


def model_declined(text: str) -> bool:
    return NOT_FOUND.lower() in text.lower()[:40] or not text.strip()


_REF = re.compile(r"\[(\d{1,2})\]")


def _marker(m: re.Match, numbered: list[Evidence]) -> str:
    """A model's [n] as the real citation; "" for evidence it was not given."""
    n = int(m.group(1))
    return cite(numbered[n - 1]) if 1 <= n <= len(numbered) else ""


def link_citations(text: str, numbered: list[Evidence]) -> tuple[str, list[int]]:
    """Replace the model's [n] markers with real citations; returns the text and the numbers used
    (only those that exist: a model may cite evidence it was not given)."""
    used = [n for n in map(int, _REF.findall(text)) if 1 <= n <= len(numbered)]
    return re.sub(r"\s+", " ", _REF.sub(lambda m: _marker(m, numbered), text)).strip(), used


def compose(generated: str, main: Evidence, main_span: Citation) -> str:
    """The answer a user reads: the model's sentence, then the quote it rests on, cited."""
    sentence = generated.strip()
    grounding = quote(main)
    if (main_span.start, main_span.end) != (main.start, main.end):
        grounding += f", at {clock(main_span.start)}–{clock(main_span.end)}"
    return f"{sentence}\n{grounding}" if sentence else grounding


def when_answer(main: Evidence, span: Citation) -> str:
    """A "when" answer: the measured time first, then the evidence it comes from."""
    return f"At {clock(span.start)}–{clock(span.end)} in {span.stream}. {quote(main)}"


class StreamLinker:
    """``link_citations`` for text arriving in pieces: a marker split across pieces ("[", "1", "]")
    is held back until it is whole, and a reply that opens with NOT FOUND is never shown."""

    HOLD = len(NOT_FOUND) + 2

    def __init__(self, numbered: list[Evidence]):
        self.numbered = numbered
        self.buf = ""
        self.started = False  # past the first few characters, where NOT FOUND would be
        self.declined = False

    def push(self, piece: str) -> str:
        self.buf += piece
        if not self.started:
            if len(self.buf.lstrip()) < self.HOLD:
                return ""
            self.started = True
            self.declined = model_declined(self.buf)
        if self.declined:
            return ""
        out = ""
        while self.buf:
            i = self.buf.find("[")
            if i < 0:
                out, self.buf = out + self.buf, ""
                break
            out, self.buf = out + self.buf[:i], self.buf[i:]
            m = _REF.match(self.buf)
            if m:
                out, self.buf = out + _marker(m, self.numbered), self.buf[m.end():]
            elif re.fullmatch(r"\[\d{0,2}", self.buf):
                break  # the rest of the marker is still to come
            else:
                out, self.buf = out + self.buf[0], self.buf[1:]
        return out

    def flush(self) -> str:
        rest, self.buf = self.buf, ""
        if not self.started:
            self.started, self.declined = True, model_declined(rest)
        if self.declined:
            return ""
        return _REF.sub(lambda m: _marker(m, self.numbered), rest)
