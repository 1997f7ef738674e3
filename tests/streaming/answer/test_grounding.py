"""Grounding rules, the baseline's chunks and wall-clock windows: pure logic, no models.

The baseline test embeds with a bag-of-letters stand-in: it checks chunking and ranking
mechanics, not MiniLM (which the service tests and ``manta eval`` use)."""

from __future__ import annotations

import numpy as np
import pytest

from streaming.answer import grounding as g
from streaming.search.baseline import FixedChunks
from streaming.records import Evidence, MicroSegment, ShownText, Word
from streaming.search.retrieve import RetrievalPlan, wall_window


def words(*items):
    return tuple(Word(t, a, b) for t, a, b in items)


DANISH = words((" published", 80.0, 80.5), (" in", 80.5, 80.6), (" the", 80.6, 80.7),
               (" English,", 81.0, 81.5), (" French,", 81.6, 82.0), (" Flemish", 83.6, 84.1),
               (" and", 84.2, 84.4), (" Danish", 84.48, 84.87), (" languages.", 84.9, 85.6))


@pytest.mark.parametrize("q,expected", [
    ("When does the narrator say the word Danish?", True),
    ("At what point is the title read?", True),
    ("When is the aircraft shown?", True),
    ("When does the preamble begin?", True),
    ("When will the harbour bridge close for repairs?", False),  # asks the world, not the stream
    ("What languages are mentioned?", False),
    ("Who won the rowing final?", False),
])
def test_when_questions_are_recognised(q, expected):
    assert g.is_when(q) is expected


def test_refine_span_times_the_asked_word_not_the_segment():
    assert g.refine_span(DANISH, "When does the narrator say the word Danish?") == (84.48, 84.87)


def test_refine_span_prefers_the_quoted_phrase_in_order():
    span = g.refine_span(DANISH, "When is 'Flemish and Danish' said?")
    assert span == (83.6, 84.87)
    assert g.refine_span(DANISH, "When is the word Portuguese said?") is None
    assert g.refine_span((), "When is Danish said?") is None


def test_found_needs_a_strong_match_or_a_shared_word():
    assert g.retrieval_found(0.6, 0.0)
    assert g.retrieval_found(0.25, 0.4)
    assert not g.retrieval_found(0.25, 0.0)
    assert not g.retrieval_found(0.1, 1.0)


def ev(text, t0, t1, stream="s"):
    return Evidence(stream, t0, t1, text, 0.9)


def test_model_markers_become_citations_and_unknown_ones_vanish():
    numbered = [ev("a", 1.0, 2.0), ev("b", 61.0, 63.5, "t")]
    text, used = g.link_citations("It was Danish [2], not French [7].", numbered)
    assert text == "It was Danish [t 1:01.0–1:03.5], not French ."
    assert used == [2]


def test_stream_linker_joins_split_markers_and_hides_a_refusal():
    numbered = [ev("a", 1.0, 2.0)]
    linker = g.StreamLinker(numbered)
    out = "".join(linker.push(p) for p in ["The speaker asks what you ", "can do [", "1", "] for it."])
    out += linker.flush()
    assert out == "The speaker asks what you can do [s 0:01.0–0:02.0] for it."
    refusal = g.StreamLinker(numbered)
    assert "".join(refusal.push(p) for p in ["NOT", " FOUND", " in the evidence."]) + refusal.flush() == ""
    assert refusal.declined
    short = g.StreamLinker(numbered)
    assert short.push("Yes [1]") == "" and short.flush() == "Yes [s 0:01.0–0:02.0]"
    assert not short.declined


def test_prompt_holds_rules_evidence_and_question():
    msgs = g.build_messages("What was installed?", ["[1] (s 0:00.0–0:03.0) Said: “x”"], ["a summary"])
    assert msgs[0]["role"] == "system" and g.NOT_FOUND in msgs[0]["content"]
    user = msgs[1]["content"]
    assert user.endswith("According to the evidence, what was installed?")
    assert user.index("a summary") < user.index("[1]") < user.index("According")
    with pytest.raises(ValueError):
        g.build_messages("  ", [])


def seg(seq, t0, t1, text, wall=0.0):
    return MicroSegment("s", seq, t0, t1, words((" " + text, t0, t1)), wall=wall)


def embed(texts):
    """Bag of letters, unit norm: a stand-in embedder for the chunking mechanics."""
    out = np.zeros((len(texts), 26), np.float32)
    for i, t in enumerate(texts):
        for ch in t.lower():
            if "a" <= ch <= "z":
                out[i, ord(ch) - 97] += 1
        out[i] /= max(np.linalg.norm(out[i]), 1e-6)
    return out


def test_baseline_chunks_are_fixed_30s_with_shown_text_and_grow_online():
    segs = [seg(0, 1, 4, "zzz zzz"), seg(1, 31, 34, "apple apple"), seg(2, 61, 63, "kiwi")]
    shown = [ShownText(0, "ocr", "BANANA", 40, 45)]
    chunks = FixedChunks(embed)
    top = chunks.search(embed(["apple banana"])[0], 2, segs[:2], shown, 50.0, "s")
    assert [(e.start, e.end) for e in top][0] == (30.0, 50.0)  # the open chunk is searchable
    assert "BANANA" in top[0].text and top[0].kind == "chunk"
    assert len(chunks.chunks) == 1  # only [0, 30) is complete
    top = chunks.search(embed(["kiwi"])[0], 1, segs, shown, 64.0, "s")
    assert (top[0].start, top[0].end) == (60.0, 64.0)
    assert len(chunks.chunks) == 2 and chunks.chunks[1].t1 == 60.0
    assert chunks.search(embed(["kiwi"])[0], 3, segs, shown, 64.0, "s", start=0, end=20)[0].start == 0.0


def test_wall_window_maps_ingest_time_to_media_time():
    segs = [seg(i, 3.0 * i, 3.0 * i + 3, "x", wall=1000.0 + i) for i in range(10)]
    assert wall_window(segs, 1003.0, 1005.5) == (9.0, 18.0)
    assert wall_window(segs, None, 999.0)[1] < 0  # before anything was ingested
    assert wall_window(segs, 2000.0, None)[0] == float("inf")
    assert wall_window(segs, None, None) == (None, None)


def test_plan_rejects_bad_spans():
    with pytest.raises(ValueError):
        RetrievalPlan(None, 5, frozenset(), start=10, end=5)
    with pytest.raises(ValueError):
        RetrievalPlan(None, 0, frozenset())


SPECTRE = words((" preamble", 19.5, 20.2), (" A", 20.3, 20.4), (" specter", 20.4, 20.9), (" is", 20.9, 21.0),
                (" haunting", 21.0, 21.5), (" Europe,", 21.5, 22.0), (" the", 22.1, 22.2),
                (" specter", 22.2, 22.6), (" of", 22.6, 22.7), (" communism.", 22.7, 23.3),
                (" All", 24.0, 24.2), (" the", 24.2, 24.3), (" powers", 24.3, 24.6), (" of", 24.6, 24.7),
                (" old", 24.7, 24.9), (" Europe", 24.9, 25.3))


def test_answer_span_is_where_the_answer_words_are_dense():
    span = g.answer_span(SPECTRE, "The specter of communism is haunting Europe.")
    assert span == (20.4, 23.3)  # not "old Europe" two seconds later, not "preamble"
    assert g.answer_span(SPECTRE, "It is about taxes.") is None  # nothing the evidence says
    assert g.answer_span(SPECTRE, "Europe.") is None  # one shared word locates nothing


def test_phrase_in_the_question_prefers_the_text_that_says_it_verbatim():
    from streaming.answer.rerank import Candidate, rerank

    a = Candidate(Evidence("p", 13.0, 16.4, "I'm Sinbad the sailor So hearty and hale", 0.55, "shown", "subtitle"))
    b = Candidate(Evidence("p", 57.7, 60.0, "Sinbad t the sailor!", 0.58, "shown", "subtitle"))
    ranked = rerank("When does the sailor sing I'm Sinbad the sailor?", [b, a])
    assert ranked[0].candidate is a
