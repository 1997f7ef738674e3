"""Answering who-speaks questions (streaming/question/speakers.py) inside one stream, from the
speaker labels its segments carry: how many speakers the window holds, where each first speaks,
when the speaker changes, who speaks at a time. Each answer is evidence cited with its span, like
any other; empty when the stream has no labels (speaker model off, no speech yet): the caller then
lists the window instead, as for a language question.
"""

from __future__ import annotations

from dataclasses import dataclass

from streaming.question.speakers import count_words
from streaming.records import Evidence, MicroSegment

QUOTE_CHARS = 120  # of a turn's words, enough to recognise it by


@dataclass(frozen=True, slots=True)
class Turn:
    """One speaker's uninterrupted stretch: consecutive labelled segments with the same label
    (an unlabelled segment between two of the same speaker does not end it)."""

    speaker: str
    t0: float
    t1: float
    text: str


def turns(segments: list[MicroSegment]) -> list[Turn]:
    out: list[Turn] = []
    for s in segments:
        if not s.speaker:
            continue
        if out and out[-1].speaker == s.speaker:
            last = out[-1]
            out[-1] = Turn(last.speaker, last.t0, s.t1, f"{last.text} {s.text}".strip())
        else:
            out.append(Turn(s.speaker, s.t0, s.t1, s.text))
    return out


def _said(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS].rsplit(" ", 1)[0] + "…"


def _first_turns(ts: list[Turn]) -> list[Turn]:
    seen: dict[str, Turn] = {}
    for t in ts:
        seen.setdefault(t.speaker, t)
    return list(seen.values())


def speaker_evidence(stream: str, segments: list[MicroSegment], ask: str,
                     at: float | None = None) -> list[Evidence]:
    """The evidence answering ``ask`` ("count", "change" or "at") over ``segments`` (a window of
    one stream, in time order); ``at``: the media time an "at" question names, if any."""
    if ask not in ("count", "change", "at"):
        raise ValueError(f"unknown speaker question {ask!r}")
    ts = turns(segments)
    if not ts:
        return []
    firsts = _first_turns(ts)

    def ev(t0: float, t1: float, text: str, kind: str = "speaker") -> Evidence:
        return Evidence(stream, t0, t1, text, 1.0, "said", kind)

    def first_of(t: Turn) -> Evidence:
        return ev(t.t0, t.t1, f"{t.speaker} first speaks: {_said(t.text)}")

    if ask == "count":
        labels = ", ".join(t.speaker for t in firsts)
        head = ev(ts[0].t0, ts[-1].t1, f"{count_words(len(firsts))} ({labels}), told apart by voice",
                  "speakers")
        return [head] + [first_of(t) for t in firsts]
    if ask == "change":
        if len(firsts) == 1:
            only = firsts[0]
            return [ev(ts[0].t0, ts[-1].t1, f"one speaker ({only.speaker}) throughout: no other voice "
                                             "starts", "speakers")]
        changes = [ev(b.t0, b.t1, f"{b.speaker} takes over from {a.speaker}: {_said(b.text)}")
                   for a, b in zip(ts, ts[1:])]
        # The first turn of each new speaker first (what "the second speaker" means), then every
        # later change of speaker.
        new = [ev(t.t0, t.t1, f"{t.speaker} starts speaking: {_said(t.text)}") for t in firsts[1:]]
        firsts_at = {(n.start, n.end) for n in new}
        return new + [c for c in changes if (c.start, c.end) not in firsts_at]
    # "at": the turn covering the time asked about, else every turn in the window.
    if at is not None:
        covering = [t for t in ts if t.t0 <= at <= t.t1]
        if not covering:
            nearest = min(ts, key=lambda t: min(abs(t.t0 - at), abs(t.t1 - at)))
            covering = [nearest]
        ts = covering
    return [ev(t.t0, t.t1, f"{t.speaker} speaks: {_said(t.text)}") for t in ts]
