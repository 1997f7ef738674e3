"""Retrieval inside one stream: coarse-to-fine over macro → meso → micro, plus direct micro search.

Direct search finds segments whose own words match the question. Coarse-to-fine finds the parts of
the stream that are about the question (a macro's and a meso's summaries match even when no single
3 s segment does) and then the best segments inside them, so the reranker sees both. Visual items
(on-screen text, subtitles, labels, frames) come from their own index, as before.

A request's media span, its wall-clock span and the question's time words ("in the last 5
minutes", "after the title card") all narrow the same [start, end] window, resolved per stream
because each stream has its own newest time.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np

from streaming.ingest.languages import stretches
from streaming.records import Candidate, Evidence, MicroSegment
from streaming.question.language import language_name, written_language
from streaming.question.timewords import TimeIntent
from streaming.search.names import names_evidence
from streaming.search.speakers import speaker_evidence
from streaming.search.view import StreamView

MACROS = 3  # macro parents followed down per question
MESOS = 4  # meso parents per macro
PER_MESO = 3  # micro segments per meso
ANCHOR_MIN_SCORE = 0.3  # an "after the title card" anchor weaker than this is not trusted


@dataclass(frozen=True, slots=True)
class RetrievalPlan:
    """What one stream is asked; the API builds it once and sends it to every stream."""

    query: np.ndarray | None  # the question's vector; None lists what was shown, in time order
    k: int
    kinds: frozenset[str]
    start: float | None = None  # media seconds, from the request
    end: float | None = None
    wall_start: float | None = None  # epoch seconds: when the content was ingested
    wall_end: float | None = None
    time: TimeIntent = field(default_factory=TimeIntent)
    anchor: np.ndarray | None = None  # vector of the time words' after/before anchor phrase
    text: str = ""  # the question's content words, for a CLIP text tower
    overview: bool = False  # with no query: the window's meso/macro summaries rather than every item
    language: bool = False  # with no query: the language Whisper detected, cited where speech is
    speakers: str = ""  # with no query: a who-speaks question ("count", "change", "at"), from the labels
    names: bool = False  # with no query: the proper names said or shown in the window

    def __post_init__(self):
        if self.k < 1:
            raise ValueError("k must be at least 1")
        if self.speakers not in ("", "count", "change", "at"):
            raise ValueError(f"unknown speaker question {self.speakers!r}")
        for a, b, what in ((self.start, self.end, "end"), (self.wall_start, self.wall_end, "wall_end")):
            if a is not None and b is not None and b < a:
                raise ValueError(f"{what} must not be before its start")


@dataclass(frozen=True, slots=True)
class Retrieved:
    """One stream's answer to a plan: the candidates and the window they were found in."""

    candidates: tuple[Candidate, ...]
    start: float | None
    end: float | None
    stream_end: float  # the stream's newest searchable media time
    notes: tuple[str, ...] = ()


def _narrow(a: float | None, b: float | None, lo: bool) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b) if lo else min(a, b)


def wall_window(segments: list[MicroSegment], wall_start: float | None,
                wall_end: float | None) -> tuple[float | None, float | None]:
    """Media time of the content ingested within a wall-clock span (ingest time only grows)."""
    if wall_start is None and wall_end is None:
        return None, None
    walls = [s.wall for s in segments]
    start = end = None
    if wall_start is not None:
        i = bisect.bisect_left(walls, wall_start)
        start = segments[i].t0 if i < len(segments) else float("inf")
    if wall_end is not None:
        i = bisect.bisect_right(walls, wall_end)
        end = segments[i - 1].t1 if i > 0 else -1.0
    return start, end


def window(view: StreamView, plan: RetrievalPlan) -> tuple[float | None, float | None, list[str]]:
    """The media-time window a plan searches in this stream, and notes on how it was chosen."""
    stream_end = view.committed_seconds
    start, end = plan.start, plan.end
    notes = []
    if plan.wall_start is not None or plan.wall_end is not None:
        ws, we = wall_window(view.segments(), plan.wall_start, plan.wall_end)
        start, end = _narrow(start, ws, True), _narrow(end, we, False)
    ts, te = plan.time.resolve(stream_end)
    start, end = _narrow(start, ts, True), _narrow(end, te, False)
    if plan.anchor is not None and (plan.time.after or plan.time.before):
        hit = best_anchor(view, plan.anchor)
        if hit is None:
            notes.append(f"could not place “{plan.time.after or plan.time.before}” in stream {view.id}")
        elif plan.time.after:
            start = _narrow(start, hit.end, True)
        else:
            end = _narrow(end, hit.start, False)
    return start, end, notes


def best_anchor(view: StreamView, vector: np.ndarray) -> Evidence | None:
    """Where the thing a question times itself against ("the title card") happened."""
    found = view.evidence(vector, 1, None, None, None, "")
    return found[0] if found and found[0].score >= ANCHOR_MIN_SCORE else None


SENTENCE_END = (".", "?", "!", "…", "\"", "”")
CONTINUES_WITHIN_S = 1.0  # a next segment starting later than this is a new thought
SENTENCE_MAX_S = 10.0  # a quote grows at most this far past its segment to finish the sentence


def sentence_words(view: StreamView, seg: MicroSegment) -> tuple:
    """The segment's words, plus the following segments' up to the end of the sentence when the
    segment stops mid-sentence: "…to be published in the English," is no answer to "in which
    languages?", and "And so my fellow Americans" is no answer to what he asks of them."""
    words = seg.words
    if not words or words[-1].text.strip().endswith(SENTENCE_END):
        return words
    more, last = [], seg
    for nxt in view.segments(seg.t1, seg.t1 + SENTENCE_MAX_S):
        if nxt.seq <= last.seq:
            continue
        if nxt.seq != last.seq + 1 or nxt.t0 - last.t1 > CONTINUES_WITHIN_S or not nxt.words:
            break
        for w in nxt.words:
            if w.end > seg.t1 + SENTENCE_MAX_S:
                return words + tuple(more)
            more.append(w)
            if w.text.strip().endswith(SENTENCE_END):
                return words + tuple(more)
        last = nxt
    return words + tuple(more)


def parent_summary(view: StreamView, seg: MicroSegment) -> str:
    """The summary of the meso the segment belongs to: context for an answer model."""
    if view.levels is None:
        return ""
    for p in view.levels.parents("meso", seg.t0, seg.t1):
        if seg.seq in p.children:
            return p.summary
    return ""


def listing(view: StreamView, k: int, start: float | None, end: float | None, kinds: set[str]) -> list[Evidence]:
    """What a question that names no content gets ("what is said in the last 10 seconds?", "what
    text appears?"): what was said and shown in the window, in time order; with more than ``k``,
    the latest ``k`` when the window is open-ended at the start ("the last 5 minutes" of a long
    window wants its end), else the first."""
    out = list(view.evidence(None, 10_000, start, end, kinds)) if kinds - {"speech"} else []
    if "speech" in kinds:
        out += [Evidence(view.id, s.t0, s.t1, s.text, 1.0, speaker=s.speaker)
                for s in view.segments(start, end) if s.words]  # repeats too: all that was said
        heard = view.heard(None, start, end)  # and what was just heard, not final yet
        out += [heard[1]] if heard is not None else []
    out.sort(key=lambda e: (e.start, e.end))
    return out[-k:] if start is not None and end is None else out[:k]


def overview(view: StreamView, k: int, start: float | None, end: float | None) -> list[Evidence]:
    """What a question about the whole window gets ("what is this clip about?"): the summaries of
    the meso parents that overlap it, in time order, or of the macro parents when more than ``k``
    mesos cover it (then the ``k`` densest). Empty without levels, or when no summary has text
    (a stream too young for one): the caller lists the window instead."""
    if view.levels is None:
        return []
    for level in ("meso", "macro"):
        parents = [p for p in view.levels.parents(level, start, end) if p.summary.strip()]
        if len(parents) <= k or level == "macro":
            break
    if len(parents) > k:
        parents = sorted(sorted(parents, key=lambda p: -p.density)[:k], key=lambda p: p.t0)
    return [Evidence(view.id, p.t0 if start is None else max(p.t0, start),
                     p.t1 if end is None else min(p.t1, end), p.summary, 1.0, "said", p.level)
            for p in parents]


def language(view: StreamView, start: float | None, end: float | None,
             kinds: set[str] | frozenset[str] = frozenset({"speech"})) -> list[Evidence]:
    """The stream's spoken language, cited from its first and last speech in the window; for a
    question about written text ("what language are the subtitles in?"), or a stream without
    speech, the language of its subtitles and on-screen text. Empty when neither is known (no
    speech so far, too little text to tell): the caller lists the window instead."""
    name = language_name(view.language) if "speech" in kinds else None
    spoken = [s for s in view.segments(start, end) if s.words] if name else []
    if spoken:
        # Each language with where it is spoken (several when it changes within the window).
        stretches = spoken_stretches(view, spoken) if view.languages else []
        return stretches or [Evidence(view.id, spoken[0].t0, spoken[-1].t1,
                                      f"{name} (the language Whisper detected in this stream's speech)", 1.0,
                                      "said", "language")]
    shown = view.visual.shown(start, end) if view.visual is not None else []
    written = language_name(written_language([it.text for it in shown]))
    if not written:
        return []
    return [Evidence(view.id, shown[0].t0, max(it.t1 for it in shown),
                     f"{written} (the language of this stream's subtitles and on-screen text)", 1.0, "shown",
                     "language")]


def spoken_stretches(view: StreamView, spoken: list[MicroSegment]) -> list[Evidence]:
    """The window's speech by language, in time order (``view.languages``): one evidence per
    stretch, cited from its first to its last speech; a segment belongs where its middle lies (the
    first stretch also holds speech heard before its language was first detected)."""
    out: list[Evidence] = []
    before = None  # the previous stretch's language, once one is cited
    for n, (lo, hi, code) in enumerate(stretches(view.languages, math.inf)):
        lo = lo if n else -math.inf
        mine = [s for s in spoken if lo <= (s.t0 + s.t1) / 2 < hi]
        if not mine:
            continue
        name = language_name(code)
        said = (f"after {before}: the spoken language changes here" if before
                else "the language Whisper detected in this stream's speech")
        out.append(Evidence(view.id, mine[0].t0, mine[-1].t1, f"{name} ({said})", 1.0, "said", "language"))
        before = name
    return out


def speakers(view: StreamView, plan: RetrievalPlan, start: float | None, end: float | None) -> list[Evidence]:
    """Who speaks in the window, from the segments' speaker labels (streaming/search/speakers.py);
    "who speaks first/last" keeps the first/last turn."""
    found = speaker_evidence(view.id, view.segments(start, end), plan.speakers, plan.time.at)
    if plan.speakers == "at" and plan.time.order and plan.time.at is None and found:
        found = found[:1] if plan.time.order == "first" else found[-1:]
    return found


def names(view: StreamView, start: float | None, end: float | None, kinds: set[str]) -> list[Evidence]:
    """The proper names said (and shown, when the question allows) in the window, each where it
    first comes up (streaming/search/names.py)."""
    said = [s for s in view.segments(start, end) if s.words] if "speech" in kinds else []
    shown = [it for it in view.visual.shown(start, end) if it.kind in kinds] if view.visual is not None else []
    return names_evidence(view.id, said, shown)


def retrieve(view: StreamView, plan: RetrievalPlan) -> Retrieved:
    """Candidates from one stream, unranked but deduplicated."""
    stream_end = view.committed_seconds
    start, end, notes = window(view, plan)
    if start is not None and end is not None and end < start:
        return Retrieved((), start, end, stream_end, tuple(notes))
    kinds = set(plan.kinds)
    if plan.query is None:
        found = (language(view, start, end, kinds) if plan.language
                 else speakers(view, plan, start, end) if plan.speakers
                 else names(view, start, end, kinds) if plan.names
                 else overview(view, plan.k, start, end) if plan.overview else [])
        found = found or listing(view, plan.k, start, end, kinds)
        return Retrieved(tuple(Candidate(e) for e in found),
                         start, end, stream_end, tuple(notes))
    found: dict[int, tuple[MicroSegment, float, str]] = {}

    def keep(seg: MicroSegment, score: float, level: str) -> None:
        if seg.seq not in found or found[seg.seq][1] < score:
            found[seg.seq] = (seg, score, level if seg.seq not in found else found[seg.seq][2])

    if "speech" in kinds and view.index is not None:
        for seg, score in view.search(plan.query, plan.k, start, end):
            keep(seg, score, "direct")
        if view.levels is not None:
            for macro, _ in view.levels.search(plan.query, MACROS, "macro", start, end):
                lo, hi = _narrow(start, macro.t0, True), _narrow(end, macro.t1, False)
                for meso, _ in view.levels.search(plan.query, MESOS, "meso", lo, hi):
                    m_lo, m_hi = _narrow(lo, meso.t0, True), _narrow(hi, meso.t1, False)
                    for seg, score in view.search(plan.query, PER_MESO, m_lo, m_hi):
                        keep(seg, score, "meso")
    out = []
    heard = view.heard(plan.query, start, end) if "speech" in kinds else None
    if heard is not None:  # live text not final yet: one candidate, marked provisional
        text, ev = heard
        out.append(Candidate(ev, None, "direct", "", text.vector, text.words))
    for seg, score, level in found.values():
        words = sentence_words(view, seg)
        ev = Evidence(view.id, seg.t0, max(seg.t1, words[-1].end), "".join(w.text for w in words).strip(),
                      score, also=tuple(view.levels.occurrences(seg.seq)) if view.levels is not None else (),
                      speaker=seg.speaker)
        out.append(Candidate(ev, seg.density, level, parent_summary(view, seg), None, words))
    visual = kinds - {"speech"}
    if visual:
        out += [Candidate(e, None, "direct")
                for e in view.evidence(plan.query, plan.k, start, end, visual, plan.text)]
    return Retrieved(tuple(out), start, end, stream_end, tuple(notes))
