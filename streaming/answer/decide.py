"""The decisions of one question, without the machinery that carries them out.

``actors.serve.fanout`` embeds, fans out to the streams, calls the cross-encoder and streams the
answer model's tokens; everything it decides along the way is here, as pure functions returning
records: what to search for (``plan_question``), when a shown-text question lists the window
instead (``list_instead``), how a listing and the baseline are ranked, whether the stream holds the
answer and what the answer model reads (``select``), and the answer a user gets with or without a
generated sentence (``answer_without_model``, ``answer_after_generation``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from streaming.answer import grounding as g
from streaming.answer.context import evidence_line, select_context
from streaming.answer.extractive import extractive_answer, quote
from streaming.answer.rerank import Ranked
from streaming.question.intent import QueryIntent, names_written_text, parse_question
from streaming.question.language import asks_language
from streaming.question.names import asks_names
from streaming.question.overview import asks_overview
from streaming.question.speakers import asks_speakers
from streaming.question.timewords import START_S, TimeIntent, parse_time_words
from streaming.records import Candidate, Evidence
from streaming.search.retrieve import Retrieved

BASELINE_K = 3  # chunks the baseline gives its answer model (30 s each: ~300 tokens)
CONTEXT_MIN_RELEVANCE = 0.7  # of the best: weaker evidence only distracts a small answer model
BASELINE_MODALITIES = ("said", "shown")  # its 30 s chunks mix speech and on-screen text


def approx_tokens(text: str) -> int:
    # Chosen before the model sees it; English runs ~4 characters a token for these tokenizers,
    # and 3.5 keeps the estimate on the safe side of the budget.
    return max(1, math.ceil(len(text) / 3.5))


# -- what to search for -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class QuestionPlan:
    """A question taken apart: the caller embeds ``query_text`` and ``anchor_text`` (when not None)
    and sends the streams a ``RetrievalPlan`` built from the rest."""

    time_words: TimeIntent  # the window or order the question's time words ask for
    intent: QueryIntent  # which modalities, and the content words left to match
    listing: bool  # nothing to match: list the window in time order instead of searching
    when: bool  # asks for a moment of the stream ("when does he say …")
    query_text: str | None  # what to embed as the question; None when listing
    anchor_text: str | None  # the "after/before …" phrase to embed; None without one
    content: str  # what the reranker and a CLIP text tower match against
    overview: bool = False  # about the whole window: answered from its summaries, listed in time order
    language: bool = False  # which language: answered from what Whisper detected in each stream
    speakers: str = ""  # who speaks ("count", "change", "at"): answered from each stream's speaker labels
    names: bool = False  # which names come up: answered by listing the window's proper names

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self.intent.kinds)

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.intent.modalities


def plan_question(question: str, modality: str | None = None) -> QuestionPlan:
    time_words = parse_time_words(question)
    if asks_language(question):  # no transcript holds the word "language"
        # "What language is spoken?" is Whisper's; "...are the subtitles in?" is the written text's.
        intent = parse_question(question, modality or ("shown" if names_written_text(question) else "said"))
        return QuestionPlan(time_words, intent, True, False, None, None, intent.content, language=True)
    speakers = asks_speakers(question)
    if speakers is not None:  # no transcript holds "two speakers": the voices' labels answer it
        intent = parse_question(question, modality or "said")
        return QuestionPlan(time_words, intent, True, False, None, None, intent.content, speakers=speakers)
    if asks_names(question):  # "who is named?" holds no name to search for: list the window's names
        intent = parse_question(question, modality or "any")
        return QuestionPlan(time_words, intent, True, False, None, None, intent.content, names=True)
    overview = asks_overview(question)
    if overview is not None:
        # "What is this clip about?", "Summarize the first minute", "How does it end?": the window's
        # summaries, whatever modality the words seem to name ("what can be heard in this clip").
        if overview.edge == "end" and not time_words.at_end:
            time_words = replace(time_words, at_end=True)
        elif overview.edge == "start" and time_words.first_s is None:
            time_words = replace(time_words, first_s=START_S)
        intent = parse_question(question, modality or "any")
        return QuestionPlan(time_words, intent, True, False, None, (time_words.after or time_words.before) or None,
                            intent.content, overview=True)
    content = time_words.content or question
    intent = parse_question(content, modality)
    # Nothing left to match ("what is said in the last 10 seconds?"): list the window.
    listing = intent.listing or not intent.content
    query_text = None
    if not listing:
        # Speech questions embed whole (measured best); visual ones only their content words,
        # so "when is an aircraft shown" matches the label "airliner", not the word "shown".
        text = content if "said" in intent.modalities else intent.content
        query_text = " ".join(text.split())
    anchor_text = (time_words.after or time_words.before) or None
    return QuestionPlan(time_words, intent, listing, g.is_when(question), query_text, anchor_text,
                        intent.content or content)


def found_by_retrieval(ranked: Sequence[Ranked]) -> bool:
    """The manta bar on the best candidate: strong dense, or weaker and sharing a content word."""
    return bool(ranked) and g.retrieval_found(ranked[0].dense, ranked[0].lexical)


def list_instead(plan: QuestionPlan, ranked: Sequence[Ranked]) -> bool:
    """Whether a search for shown text that found nothing should list the window instead.

    "What book title is written on the screen?": such words describe the text, they are not in it.
    What was shown in the window answers better than "not found". (Searching speech first was
    tried: on the eval set it answered two shown questions with speech.)"""
    return not plan.listing and plan.modalities == ("shown",) and not found_by_retrieval(ranked)


# -- ranking ------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Ranking:
    """What retrieval found, best first, and how the question wants it answered."""

    ranked: tuple[Ranked, ...]
    listing: bool = False
    when: bool = False
    baseline: bool = False  # fixed 30 s chunks, dense only: its own "found" bar, no refined spans
    modalities: tuple[str, ...] = BASELINE_MODALITIES
    warnings: tuple[str, ...] = ()  # streams that did not answer, and the streams' notes


def listing_focus(time_words: TimeIntent, stream_end: float) -> float | None:
    """The moment a listing is about, when its window has one: "at 1:16" is 1:16 (the window is
    ±5 s around it), "at the very end" is the stream's newest time; None for a plain window."""
    if time_words.at is not None:
        return time_words.at
    return stream_end if time_words.at_end else None


def _distance(e: Evidence, t: float) -> float:
    return 0.0 if e.start <= t <= e.end else min(abs(e.start - t), abs(e.end - t))


def rank_listing(retrieved: Iterable[Retrieved], k: int, time_words: TimeIntent | None = None) -> list[Ranked]:
    """A listing in time order (ties by stream); its relevance is what each stream scored it. With a
    focus ("what is said at 1:16?"), what lies nearest it comes first: that is what gets cited."""
    tw = time_words or TimeIntent()
    keyed = []
    for r in retrieved:
        focus = listing_focus(tw, r.stream_end)
        for c in r.candidates:
            e = c.evidence
            keyed.append(((0.0 if focus is None else _distance(e, focus), e.start, e.stream), c))
    keyed.sort(key=lambda kc: kc[0])
    return [Ranked(c, c.evidence.score, c.evidence.score, 0.0) for _, c in keyed][:k]


def rank_baseline(question: str, per_stream: Iterable[Iterable[Evidence]],
                  warnings: Iterable[str] = ()) -> Ranking:
    """The baseline's chunks from every stream, best cosine first (ties by stream, then time)."""
    evidence = sorted((e for r in per_stream for e in r), key=lambda e: (-e.score, e.stream, e.start))
    # One level, dense only: its relevance is the cosine, and no word is matched lexically.
    ranked = tuple(Ranked(Candidate(e, level="direct"), e.score, e.score, 0.0) for e in evidence)
    return Ranking(ranked, listing=False, when=g.is_when(question), baseline=True,
                   modalities=BASELINE_MODALITIES, warnings=tuple(warnings))


# -- found, context and citation ---------------------------------------------------------------------

def _citations(span: g.Citation | None, found: bool) -> list[dict]:
    """Only an answer that was found cites anything."""
    return [span.to_dict()] if span and found else []


@dataclass(frozen=True, slots=True)
class Selection:
    found: bool  # retrieval's verdict; the answer model may still decline
    best: Ranked | None
    picked: tuple[Ranked, ...]  # what the answer model reads, best first
    background: tuple[str, ...]  # meso summaries printed above the evidence
    evidence: tuple[Evidence, ...]  # the top k shown to the user, scored by reranked relevance
    span: g.Citation | None  # where the main evidence is cited

    @property
    def chosen(self) -> tuple[Evidence, ...]:
        return tuple(r.candidate.evidence for r in self.picked)

    @property
    def lines(self) -> list[str]:
        return [evidence_line(r, n) for n, r in enumerate(self.picked, 1)]

    @property
    def main(self) -> Evidence | None:
        return self.best.candidate.evidence if self.best else None

    def citations(self) -> list[dict]:
        return _citations(self.span, self.found)


def is_found(ranking: Ranking) -> bool:
    best = ranking.ranked[0] if ranking.ranked else None
    if best is None:
        return False
    if ranking.baseline:  # dense only: the weaker bar, and its model decides
        return best.dense >= g.WEAK_DENSE
    return ranking.listing or g.retrieval_found(best.dense, best.lexical)


def pick_context(ranking: Ranking, found: bool, budget: int) -> tuple[tuple[Ranked, ...], tuple[str, ...]]:
    """What the answer model reads (best first) and the summaries above it."""
    ranked = ranking.ranked
    if ranking.baseline:
        return ranked[:BASELINE_K], ()
    if not found or ranking.listing:
        return (), ()
    context = select_context(ranked, budget, approx_tokens,
                             min_relevance=CONTEXT_MIN_RELEVANCE * ranked[0].relevance)
    # Best first in the prompt: a small model leans on what it reads first.
    picked = tuple(sorted((it.ranked for it in context.items), key=lambda r: -r.relevance))
    background = tuple(dict.fromkeys(it.ranked.candidate.parent for it in context.items
                                     if it.parent_included and it.ranked.candidate.parent))
    return picked, background


def main_span(best: Ranked, question: str, refine: bool) -> g.Citation:
    """The best evidence's span; for "when", narrowed to the words the question names."""
    e: Evidence = best.candidate.evidence
    if refine and best.candidate.words:
        span = g.refine_span(best.candidate.words, question)
        if span is not None:
            return g.Citation(e.stream, *span)
    return g.Citation(e.stream, e.start, e.end)


def select(ranking: Ranking, question: str, k: int, budget: int) -> Selection:
    found = is_found(ranking)
    if found and not ranking.listing and g.wants_number(question):
        # The answer is a number: evidence with none holds no answer, however close its topic.
        found = any(g.has_number(r.candidate.evidence.text) for r in ranking.ranked[:k])
    picked, background = pick_context(ranking, found, budget)
    best = ranking.ranked[0] if ranking.ranked else None
    span = main_span(best, question, ranking.when and not ranking.baseline) if best else None
    # Best first by the reranked relevance, and shown with it: a list sorted by one number and
    # labelled with another would look wrong. (``dense`` stays what "found" is decided on.)
    evidence = tuple(replace(r.candidate.evidence, score=round(r.relevance, 4)) for r in ranking.ranked[:k])
    return Selection(found, best, picked, background, evidence, span)


# -- the answer ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Decision:
    answer: str
    found: bool
    span: g.Citation | None
    warnings: tuple[str, ...] = ()

    def citations(self) -> list[dict]:
        return _citations(self.span, self.found)


def answer_without_model(question: str, ranking: Ranking, sel: Selection, generate: bool,
                         model_error: str | None) -> Decision | None:
    """The answer when no sentence is to be generated; None when the answer model should write one.
    ``model_error``: why no answer model can be asked (None when one can)."""
    if not sel.found:
        return Decision(g.NOT_FOUND_ANSWER, False, sel.span)
    if ranking.listing:
        return Decision(extractive_answer(question, list(sel.evidence), listing=True).answer, True, sel.span)
    if ranking.when:
        # A number a model writes is a guess, a word timestamp is a measurement.
        return Decision(g.when_answer(sel.main, sel.span), True, sel.span)
    if not generate or model_error:
        warnings = (f"no answer model: {model_error}",) if generate else ()
        return Decision(quote(sel.main), True, sel.span, warnings)
    return None


def answer_after_generation(generated: str, declined: bool, sel: Selection) -> Decision:
    """The answer once the model wrote ``generated`` (stripped; "" when it failed or said nothing)
    and ``declined`` (it opened with NOT FOUND)."""
    main = sel.main
    if generated and declined:
        if sel.best.dense < g.STRONG_DENSE:
            return Decision(g.NOT_FOUND_ANSWER, False, None)
        return Decision(quote(main), True, sel.span)  # the retrieval is sure: the quote, not nothing
    text, _ = g.link_citations(generated, list(sel.chosen))
    span = sel.span
    read = sel.picked or (sel.best,)
    source = g.answer_source([r.candidate.words for r in read], generated)
    if source is not None:  # cite (and quote) the evidence the answer's words come from
        main = read[source].candidate.evidence
        span = g.Citation(main.stream, main.start, main.end)
        used = g.answer_span(read[source].candidate.words, generated)
        if used is not None:
            span = g.Citation(main.stream, *used)
    return Decision(g.compose(text, main, span), True, span)
