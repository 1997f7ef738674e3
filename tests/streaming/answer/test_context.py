"""Choosing the answer model's context under a token budget."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.answer.context import select_context
from streaming.answer.rerank import Ranked
from streaming.records import Candidate, Evidence


# ---------------------------------------------------------------- context

def ev(text, score, start=0.0, end=None, stream="s", kind="speech", also=()):
    return Evidence(stream, start, start + 3.0 if end is None else end, text, score, kind=kind, also=also)


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
