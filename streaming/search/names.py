"""The proper names said or shown in a window of one stream (streaming/question/names.py).

Whisper writes names with capitals, and subtitles and on-screen text do too. A capitalised word is
taken as (part of) a name unless the stream also uses it in lower case (then it was capitalised only
for starting a sentence: "And", "Thank") or it is a word that starts sentences everywhere. Runs of
such words, with "of"/"the"/"de" inside and a title before ("Mr. John Dashwood"), make one name.
"""

from __future__ import annotations

import re

from streaming.records import Evidence

QUOTE_CHARS = 160
_TOKEN = re.compile(r"[A-Za-z][A-Za-z'’.-]*|\S")
_TITLES = {"mr", "mrs", "ms", "dr", "st", "sir", "lady", "lord", "king", "queen", "president", "captain"}
_JOINERS = {"of", "the", "de", "la", "von", "van", "da", "del"}
# Capitalised at a sentence's start in any stream, and never a name on their own.
_NEVER = set("""i a an and as at but by for from he her his if in into is it its me my no not of oh on or our
she so that the their then there these they this those to up we what when where which who why will with
you your yes well hey ohh ok okay please thank thanks hello welcome press dial i'm i've i'll i'd don't
can't won't it's that's let's there's what's here now just all some any every one two let look see go
come get take make give tell ask help call wait stop listen watch do does did was were be been have has
had are am can could would should may might must shall nonono no-no how ah uh um wow yeah hmm""".split())
_STUTTER = re.compile(r"^(?:[A-Za-z]-)+(?=[A-Za-z]{2})")  # "P-P-Popeye": the name is "Popeye"


def _clean(token: str) -> str:
    return token.strip(".'’-").lower()


def names_in(text: str, lower: set[str]) -> list[str]:
    """The names in ``text``; ``lower``: the words the stream uses in lower case."""
    names, run = [], []

    def close() -> None:
        while run and _clean(run[-1]) in _JOINERS:
            run.pop()
        if run:
            names.append(" ".join(run).rstrip(".,"))
        run.clear()

    for tok in _TOKEN.findall(text):
        tok = _STUTTER.sub("", tok)
        word = _clean(tok)
        if tok[:1].isupper() and word and word not in _NEVER and (word not in lower or word in _TITLES):
            run.append(tok.rstrip(","))
        elif run and word in _JOINERS and tok.islower():
            run.append(tok)
        else:
            close()
        if tok.endswith(",") or tok in {",", "!", "?", ";"}:
            close()
    close()
    return [n for n in names if _clean(n) not in _TITLES]


def _said(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS].rsplit(" ", 1)[0] + "…"


def names_evidence(stream: str, said: list, shown: list) -> list[Evidence]:
    """One evidence per segment or shown item that brings up a new name, in time order, naming
    them: ``said`` are micro segments with words, ``shown`` shown-text items (each has t0, t1, text)."""
    items = sorted([(s.t0, s.t1, s.text, "said") for s in said] + [(it.t0, it.t1, it.text, "shown") for it in shown])
    lower = {w for _, _, text, _ in items for w in re.findall(r"\b[a-z][a-z'’]*\b", text)}
    seen: set[str] = set()  # the words of the names given so far: "Engels" after "Frederick Engels" is no news
    out = []
    for t0, t1, text, modality in items:
        new = [n for n in dict.fromkeys(names_in(text, lower)) if not set(n.lower().split()) <= seen]
        if not new:
            continue
        seen.update(w for n in new for w in n.lower().split())
        out.append(Evidence(stream, t0, t1, f"{', '.join(new)} — {_said(text)}", 1.0, modality, "names"))
    return out
