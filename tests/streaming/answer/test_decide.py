"""The decisions of one question (streaming.answer.decide): hand-built candidates, no models, no Ray.

Each test pins what a user sees: found or not, the answer's quote or NOT_FOUND_ANSWER, the cited
stream and span, the warnings; never the exact wording around them."""

from __future__ import annotations

import pytest

from streaming.answer import decide
from streaming.answer import grounding as g
from streaming.answer.decide import (BASELINE_K, CONTEXT_MIN_RELEVANCE, Ranking, answer_after_generation,
                                     answer_without_model, approx_tokens, list_instead, plan_question,
                                     rank_baseline, rank_listing, select)
from streaming.answer.rerank import Ranked
from streaming.records import Candidate, Evidence, Word
from streaming.search.retrieve import Retrieved

BUDGET = 2000
ROWING = "The city rowing team won the regional final by two lengths."


def ev(text, score=0.5, start=0.0, end=None, stream="news", kind="speech", also=()):
    return Evidence(stream, start, start + 3.0 if end is None else end, text, score, kind=kind, also=also)


def timed(text, start, step=0.5):
    """Word records for ``text``, one every ``step`` seconds from ``start``."""
    return tuple(Word(" " + w, start + i * step, start + (i + 1) * step) for i, w in enumerate(text.split()))


def ranked(text, relevance=0.6, dense=None, lexical=0.0, start=0.0, stream="news", kind="speech",
           parent="", words=(), also=()):
    e = ev(text, relevance if dense is None else dense, start, stream=stream, kind=kind, also=also)
    return Ranked(Candidate(e, parent=parent, words=words), relevance,
                  relevance if dense is None else dense, lexical)


def selection(ranking: Ranking, question="Who won the rowing final?", k=10):
    return select(ranking, question, k, BUDGET)


def decided(ranking: Ranking, question="Who won the rowing final?", generate=True, model_error=None):
    return answer_without_model(question, ranking, selection(ranking, question), generate, model_error)


# ---------------------------------------------------------------- what to search for

def test_plan_embeds_a_speech_question_whole_and_matches_its_content_words():
    plan = plan_question("Who won the regional rowing final?")
    assert not plan.listing and not plan.when
    assert plan.query_text == "Who won the regional rowing final?"
    assert "rowing" in plan.content and "who" not in plan.content.split()
    assert plan.anchor_text is None


def test_plan_embeds_only_the_content_words_of_a_visual_question():
    plan = plan_question("When is an aircraft shown?")
    assert plan.when and not plan.listing
    assert plan.query_text == "aircraft"  # matches the label "airliner", not the word "shown"
    assert "said" not in plan.modalities and plan.kinds >= {"ocr"}


def test_time_words_become_the_window_and_leave_the_question():
    plan = plan_question("What did she say about taxes in the last 5 minutes?")
    assert plan.time_words.last_s == 300.0
    assert "minutes" not in plan.query_text and "taxes" in plan.query_text


def test_a_time_word_only_question_lists_the_window():
    plan = plan_question("what is said in the last 10 seconds?")
    assert plan.listing and plan.query_text is None
    assert plan.time_words.last_s == 10.0


def test_a_question_naming_no_content_lists_what_was_shown():
    plan = plan_question("What text appears on screen?")
    assert plan.listing and plan.query_text is None and plan.modalities == ("shown",)


def test_an_after_phrase_is_embedded_as_the_anchor():
    plan = plan_question("what was said after the title card")
    assert plan.anchor_text == "the title card"


# ---------------------------------------------------------------- the shown question's fallback

def test_a_shown_question_that_found_nothing_lists_the_window():
    plan = plan_question("What book title is written on the screen?")
    assert plan.modalities == ("shown",) and not plan.listing
    assert list_instead(plan, [])
    assert list_instead(plan, [ranked("days of thunder", 0.3, dense=0.1, kind="ocr")])
    assert not list_instead(plan, [ranked("The Book of Days", 0.8, dense=0.6, kind="ocr")])


def test_only_a_shown_only_search_falls_back():
    assert not list_instead(plan_question("Who won the rowing final?"), [])
    assert not list_instead(plan_question("What text appears on screen?"), [])  # already a listing


# ---------------------------------------------------------------- ranking

def test_a_listing_is_in_time_order_and_cut_to_k():
    late, early_b, early_a = (Candidate(ev("late", 0.9, 30.0)), Candidate(ev("b", 0.1, 5.0, stream="b")),
                              Candidate(ev("a", 0.2, 5.0, stream="a")))
    got = rank_listing([Retrieved((late, early_b), None, None, 40.0), Retrieved((early_a,), None, None, 9.0)], 2)
    assert [r.candidate.evidence.text for r in got] == ["a", "b"]
    assert got[0] == Ranked(early_a, 0.2, 0.2, 0.0)


def test_a_listing_about_a_moment_cites_what_lies_at_that_moment_first():
    """ "What is said at 1:16?" lists the ±5 s around it; the segment that spans 1:16 is cited, not
    the one that began earlier and runs into the window. "At the very end": the last one."""
    before, at, after = (Candidate(ev("before", 1.0, 66.5, 72.2)), Candidate(ev("at", 1.0, 74.6, 77.7)),
                         Candidate(ev("after", 1.0, 78.0, 81.0)))
    window = [Retrieved((before, at, after), 71.0, 81.0, 88.0)]
    got = rank_listing(window, 3, plan_question("What is said at 1:16?").time_words)
    assert [r.candidate.evidence.text for r in got] == ["at", "after", "before"]
    got = rank_listing(window, 3, plan_question("What is said at the very end?").time_words)
    assert got[0].candidate.evidence.text == "after"
    # No moment: time order, as before.
    got = rank_listing(window, 3, plan_question("What is said in the last 20 seconds?").time_words)
    assert [r.candidate.evidence.text for r in got] == ["before", "at", "after"]


def test_the_baseline_ranks_by_cosine_then_stream_then_time():
    r = rank_baseline("When does he say taxes?",
                      [[ev("x", 0.3, 9.0, stream="b"), ev("y", 0.3, 1.0, stream="b")], [ev("z", 0.3, 5.0, stream="a"),
                                                                                       ev("w", 0.5, 50.0, stream="c")]],
                      ["stream d did not answer: TimeoutError"])
    assert [x.candidate.evidence.text for x in r.ranked] == ["w", "z", "y", "x"]
    assert all(x.candidate.level == "direct" and x.lexical == 0.0 and x.dense == x.relevance for x in r.ranked)
    assert r.baseline and r.when and not r.listing and r.warnings == ("stream d did not answer: TimeoutError",)


# ---------------------------------------------------------------- found or not

@pytest.mark.parametrize("dense, lexical, found", [
    (g.STRONG_DENSE, 0.0, True),  # a strong dense match alone
    (g.WEAK_DENSE, 0.3, True),  # a weaker one that shares a content word
    (0.3, 0.0, False),  # weaker, and no word in common
    (0.1, 1.0, False),  # a shared word cannot lift noise
])
def test_manta_bar(dense, lexical, found):
    d = decided(Ranking((ranked(ROWING, 0.5, dense=dense, lexical=lexical),)), generate=False)
    assert d.found is found
    assert (d.answer == g.NOT_FOUND_ANSWER) is not found
    assert bool(d.citations()) is found


def test_the_baseline_needs_only_the_weak_dense_bar():
    item = ranked(ROWING, 0.3, dense=0.3)
    assert selection(Ranking((item,), baseline=True)).found
    assert not selection(Ranking((item,))).found  # manta asks more of a match with no shared word
    assert not selection(Ranking((ranked(ROWING, 0.1, dense=0.1),), baseline=True)).found


def test_nothing_retrieved_is_not_found():
    d = decided(Ranking(()))
    assert not d.found and d.answer == g.NOT_FOUND_ANSWER and d.citations() == [] and d.span is None


def test_not_found_cites_nothing_even_with_a_best_candidate():
    r = Ranking((ranked(ROWING, 0.2, dense=0.1),))
    sel = selection(r)
    assert not sel.found and sel.citations() == [] and sel.picked == ()
    assert sel.evidence[0].text == ROWING  # still shown as evidence


# ---------------------------------------------------------------- listings

def test_a_listing_is_found_whatever_the_scores_and_lists_every_item():
    items = (ranked("BREAKING NEWS", 0.05, start=1.0, kind="ocr"), ranked("Sunny and warm", 0.02, start=8.0, kind="ocr"))
    r = Ranking(items, listing=True, modalities=("shown",))
    d = decided(r, "What text appears on screen?")
    assert d.found
    assert "BREAKING NEWS" in d.answer and "Sunny and warm" in d.answer
    assert d.answer.index("BREAKING NEWS") < d.answer.index("Sunny and warm")
    assert selection(r).picked == ()  # no answer model reads a listing
    assert d.citations() == [{"stream": "news", "start": 1.0, "end": 4.0}]


def test_a_listing_folds_repeated_on_screen_text():
    title = ranked("THE BOOK OF DAYS", 0.4, start=2.0, kind="ocr", also=((40.0, 43.0), (90.0, 93.0)))
    d = decided(Ranking((title,), listing=True, modalities=("shown",)), "What text appears on screen?")
    assert d.answer.count("THE BOOK OF DAYS") == 1
    assert "0:40.0" in d.answer and "1:30.0" in d.answer


# ---------------------------------------------------------------- "when"

DANISH = "published in English, French, Flemish and Danish languages."


def test_when_cites_the_matching_words_not_the_segment():
    best = ranked(DANISH, 0.7, dense=0.6, start=80.0, words=timed(DANISH, 80.0))
    r = Ranking((best,), when=True)
    d = decided(r, "When does the narrator say the word Danish?")
    assert d.found and d.span == g.Citation("news", 83.0, 83.5)  # "Danish", the 7th word
    assert d.citations() == [{"stream": "news", "start": 83.0, "end": 83.5}]
    assert "1:23.0" in d.answer and DANISH in d.answer


def test_when_without_word_times_cites_the_whole_segment():
    r = Ranking((ranked(DANISH, 0.7, dense=0.6, start=80.0),), when=True)
    assert decided(r, "When does the narrator say the word Danish?").span == g.Citation("news", 80.0, 83.0)


def test_the_baseline_does_not_refine_a_when_span():
    best = ranked(DANISH, 0.7, dense=0.6, start=80.0, words=timed(DANISH, 80.0))
    r = Ranking((best,), when=True, baseline=True)
    assert decided(r, "When does the narrator say the word Danish?").span == g.Citation("news", 80.0, 83.0)


# ---------------------------------------------------------------- context selection

def test_context_keeps_evidence_near_the_best_and_puts_the_best_first():
    best = ranked(ROWING, 0.9, dense=0.6, lexical=0.4, start=20.0)
    near = ranked("the rowing final is on sunday", 0.9 * CONTEXT_MIN_RELEVANCE + 0.02, dense=0.5, start=1.0)
    weak = ranked("weather for the weekend", 0.9 * CONTEXT_MIN_RELEVANCE - 0.02, dense=0.45, start=10.0)
    sel = selection(Ranking((best, near, weak)))
    assert sel.picked[0] is best  # best first though it is the latest in time
    assert weak not in sel.picked and near in sel.picked
    assert sel.chosen[0].text == ROWING and sel.lines[0].startswith("[1]")


def test_context_brings_the_parent_summary_once():
    a = ranked(ROWING, 0.9, dense=0.6, lexical=0.4, parent="sport results of the evening")
    b = ranked("the rowing crowd cheered", 0.85, dense=0.5, start=4.0, parent="sport results of the evening")
    assert selection(Ranking((a, b))).background == ("sport results of the evening",)


def test_the_baseline_reads_its_top_chunks():
    items = tuple(ranked(f"chunk {i}", 0.6 - i / 100, dense=0.6 - i / 100, start=30.0 * i) for i in range(5))
    sel = selection(Ranking(items, baseline=True))
    assert sel.picked == items[:BASELINE_K] and sel.background == ()


def test_evidence_shows_the_reranked_relevance_and_stops_at_k():
    items = (ranked(ROWING, 0.91234, dense=0.5, lexical=0.3), ranked("other", 0.6, dense=0.3, start=9.0))
    sel = selection(Ranking(items), k=1)
    assert [e.score for e in sel.evidence] == [0.9123]


# ---------------------------------------------------------------- no answer model, or none asked for

def test_no_generation_answers_with_the_quote_and_no_warning():
    d = decided(Ranking((ranked(ROWING, 0.9, dense=0.6),)), generate=False, model_error="answer_model is off")
    assert d.found and ROWING in d.answer and d.warnings == ()
    assert d.citations() == [{"stream": "news", "start": 0.0, "end": 3.0}]


def test_no_answer_model_answers_with_the_quote_and_says_why():
    d = decided(Ranking((ranked(ROWING, 0.9, dense=0.6),)), model_error="weights missing")
    assert d.found and ROWING in d.answer
    assert d.warnings == ("no answer model: weights missing",)


def test_a_model_to_ask_leaves_the_answer_to_generation():
    assert decided(Ranking((ranked(ROWING, 0.9, dense=0.6),))) is None


# ---------------------------------------------------------------- after generation

def _generated(dense, text, declined, words=()):
    sel = selection(Ranking((ranked(ROWING, 0.9, dense=dense, lexical=0.4, start=20.0, words=words),)))
    return answer_after_generation(text, declined, sel)


def test_declined_with_weak_retrieval_is_not_found():
    d = _generated(g.STRONG_DENSE - 0.01, "NOT FOUND", True)
    assert not d.found and d.answer == g.NOT_FOUND_ANSWER and d.citations() == []


def test_declined_with_strong_retrieval_falls_back_to_the_quote():
    d = _generated(g.STRONG_DENSE, "NOT FOUND", True)
    assert d.found and ROWING in d.answer and d.answer != g.NOT_FOUND_ANSWER
    assert d.citations() == [{"stream": "news", "start": 20.0, "end": 23.0}]


def test_a_sentence_is_answered_with_its_quote_and_linked_citations():
    d = _generated(0.6, "The city team won [1].", False)
    assert d.found and "The city team won" in d.answer and ROWING in d.answer
    assert "[1]" not in d.answer and "[news 0:20.0–0:23.0]" in d.answer


def test_the_citation_narrows_to_the_words_the_sentence_repeats():
    words = timed(ROWING, 20.0, step=0.25)  # 11 words: 20.0 … 22.75
    d = _generated(0.6, "The regional final was won by two lengths.", False, words)
    assert d.found and d.span == g.Citation("news", 21.0, 22.75)  # "won … lengths", not "The city rowing team"
    assert d.citations() == [{"stream": "news", "start": 21.0, "end": 22.75}]


def test_a_question_whose_answer_is_a_number_is_not_found_in_evidence_without_one():
    congrats = "You have successfully installed and executed the Asterisk open-source PBX."
    strong = Ranking((ranked(congrats, 0.9, dense=0.63, lexical=0.5),))
    sel = selection(strong, "Which version number of Asterisk was installed?")
    assert not sel.found and sel.citations() == []
    assert not selection(strong, "What phone number should I call for technical support?").found
    assert selection(strong, "What was installed?").found  # no number asked for: found as before
    ivr = Ranking((ranked("For sales, press one. For support, press two.", 0.9, dense=0.6, lexical=0.5),))
    assert selection(ivr, "Which number do I press for support?").found  # "two" is a number
    assert selection(Ranking((ranked("Version 18 is out now.", 0.9, dense=0.6),)),
                     "Which version number is out?").found


def test_an_answer_read_from_the_second_evidence_cites_and_quotes_the_second():
    """The title names the manifesto, so it ranks first; the model answers from the segment that
    says where they met. The citation follows the answer's words, not the ranking."""
    title = "Manifesto of the Communist Party by Karl Marx and Frederick Engels."
    london = "communists of various nationalities have assembled in London and sketched the following manifesto"
    sel = selection(Ranking((ranked(title, 0.9, dense=0.7, start=13.0, words=timed(title, 13.0, 0.3)),
                             ranked(london, 0.8, dense=0.65, start=74.0, words=timed(london, 74.0, 0.4)))),
                    "In which city did communists from many countries gather to sketch the manifesto?")
    assert len(sel.picked) == 2
    d = answer_after_generation("The communists assembled in London and sketched the manifesto.", False, sel)
    assert d.found and london in d.answer and title not in d.answer
    assert d.span.start >= 74.0 and d.citations()[0]["start"] >= 74.0


def test_a_failed_model_still_answers_with_the_quote():
    d = _generated(0.6, "", False)
    assert d.found and ROWING in d.answer and d.citations() == [{"stream": "news", "start": 20.0, "end": 23.0}]


# ---------------------------------------------------------------- budget arithmetic

def test_approx_tokens_errs_on_the_generous_side():
    assert approx_tokens("") == 1
    assert approx_tokens("x" * 35) == 10 and approx_tokens("x" * 36) == 11
    assert decide.BASELINE_K == 3
