"""Query logic without models: time words (streaming.question.timewords), reranking (streaming.answer.rerank) and the
answer model's context under a token budget (streaming.answer.context). Tiny fake vectors; runs in seconds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.answer.context import select_context
from streaming.records import Evidence
from streaming.answer.rerank import Candidate, Ranked, RerankWeights, lexical_scores, rerank
from streaming.question.timewords import TimeIntent, parse_time_words

STREAM_END = 600.0


# ---------------------------------------------------------------- time words

@pytest.mark.parametrize("question, seconds", [
    ("What did she say in the last 5 minutes?", 300.0),
    ("what was said in the past 30 seconds", 30.0),
    ("what topics came up over the last hour", 3600.0),
    ("what was said in the last five minutes", 300.0),
    ("what happened in the last minute", 60.0),
    ("anything in the last half a minute", 30.0),
    ("what did they say in the past 2 hours", 7200.0),
    ("in the last twenty-five seconds what happened", 25.0),
    ("during the last 1 minute 30 seconds what was shown", 90.0),
    ("anything said recently?", 300.0),
])
def test_last_window(question, seconds):
    t = parse_time_words(question)
    assert t.last_s == seconds and t.order is None and t.first_s is None


@pytest.mark.parametrize("question, seconds", [
    ("what was shown in the first minute", 60.0),
    ("in the first 20 seconds what did he say", 20.0),
    ("in the first one and a half minutes", 90.0),
    ("what did they say at the start", 60.0),
    ("what was at the beginning of the video", 60.0),
])
def test_first_window(question, seconds):
    t = parse_time_words(question)
    assert t.first_s == seconds and t.order is None and t.last_s is None


@pytest.mark.parametrize("question, at", [
    ("what was said at 1:05", 65.0),
    ("what is on screen at 0:42?", 42.0),
    ("what was said at 90 seconds", 90.0),
    ("what happened around 2 minutes in", 120.0),
    ("what was shown at 1:02:03", 3723.0),
    ("who spoke at the 2 minute mark", 120.0),
    ("what was said 2 minutes into the video about cats", 120.0),
    ("what is shown at about 1:10", 70.0),
])
def test_at(question, at):
    assert parse_time_words(question).at == at


@pytest.mark.parametrize("question, span", [
    ("what was said between 0:30 and 1:00", (30.0, 60.0)),
    ("what was said from 10 s to 20 s", (10.0, 20.0)),
    ("what was said between 10 and 20 seconds", (10.0, 20.0)),
    ("what was said between 1m30s and 2m", (90.0, 120.0)),
    ("0:30-1:00 what did he say", (30.0, 60.0)),
    ("from 1:00 until 2:30 what was shown", (60.0, 150.0)),
])
def test_between(question, span):
    assert parse_time_words(question).between == span


def test_numbers_without_units_are_no_time():
    t = parse_time_words("what was said between 2 and 3 people")
    assert t.between is None and t.content == "what was said between 2 and 3 people"
    assert parse_time_words("what happened at 5").at is None


def test_end_and_ago_and_bounds():
    assert parse_time_words("what was said at the end").at_end
    assert parse_time_words("what happened towards the end of the stream").at_end
    assert parse_time_words("what did he say 5 minutes ago").ago == 300.0
    assert parse_time_words("what did they say half an hour ago").ago == 1800.0
    t = parse_time_words("what happened after the first 2 minutes")  # a bound, not the first 2 min
    assert t.between == (120.0, math.inf) and t.first_s is None
    assert parse_time_words("what did he say before 2:00").between == (0.0, 120.0)


@pytest.mark.parametrize("question, order, content", [
    ("When did Bob first mention the budget?", "first", "When did Bob mention the budget?"),
    ("the first time he laughed", "first", "he laughed"),
    ("earliest mention of rain", "first", "mention of rain"),
    ("what was the last thing said", "last", "what was the thing said"),
    ("the last time taxes came up", "last", "taxes came up"),
    ("when did he say bye for the last time", "last", "when did he say bye"),
    ("when was the budget most recently mentioned", "last", "when was the budget mentioned"),
])
def test_order_is_not_a_window(question, order, content):
    t = parse_time_words(question)
    assert (t.order, t.content) == (order, content)
    assert t.last_s is None and t.first_s is None


def test_last_time_vs_last_minutes_together():
    t = parse_time_words("when did he last mention taxes in the last 2 minutes")
    assert (t.order, t.last_s, t.content) == ("last", 120.0, "when did he mention taxes")
    t = parse_time_words("in the first minute, when did X first speak")
    assert (t.order, t.first_s) == ("first", 60.0)


def test_anchors():
    t = parse_time_words("what happened after the title card")
    assert (t.after, t.before, t.content) == ("the title card", None, "what happened")
    t = parse_time_words("what did he do after he says hello and before the break?")
    assert (t.after, t.before, t.content) == ("he says hello", "the break", "what did he do?")
    t = parse_time_words("when did he first speak after the break")
    assert (t.order, t.after, t.content) == ("first", "the break", "when did he speak")
    t = parse_time_words("what happened after the first goal")  # "first" belongs to the anchor
    assert (t.after, t.order) == ("the first goal", None)
    assert parse_time_words("before the break what was said").before == "the break"


@pytest.mark.parametrize("question", ["have you seen this before?", "what happened after that",
                                      "what did he say after"])
def test_no_anchor_without_a_phrase(question):
    t = parse_time_words(question)
    assert t.after is None and t.before is None and t.content == question


def test_content_stripping():
    question = "what was said between 0:30 and 1:00 and after the intro?"
    assert parse_time_words(question).content == "what was said?"
    assert parse_time_words("what did they say in the first 10 sec of the stream about rain").content == \
        "what did they say about rain"
    # Nothing but time words: the question itself is what to search.
    assert parse_time_words("In the last   5 minutes?").content == "In the last 5 minutes?"
    assert parse_time_words("what is the score").content == "what is the score"


def test_resolve_on_a_600_s_stream():
    assert parse_time_words("what was said in the last 5 minutes").resolve(STREAM_END) == (300.0, None)
    assert parse_time_words("what was said in the first minute").resolve(STREAM_END) == (0.0, 60.0)
    assert parse_time_words("what was said at the end").resolve(STREAM_END) == (540.0, None)
    assert parse_time_words("what was said at the end").resolve(100.0) == (80.0, None)  # 20 % of it
    assert parse_time_words("what was said at 1:05").resolve(STREAM_END) == (60.0, 70.0)
    assert parse_time_words("what was said at 0:02").resolve(STREAM_END) == (0.0, 7.0)
    assert parse_time_words("between 0:30 and 1:00 what").resolve(STREAM_END) == (30.0, 60.0)
    assert parse_time_words("what happened after 1:05").resolve(STREAM_END) == (65.0, None)
    assert parse_time_words("what was said 2 minutes ago").resolve(STREAM_END) == (456.0, 504.0)
    assert parse_time_words("what was said").resolve(STREAM_END) == (None, None)
    assert TimeIntent(last_s=3600.0).resolve(STREAM_END) == (0.0, None)
    # Several constraints intersect; contradicting ones leave nothing (start > end).
    assert TimeIntent(first_s=60.0, between=(30.0, 90.0)).resolve(STREAM_END) == (30.0, 60.0)
    assert TimeIntent(last_s=300.0, at_end=True).resolve(STREAM_END) == (540.0, None)
    start, end = TimeIntent(first_s=60.0, last_s=300.0).resolve(STREAM_END)
    assert start > end


def test_time_words_validate():
    with pytest.raises(ValueError):
        parse_time_words("   ")
    with pytest.raises(ValueError):
        parse_time_words(None)
    with pytest.raises(ValueError):
        TimeIntent(last_s=-1.0)
    with pytest.raises(ValueError):
        TimeIntent(between=(5.0, 1.0))
    with pytest.raises(ValueError):
        TimeIntent().resolve(float("nan"))


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


# ---------------------------------------------------------------- context

def words(text: str) -> int:
    return len(text.split())


def unit(*xs):
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def ranked(text, relevance, start=0.0, stream="s", parent="", vector=None, density=None, kind="speech"):
    c = Candidate(ev(text, relevance, start, stream=stream, kind=kind), density=density, parent=parent,
                  vector=vector)
    return Ranked(c, relevance, relevance, 0.0)


def test_prompt_lines_format_and_time_order():
    items = [ranked("second thing", 0.9, 15.0), ranked("first thing", 0.8, 12.0, parent="the opening talk"),
             ranked("a sign", 0.7, 3.0, kind="ocr")]
    ctx = select_context(items, 1000, words)
    assert ctx.prompt_lines() == [
        "[1] (s 0:03.0–0:06.0) On screen: “a sign”",
        "[2] (s 0:12.0–0:15.0) Said: “first thing”",
        "    context: the opening talk",
        "[3] (s 0:15.0–0:18.0) Said: “second thing”",
    ]
    assert ctx.tokens == sum(words(line) for line in ctx.prompt_lines()) and ctx.dropped == 0


def test_streams_grouped_best_stream_first():
    items = [ranked("b late", 0.9, 50.0, stream="b"), ranked("a early", 0.8, 1.0, stream="a"),
             ranked("b early", 0.7, 5.0, stream="b")]
    ctx = select_context(items, 1000, words)
    assert [(i.ranked.candidate.evidence.stream, i.ranked.candidate.evidence.start) for i in ctx.items] == \
        [("b", 5.0), ("b", 50.0), ("a", 1.0)]


def test_parent_paid_once():
    parent = "the committee discussed the annual budget and the new hires at length"
    items = [ranked("budget is up", 0.9, 10.0, parent=parent, vector=unit(1, 0, 0)),
             ranked("hires are frozen", 0.8, 14.0, parent=parent, vector=unit(0, 1, 0))]
    ctx = select_context(items, 1000, words)
    assert len(ctx.items) == 2 and [i.parent_included for i in ctx.items] == [True, False]
    assert ctx.prompt_lines().count("    context: " + parent) == 1
    lines = (words("[1] (s 0:10.0–0:13.0) Said: “budget is up”")
             + words("[2] (s 0:14.0–0:17.0) Said: “hires are frozen”"))
    assert ctx.tokens == lines + words("    context: " + parent)


def test_a_sibling_of_a_chosen_segment_is_cheaper():
    p = "a long meso summary about the harbour the ferry and the new bridge toll plan"
    q = "a long meso summary about the weather the rain and the river levels this week"
    items = [ranked("the toll plan", 0.9, 10.0, parent=p, vector=unit(1, 0, 0, 0)),
             ranked("rain is coming", 0.81, 50.0, parent=q, vector=unit(0, 1, 0, 0)),
             ranked("ferry times change", 0.8, 20.0, parent=p, vector=unit(0, 0, 1, 0))]
    ctx = select_context(items, 1000, words, max_items=2)
    assert [i.ranked.candidate.evidence.text for i in ctx.items] == ["the toll plan", "ferry times change"]


def test_redundancy_prefers_something_new():
    best = ranked("the bridge opens on monday", 0.95, 10.0, vector=unit(1, 0, 0))
    near_dup = ranked("the bridge opens monday morning", 0.9, 40.0, vector=unit(0.99, 0.1, 0))
    other = ranked("tolls start in june", 0.6, 70.0, vector=unit(0, 0, 1))
    ctx = select_context([best, near_dup, other], 1000, words, max_items=2)
    assert {i.ranked.candidate.evidence.start for i in ctx.items} == {10.0, 70.0}
    # Without vectors the word overlap stands in.
    plain = [ranked(r.candidate.evidence.text, r.relevance, r.candidate.evidence.start)
             for r in (best, near_dup, other)]
    ctx = select_context(plain, 1000, words, redundancy=1.0, max_items=2)
    assert {i.ranked.candidate.evidence.start for i in ctx.items} == {10.0, 70.0}
    # No redundancy penalty: the near duplicate wins on relevance.
    ctx = select_context([best, near_dup, other], 1000, words, redundancy=0.0, max_items=2)
    assert {i.ranked.candidate.evidence.start for i in ctx.items} == {10.0, 40.0}


def test_best_item_always_first_even_when_expensive():
    long_text = " ".join(["word"] * 40)
    best = ranked(long_text, 0.9, 100.0, vector=unit(1, 0, 0))
    cheap = [ranked(f"cheap {i}", 0.85, float(i), vector=unit(0, 1, i + 1)) for i in range(10)]
    budget = words(f"[1] (s 1:40.0–1:43.0) Said: “{long_text}”") + 8
    ctx = select_context([best, *cheap], budget, words)
    assert best in [i.ranked for i in ctx.items]
    assert ctx.tokens <= budget
    # ... but it is skipped when it cannot fit at all, and the rest still fill the budget.
    ctx = select_context([best, *cheap], 20, words)
    assert best not in [i.ranked for i in ctx.items] and ctx.items and ctx.tokens <= 20


def test_items_that_do_not_fit_are_skipped_and_limits_hold():
    items = [ranked("short one", 0.9, 0.0), ranked(" ".join(["long"] * 50), 0.8, 5.0),
             ranked("short two", 0.7, 9.0, vector=None), ranked("too weak", 0.05, 20.0)]
    ctx = select_context(items, 20, words, min_relevance=0.1)
    assert [i.ranked.candidate.evidence.text for i in ctx.items] == ["short one", "short two"]
    assert ctx.dropped == 2 and ctx.budget == 20
    assert len(select_context(items, 1000, words, max_items=1).items) == 1
    assert select_context([], 100, words).items == ()
    with pytest.raises(ValueError):
        select_context(items, -1, words)
    with pytest.raises(ValueError):
        select_context(items, 10, words, max_items=0)
    with pytest.raises(ValueError):
        select_context(items, 10, lambda s: -1)


_TEXT = st.lists(st.sampled_from(["budget", "goal", "rain", "bridge", "tax", "the", "a", "new"]),
                 min_size=1, max_size=12).map(" ".join)


@st.composite
def pools(draw):
    n = draw(st.integers(0, 15))
    parents = ["", "summary one about budget", "summary two about the rain and the bridge"]
    items = []
    for i in range(n):
        vec = draw(st.one_of(st.none(), st.lists(st.floats(-1, 1), min_size=3, max_size=3)))
        vector = None if vec is None or not any(vec) else np.array(vec, dtype=np.float32)
        items.append(ranked(draw(_TEXT), draw(st.floats(0, 1)), draw(st.floats(0, 500)),
                            stream=draw(st.sampled_from(["a", "b"])), parent=draw(st.sampled_from(parents)),
                            vector=vector, density=draw(st.one_of(st.none(), st.floats(-2, 2)))))
    items.sort(key=lambda r: -r.relevance)
    return items


@settings(max_examples=150, deadline=None)
@given(pool=pools(), budget=st.integers(0, 120), max_items=st.integers(1, 12),
       redundancy=st.floats(0, 2), counter=st.sampled_from(["words", "chars", "ones"]))
def test_budget_is_never_exceeded(pool, budget, max_items, redundancy, counter):
    # "ones" makes "[1]" dearer than "[2]": the estimate is then too low and the final check must act.
    count = {"words": words, "chars": lambda s: len(s) // 4,
             "ones": lambda s: len(s.split()) + 3 * s.count("1")}[counter]
    ctx = select_context(pool, budget, count, redundancy=redundancy, max_items=max_items)
    lines = ctx.prompt_lines()
    assert ctx.tokens == sum(count(line) for line in lines) <= budget
    assert len(ctx.items) <= max_items and ctx.dropped == len(pool) - len(ctx.items)
    # A parent summary is printed at most once per stream.
    shown = [(i.ranked.candidate.evidence.stream, i.ranked.candidate.parent)
             for i in ctx.items if i.parent_included]
    assert len(shown) == len(set(shown))
    # The best item is in whenever it fits alone.
    if pool and select_context(pool[:1], budget, count, max_items=max_items).items:
        assert pool[0] in [i.ranked for i in ctx.items]
    # Time order within each stream.
    for stream in ("a", "b"):
        starts = [i.ranked.candidate.evidence.start for i in ctx.items
                  if i.ranked.candidate.evidence.stream == stream]
        assert starts == sorted(starts)
