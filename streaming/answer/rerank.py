"""Reranking the candidates of a question: dense similarity, BM25, density and recency in one score.

MiniLM embeds a rare name ("Zorblatt") as roughly "some name", so a segment that says the name
scores about as high as one about a similar topic. BM25 over the candidate pool gives the exact
word its weight back. Density (streaming.memory.density) breaks near-ties towards segments that say
something new, and an optional recency term favours the newest minutes of a live stream.

``relevance`` is a weighted MEAN of terms that each lie in [0, 1], so it means the same thing for
every question and every weighting: the caller can say "not found" below a fixed threshold. The
raw cosine (``dense``) and the lexical term stay beside it for the same purpose.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import bm25s
import numpy as np
from bm25s.stopwords import STOPWORDS_EN

from streaming.memory.density import check_weights
from streaming.records import Candidate

# Density is about 0.5 for a typical segment (half-surprising, some variety): that maps to 0.5.
DENSITY_CENTRE, DENSITY_SCALE = 0.5, 2.0
ORDER_MARGIN = 0.8  # first/last: candidates within this share of the best relevance are "a match"
ORDER_FLOOR = 0.25  # ... and at least this cosine (streaming.answer.extractive.WEAK_SCORE): topical noise isn't
CROSS_FLOOR = 0.5  # the same floor for a cross-encoder's probability
# Question words carry no content, yet BM25 would reward every segment that says "what" or "said".
_STOPWORDS = sorted(set(STOPWORDS_EN) | {
    "what", "when", "where", "who", "whom", "which", "why", "how", "did", "do", "does", "done", "is",
    "was", "were", "been", "being", "has", "have", "had", "say", "said", "says", "saying", "tell",
    "me", "about", "you", "we", "he", "she", "him", "her", "his", "its", "our", "your", "my", "any",
    "anything", "something", "can", "could", "would", "should", "from", "so", "than", "too", "very",
    "just", "here", "mention", "mentioned", "talk", "talked", "happen", "happened", "there"})


@dataclass(frozen=True, slots=True)
class RerankWeights:
    dense: float = 1.0
    lexical: float = 0.5
    density: float = 0.1
    time: float = 0.0

    def __post_init__(self):
        check_weights(self, "rerank")
        if self.dense + self.lexical + self.density + self.time <= 0:
            raise ValueError("at least one rerank weight must be > 0")


@dataclass(frozen=True, slots=True)
class Ranked:
    candidate: Candidate
    relevance: float  # weighted mean of the terms, in [0, 1]
    dense: float  # the candidate's cosine, as searched (not clipped)
    lexical: float  # BM25 / pool best × share of the question's words it contains, in [0, 1]
    cross: float | None = None  # the cross-encoder's probability when one scored it


def _sigmoid(x: float) -> float:
    return 0.5 * (1.0 + math.tanh(0.5 * x))  # no overflow for large |x|


def density_squash(density: float | None) -> float:
    """A segment's density in (0, 1); 0.5 when it has none (shown text, labels)."""
    return _sigmoid(DENSITY_SCALE * (density - DENSITY_CENTRE)) if density is not None else 0.5


def _stem(token: str) -> str:
    """Plural and possessive endings only: "budgets" finds "budget"; a full stemmer is not needed."""
    if token.endswith("'s"):
        token = token[:-2]
    if len(token) > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


def _tokens(texts: list[str]) -> list[list[str]]:
    return bm25s.tokenize(texts, stopwords=_STOPWORDS, stemmer=lambda ws: [_stem(w) for w in ws],
                          return_ids=False, show_progress=False)


def lexical_scores(query: str, texts: Sequence[str]) -> np.ndarray | None:
    """BM25 of each text for the query, scaled to [0, 1]; None when the query has no content words.

    Scaled by the pool's best, then by the share of the query's words a text contains: one
    common word matched in a pool of misses is not a full match.
    """
    (q,) = _tokens([query]) if query.strip() else ([],)
    q = list(dict.fromkeys(q))  # a repeated word would count twice
    if not q:
        return None
    docs = _tokens(list(texts)) if texts else []
    scores = np.zeros(len(docs), dtype=np.float64)
    if not any(docs):  # bm25s cannot index a pool with no words at all
        return scores
    retriever = bm25s.BM25()
    retriever.index(docs, show_progress=False)
    scores = np.nan_to_num(np.asarray(retriever.get_scores(q), dtype=np.float64))
    best = scores.max(initial=0.0)
    if best <= 0:
        return np.zeros(len(docs))
    coverage = np.array([len(set(q) & set(d)) / len(q) for d in docs])
    words = np.clip(scores / best, 0.0, 1.0) * coverage
    pairs = _bigrams(query)
    if not pairs:
        return words
    # Word pairs, stopwords kept: a question quoting "I'm Sinbad the sailor" should prefer the
    # cue that says exactly that over "Sinbad the sailor!" with the same content words.
    phrase = np.array([len(pairs & _bigrams(t)) / len(pairs) for t in texts])
    if phrase.max(initial=0.0) <= 0:  # no text shares a pair: the words alone decide
        return words
    return (1 - PHRASE_SHARE) * words + PHRASE_SHARE * phrase / phrase.max()


PHRASE_SHARE = 0.3


def content_words(text: str) -> set[str]:
    """The content words of a text as BM25 here sees them (stopwords out, plurals folded)."""
    (words,) = _tokens([text]) if text.strip() else ([],)
    return set(words)


def word_pairs(text: str) -> set[tuple[str, str]]:
    """Adjacent word pairs, stopwords kept: how closely a text repeats a phrase."""
    return _bigrams(text)


def _bigrams(text: str) -> set[tuple[str, str]]:
    w = re.findall(r"[a-z0-9']+", text.lower().replace("’", "'"))
    return set(zip(w, w[1:]))


def _dedupe(candidates: Sequence[Candidate], semantic: list[float]) -> list[int]:
    """One candidate per (stream, kind, start, end): a segment found at two levels is one segment."""
    best: dict[tuple, int] = {}
    for i, c in enumerate(candidates):
        e = c.evidence
        key = (e.stream, e.kind, round(e.start, 3), round(e.end, 3))
        if key not in best or semantic[i] > semantic[best[key]]:
            best[key] = i
    return sorted(best.values())


def rerank(query: str, candidates: Sequence[Candidate], weights: RerankWeights = RerankWeights(),
           order: str | None = None, cross_scores: Sequence[float] | None = None, *,
           margin: float = ORDER_MARGIN, floor: float | None = None) -> list[Ranked]:
    """Candidates best first, with their relevance in [0, 1].

    ``cross_scores`` (a cross-encoder's logits, one per candidate) replace the cosine term.
    ``order`` "first"/"last": every candidate that is a match, i.e. relevance >= ``margin`` × the
    best and semantic score >= ``floor`` (cosine 0.25, cross probability 0.5 by default), goes
    ahead of the rest sorted by start time, earliest ("first") or latest ("last") first: "when did
    X first happen" wants the earliest of the good matches, not the single best-scoring one.
    """
    if not isinstance(query, str):
        raise ValueError("query must be a string")
    if not isinstance(weights, RerankWeights):
        raise ValueError("weights must be a RerankWeights")
    if order not in (None, "first", "last"):
        raise ValueError(f"order must be None, 'first' or 'last', not {order!r}")
    if not 0 < margin <= 1:
        raise ValueError(f"margin must be in (0, 1], not {margin}")
    candidates = list(candidates)
    if any(not isinstance(c, Candidate) for c in candidates):
        raise ValueError("candidates must be Candidate records")
    cross = None
    if cross_scores is not None:
        cross = [float(s) for s in cross_scores]
        if len(cross) != len(candidates):
            raise ValueError(f"cross_scores has {len(cross)} scores for {len(candidates)} candidates")
        if not all(math.isfinite(s) for s in cross):
            raise ValueError("cross_scores must be finite numbers")
        cross = [_sigmoid(s) for s in cross]
    if not candidates:
        return []
    semantic = cross or [min(1.0, max(0.0, c.evidence.score)) for c in candidates]
    keep = _dedupe(candidates, semantic)
    pool = [candidates[i] for i in keep]
    sem = [semantic[i] for i in keep]
    lexical = lexical_scores(query, [c.evidence.text for c in pool])
    density = [density_squash(c.density) for c in pool]
    recency = _recency(pool)
    # Terms that cannot be measured for this question leave the mean rather than count as zero.
    w_lex = weights.lexical if lexical is not None else 0.0
    total = weights.dense + w_lex + weights.density + weights.time
    ranked = []
    for j, c in enumerate(pool):
        lex = float(lexical[j]) if lexical is not None else 0.0
        value = (weights.dense * sem[j] + w_lex * lex + weights.density * density[j]
                 + weights.time * recency[j])
        ranked.append(Ranked(c, value / total if total > 0 else sem[j], c.evidence.score, lex,
                             cross[keep[j]] if cross else None))
    ranked.sort(key=lambda r: (-r.relevance, -(r.cross if r.cross is not None else r.dense),
                               r.candidate.evidence.stream, r.candidate.evidence.start))
    if floor is None:
        floor = CROSS_FLOOR if cross else ORDER_FLOOR
    return _ordered(ranked, order, margin, floor)


def _recency(pool: list[Candidate]) -> list[float]:
    """0 for the oldest to 1 for the newest candidate of its stream (media times of two streams
    do not compare)."""
    spans: dict[str, tuple[float, float]] = {}
    for c in pool:
        lo, hi = spans.get(c.evidence.stream, (math.inf, -math.inf))
        spans[c.evidence.stream] = (min(lo, c.evidence.end), max(hi, c.evidence.end))
    out = []
    for c in pool:
        lo, hi = spans[c.evidence.stream]
        out.append((c.evidence.end - lo) / (hi - lo) if hi > lo else 1.0)
    return out


def _ordered(ranked: list[Ranked], order: str | None, margin: float, floor: float) -> list[Ranked]:
    if order is None or not ranked or ranked[0].relevance <= 0:
        return ranked
    threshold = margin * ranked[0].relevance

    def matches(r: Ranked) -> bool:
        return r.relevance >= threshold and (r.cross if r.cross is not None else r.dense) >= floor
    hits = [r for r in ranked if matches(r)]
    rest = [r for r in ranked if not matches(r)]
    sign = 1.0 if order == "first" else -1.0
    hits.sort(key=lambda r: (sign * r.candidate.evidence.start, -r.relevance))
    return hits + rest
