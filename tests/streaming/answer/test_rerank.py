"""Reranking a question's candidates: dense, BM25, density and time terms."""

from __future__ import annotations

import math

import pytest

from streaming.records import Evidence
from streaming.answer.rerank import Candidate, RerankWeights, lexical_scores, rerank


# ---------------------------------------------------------------- rerank

def ev(text, score, start=0.0, end=None, stream="s", kind="speech", also=()):
    return Evidence(stream, start, start + 3.0 if end is None else end, text, score, kind=kind, also=also)


def cand(text, score, start=0.0, **kw):
    evidence_kw = {k: kw.pop(k) for k in ("stream", "kind", "end", "also") if k in kw}
    return Candidate(ev(text, score, start, **evidence_kw), **kw)


def test_rare_name_beats_a_vaguely_similar_dense_match():
    pool = [cand("the finance team reviewed spending plans", 0.55, 10.0),
            cand("Zorblatt presented the quarterly budget numbers", 0.50, 40.0),
            cand("weather looks fine for the weekend", 0.20, 70.0)]
    query = "What did Zorblatt say about the budget?"
    assert rerank(query, pool, RerankWeights(lexical=0.0))[0].candidate is pool[0]  # dense alone
    ranked = rerank(query, pool)
    assert ranked[0].candidate is pool[1]
    assert ranked[0].lexical == pytest.approx(1.0) and ranked[1].lexical == 0.0
    assert ranked[0].dense == 0.50  # the raw cosine stays beside relevance
    assert all(0.0 <= r.relevance <= 1.0 for r in ranked)


def test_lexical_is_not_a_full_match_for_one_common_word():
    scores = lexical_scores("Zorblatt budget", ["the budget", "Zorblatt and the budget"])
    assert scores[1] == pytest.approx(1.0) and scores[0] < 0.5
    # Alone in its pool it is the best BM25 score, yet it holds half of the question's words.
    assert lexical_scores("Zorblatt budget", ["the budget"])[0] == pytest.approx(0.5)


def test_dedupe_keeps_the_best_dense_score():
    pool = [cand("hello there", 0.3, 5.0, level="micro"), cand("hello there", 0.6, 5.0, level="meso"),
            cand("hello there", 0.4, 5.0, kind="subtitle")]  # another kind: another item
    ranked = rerank("hello", pool)
    assert len(ranked) == 2
    assert {(r.candidate.evidence.kind, r.dense, r.candidate.level) for r in ranked} == \
        {("speech", 0.6, "meso"), ("subtitle", 0.4, "micro")}


def test_order_first_and_last():
    pool = [cand("the goal by Smith", 0.70, 100.0), cand("a goal by Smith", 0.72, 10.0),
            cand("Smith scores a goal", 0.68, 50.0), cand("the crowd sings", 0.10, 0.0),
            cand("half time talk", 0.15, 200.0)]
    plain = rerank("goal Smith", pool)
    assert plain[0].candidate.evidence.start == 10.0
    first = rerank("goal Smith", pool, order="first")
    assert [r.candidate.evidence.start for r in first[:3]] == [10.0, 50.0, 100.0]
    last = rerank("goal Smith", pool, order="last")
    assert [r.candidate.evidence.start for r in last[:3]] == [100.0, 50.0, 10.0]
    # Weak matches never jump ahead, however late or early they are.
    assert {r.candidate.evidence.start for r in last[3:]} == {0.0, 200.0}
    assert {r.candidate.evidence.start for r in first[3:]} == {0.0, 200.0}
    # Words alone do not make a match: a cosine under the floor stays behind the best.
    lexical_only = [cand("Smith goal", 0.30, 100.0), cand("Smith goal", 0.15, 5.0)]
    plain = rerank("goal Smith", lexical_only)
    assert plain[1].relevance >= 0.8 * plain[0].relevance
    assert rerank("goal Smith", lexical_only, order="first")[0].candidate.evidence.start == 100.0


def test_cross_scores_replace_the_dense_term():
    pool = [cand("a talk about money", 0.8, 0.0), cand("the treasurer's report on money", 0.3, 30.0)]
    assert rerank("money", pool)[0].candidate is pool[0]
    ranked = rerank("money", pool, cross_scores=[-4.0, 6.0])
    assert ranked[0].candidate is pool[1]
    assert ranked[0].cross == pytest.approx(1 / (1 + math.exp(-6.0)))
    assert ranked[0].dense == 0.3  # the cosine is kept as it was
    with pytest.raises(ValueError):
        rerank("money", pool, cross_scores=[1.0])


def test_density_and_time_terms():
    pool = [cand("same words here", 0.5, 0.0, density=-1.0), cand("same words here", 0.5, 10.0, density=2.0)]
    assert rerank("words", pool)[0].candidate.evidence.start == 10.0
    flat = [cand("same words here", 0.5, 0.0), cand("same words here", 0.5, 10.0)]
    late = rerank("zzz", flat, RerankWeights(time=1.0))
    assert late[0].candidate.evidence.start == 10.0 and late[0].relevance > late[1].relevance


def test_empty_and_degenerate_pools():
    assert rerank("anything", []) == []
    one = rerank("budget", [cand("the budget", 0.4)])
    assert len(one) == 1 and one[0].lexical == pytest.approx(1.0)
    stop_only = rerank("what is the", [cand("a b c", 0.4, 0.0), cand("budget talk", 0.6, 5.0)])
    assert [r.dense for r in stop_only] == [0.6, 0.4] and all(r.lexical == 0.0 for r in stop_only)
    # Only stopwords in the pool, and a query with no content: no crash, relevance = dense.
    no_words = rerank("budget", [cand("the of", 0.4, 0.0), cand("a an", 0.2, 5.0)])
    assert [r.lexical for r in no_words] == [0.0, 0.0]
    # Nothing measurable at all (no content words, lexical the only weight): relevance = dense.
    lexical_only = RerankWeights(dense=0.0, lexical=1.0, density=0.0)
    assert rerank("", [cand("x", 0.7)], lexical_only)[0].relevance == 0.7


def test_rerank_validates():
    with pytest.raises(ValueError):
        rerank("q", [cand("x", 0.5)], order="middle")
    with pytest.raises(ValueError):
        RerankWeights(dense=-1.0)
    with pytest.raises(ValueError):
        RerankWeights(0.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        Candidate(ev("x", 0.5), level="nano")
    with pytest.raises(ValueError):
        rerank(None, [])
