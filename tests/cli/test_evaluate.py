"""The evaluation harness without a service: metrics, the report, question-file validation, the
project's question set, and the runner's HTTP handling against a scripted client."""

from __future__ import annotations

import io
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from actors.cli import evaluation
from actors.cli.main import CliError, main
from streaming.tools.evaluate import (OVERLAP_TIME, EvalReport, QuestionError, answer_match,
                                assign_splits, error_result, normalise, question_from_json,
                                questions_from_jsonl, percentile, score, select_split, stream_slug,
                                time_scores)

from tests.support.helpers import MEDIA

REPO = Path(__file__).resolve().parents[2]
QUESTIONS = REPO / "eval" / "questions.jsonl"
JFK = "jfk_inaugural_1961.flac"
FIRST_TYPES = ("said", "shown", "when", "last_n", "cross_stream", "absent")  # eval/questions.jsonl's


def q(**kw):
    base = {"id": "q1", "type": "said", "question": "What?", "media": [JFK], "answers": ["ask what you can do"]}
    return question_from_json(base | kw, line=7)


def resp(answer="", found=True, stream="jfk_inaugural_1961", start=1.0, end=2.0, **kw):
    cites = [] if stream is None else [{"stream": stream, "start": start, "end": end}]
    return {"answer": answer, "found": found, "citations": cites, "evidence": [], "warnings": [],
            "timings": {"retrieval_ms": 3.0, "total_ms": 10.0}, "model": "m", **kw}


# -- normalise and answers -------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("  Café   CRÈME!  ", "cafe creme"), ("I'm Sinbad, the sailor…", "im sinbad the sailor"), ("I’m", "im"),
    ("press 3", "press three"), ("0 and 20 and 21", "zero and twenty and 21"),
    ("Marx & Engels", "marx and engels"), ("ill-disposed", "ill disposed"),
    ("www.marxists.org", "www marxists org"), ("snake_case\ttab\nnewline", "snake case tab newline"),
    ("", ""), ("?!", ""),
])
def test_normalise(text, expected):
    assert normalise(text) == expected


def test_answer_match_contained_digits_words_and_whole_words():
    assert answer_match("He said: ASK what you can do for your country!", ["ask what you can do for your country"])
    assert answer_match("For accounting, press 3.", ["three"])
    assert answer_match("press three", ["3"])
    assert not answer_match("threefold", ["three"])  # whole words only
    assert answer_match("nothing", ["x", "nothing"])  # any gold string
    with pytest.raises(TypeError):
        normalise(None)


def test_answer_match_ignores_citation_clocks():
    # Without dropping "[… 0:03.0–0:04.0]" its digits would read as "three" and "four".
    assert not answer_match("Said: “thank you” [asterisk 0:03.0–0:04.0]", ["three"])
    assert not answer_match("Around 0:04.5 it says hello", ["four"])
    assert answer_match("Said: “press three” [ivr 0:19.1–0:19.6]", ["three"])
    for no_words in ([], ["?!"]):
        with pytest.raises(ValueError):
            answer_match("x", no_words)


def test_similarity_path_threshold():
    # This fake stands in for MiniLM only to test the threshold logic; the real cosine is not tested here.
    question = q()
    near = score(question, "manta", resp("a paraphrase"), similarity=lambda a, b: 0.80)
    far = score(question, "manta", resp("a paraphrase"), similarity=lambda a, b: 0.70)
    assert (near.answer_match, near.answer_similarity, near.answer_correct) == (False, 0.8, True)
    assert far.answer_correct is False
    with pytest.raises(ValueError, match="threshold"):
        score(question, "manta", resp("x"), similarity=lambda a, b: 0.8, threshold=0)
    exact = score(question, "manta", resp("ask what you can do"), similarity=lambda a, b: 0.1)
    assert exact.answer_match and exact.answer_correct
    by_line = score(question, "manta", resp("Generated line\nSaid: “x” [jfk 0:01.0–0:02.0]"), threshold=0.95,
                    similarity=lambda a, b: 0.9 if a == "Generated line" else 0.1)  # best line, own threshold
    assert (by_line.answer_similarity, by_line.answer_correct) == (0.9, False)
    with pytest.raises(ValueError, match="cosine"):
        score(question, "manta", resp("x"), similarity=lambda a, b: 3.0)
    with pytest.raises(ValueError, match="cosine"):
        score(question, "manta", resp("x"), similarity=lambda a, b: "high")


# -- time -----------------------------------------------------------------------------------------
def test_time_contained_vs_overlapping_stream_and_tolerance():
    cite = lambda s, e, stream="a": {"stream": stream, "start": s, "end": e}  # noqa: E731
    assert time_scores(cite(84.4, 84.9), "a", (84.479, 84.87), 1.0) == (True, True)
    # "somewhere in these 30 s" overlaps the word but does not give its time
    assert time_scores(cite(60.0, 90.0), "a", (84.479, 84.87), 1.0) == (False, True)
    assert time_scores(cite(84.4, 84.9, "b"), "a", (84.479, 84.87), 1.0) == (False, False)
    assert time_scores(cite(83.5, 85.87), "a", (84.479, 84.87), 1.0) == (True, True)  # on the edges
    assert time_scores(cite(83.4, 84.0), "a", (84.479, 84.87), 1.0) == (False, True)
    assert time_scores(cite(83.4, 84.0), "a", (84.479, 84.87), 0.0) == (False, False)
    assert time_scores(None, "a", (1, 2), 1.0) == (False, False)


@pytest.mark.parametrize("args, message", [
    (({"stream": "a", "start": 2, "end": 1}, "a", (0, 5), 1.0), "ends before"),
    (({"stream": "a", "start": "x", "end": 1}, "a", (0, 5), 1.0), "citation start"),
    (({"stream": "a", "start": 0, "end": 1}, "a", (5, 1), 1.0), "t0 <= t1"),
    (({"stream": "a", "start": 0, "end": 1}, "a", (0, 5), -1.0), "negative"),
])
def test_time_scores_validate(args, message):
    with pytest.raises(ValueError, match=message):
        time_scores(*args)


def test_when_question_scores_time_only():
    (defaults,) = questions_from_jsonl(line(type="when", answers=[], span=[1, 2]))
    assert (defaults.stream, defaults.tolerance, defaults.streams) == (JFK, 1.0, ("jfk_inaugural_1961",))
    when = q(type="when", answers=[], span=[1.0, 2.6], tolerance=0.5)
    r = score(when, "manta", resp("At 0:01.6", start=1.56, end=2.10))
    assert (r.answer_correct, r.time_correct, r.time_overlaps, r.stream_correct) == (None, True, True, True)
    r = score(when, "manta", resp("At 0:01.6", start=0.0, end=30.0))
    assert (r.time_correct, r.time_overlaps) == (False, True)
    r = score(when, "manta", resp("not found", found=False, stream=None))
    assert (r.time_correct, r.stream_correct) == (False, False)


def test_absent_and_not_found():
    absent = q(type="absent", answers=[])
    r = score(absent, "manta", resp("Not found in the stream.", found=False, stream=None))
    assert (r.answer_correct, r.time_correct, r.stream_correct) == (True, None, None)
    assert score(absent, "manta", resp("It was sunny.")).answer_correct is False
    # a "not found" reply cannot be right for a question whose answer is there, whatever it quotes
    said = q(span=[0, 11])
    r = score(said, "manta", resp("ask what you can do", found=False))
    assert (r.answer_correct, r.time_correct, r.stream_correct) == (False, False, False)


def test_cross_stream_needs_the_right_stream():
    cross = question_from_json({"id": "c", "type": "cross_stream", "question": "Which?", "answers": ["press four"],
                            "media": ["a.wav", "b.wav"], "stream": "b.wav", "span": [20, 22]})
    assert cross.streams == ("a", "b") and cross.stream_id == "b"
    assert score(cross, "manta", resp("press four", stream="b", start=20.5, end=21.5)).answer_correct
    wrong = score(cross, "manta", resp("press four", stream="a", start=20.5, end=21.5))
    assert (wrong.answer_correct, wrong.stream_correct, wrong.time_correct) == (False, False, False)


# -- the kinds added for issue 19: overview, who, language, at_time, paraphrase -----------------------
def test_at_time_scores_the_answer_and_an_overlapping_citation():
    at = q(id="a", type="at_time", question="What is said at 0:20?", answers=["spectre is haunting europe"],
           span=[19.0, 23.0])
    r = score(at, "manta", resp("Said: “a spectre is haunting Europe”", start=19.5, end=22.0))
    assert (r.answer_correct, r.time_correct, r.stream_correct) == (True, True, True)
    # evidence from a window that touches the asked time is right for "what is said at 0:20"
    r = score(at, "manta", resp("a spectre is haunting Europe", start=10.0, end=40.0))
    assert (r.answer_correct, r.time_correct, r.time_overlaps) == (True, True, True)
    r = score(at, "manta", resp("workers of the world unite", start=9.5, end=12.8))  # wrong words, wrong time
    assert (r.answer_correct, r.time_correct, r.time_overlaps) == (False, False, False)
    r = score(at, "manta", resp("a spectre is haunting Europe", start=60.0, end=62.0))  # right words, wrong time
    assert (r.answer_correct, r.time_correct) == (True, False)
    r = score(at, "manta", resp("a spectre is haunting Europe", stream="other", start=19.5, end=22.0))
    assert (r.time_correct, r.stream_correct) == (False, False)
    r = score(at, "manta", resp("Not found in the stream.", found=False, stream=None))
    assert (r.answer_correct, r.time_correct) == (False, False)
    with pytest.raises(QuestionError, match="at_time question needs its gold span"):
        questions_from_jsonl(line(type="at_time"))


@pytest.mark.parametrize("qtype", ["overview", "who", "language"])
def test_window_kinds_score_keywords_and_overlap(qtype):
    question = q(id="o", type=qtype, answers=["country", "Kennedy", "English"], span=[0, 11.0])
    assert qtype in OVERLAP_TIME
    r = score(question, "manta", resp("A speaker tells his fellow Americans to serve their country.", start=0,
                                      end=30.0))
    assert (r.answer_correct, r.time_correct) == (True, True)  # a summary may cite more than the span
    r = score(question, "manta", resp("A weather report from Paris.", start=1.0, end=2.0))
    assert (r.answer_correct, r.time_correct) == (False, True)
    assert score(question, "manta", resp("country", start=20.0, end=30.0)).time_correct is False
    assert score(question, "manta", resp("country", found=False)).answer_correct is False
    no_span = q(id="n", type=qtype, answers=["English"])
    r = score(no_span, "manta", resp("It is in English.", start=50, end=60))
    assert (r.answer_correct, r.time_correct, r.stream_correct) == (True, None, True)
    with pytest.raises(QuestionError, match=f"a {qtype} question needs at least one accepted answer"):
        questions_from_jsonl(line(type=qtype, answers=[]))


def test_who_counts_and_language_are_keyword_matches():
    count = q(id="c", type="who", answers=["one speaker", "a single", "one"])
    assert score(count, "manta", resp("There is 1 speaker.")).answer_correct  # digits read as words
    assert score(count, "manta", resp("A single voice.")).answer_correct
    assert not score(count, "manta", resp("Two people talk.")).answer_correct
    lang = q(id="l", type="language", answers=["English"])
    assert score(lang, "manta", resp("english, throughout")).answer_correct
    assert not score(lang, "manta", resp("It is in German.")).answer_correct


def test_paraphrase_is_scored_like_said():
    para = q(id="p", type="paraphrase", question="What ghost roams the continent?", answers=["spectre", "specter"],
             span=[19.0, 25.6])
    assert para.type not in OVERLAP_TIME
    r = score(para, "manta", resp("The specter of communism.", start=19.0, end=23.0))
    assert (r.answer_correct, r.time_correct) == (True, True)
    r = score(para, "manta", resp("The specter of communism.", start=0.0, end=60.0))  # overlapping is not a time
    assert (r.answer_correct, r.time_correct, r.time_overlaps) == (True, False, True)
    assert score(para, "manta", resp("A holy alliance.", start=19.0, end=23.0)).answer_correct is False


def test_original_kinds_keep_the_strict_time():
    for qtype in ("said", "shown", "last_n"):
        r = score(q(type=qtype, span=[1.0, 2.0]), "manta", resp("ask what you can do", start=0.0, end=30.0))
        assert (r.time_correct, r.time_overlaps) == (False, True)


# -- splits ---------------------------------------------------------------------------------------
def test_split_and_fact_fields():
    (x,) = questions_from_jsonl(line(fact="jfk-ask", split="dev"))
    assert (x.fact, x.split) == ("jfk-ask", "dev")
    (plain,) = questions_from_jsonl(line())
    assert (plain.fact, plain.split) == (None, None)
    with pytest.raises(QuestionError, match="split must be one of dev, test"):
        questions_from_jsonl(line(split="train"))
    with pytest.raises(QuestionError, match="fact must be a non-empty string"):
        questions_from_jsonl(line(fact=" "))
    both = line(fact="f", split="dev") + "\n" + line(id="y", fact="f", split="test")
    with pytest.raises(QuestionError, match="line 2: fact 'f' is in dev on line 1"):
        questions_from_jsonl(both, source="qs.jsonl")


def test_select_split():
    qs = questions_from_jsonl("\n".join([line(id="a", split="dev"), line(id="b", split="test"), line(id="c")]))
    assert [x.id for x in select_split(qs, "dev")] == ["a"]
    assert [x.id for x in select_split(qs, "test")] == ["b"]
    assert [x.id for x in select_split(qs, None)] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="split must be one of"):
        select_split(qs, "train")


def test_assign_splits_groups_facts_balances_types_and_is_deterministic():
    rows = [{"id": f"{t}-{f}-{i}", "type": t, "fact": f"{t}-{f}"}
            for t in ("said", "when", "overview") for f in range(6) for i in range(1 + f % 2)]
    rows += [{"id": "lonely", "type": "absent"}, {"id": "mixed-1", "type": "said", "fact": "m"},
             {"id": "mixed-2", "type": "when", "fact": "m"}]
    splits = assign_splits(rows)
    assert set(splits) == {r["id"] for r in rows} and set(splits.values()) == {"dev", "test"}
    by_fact: dict[str, set] = {}
    for r in rows:
        by_fact.setdefault(r.get("fact") or r["id"], set()).add(splits[r["id"]])
    assert all(len(parts) == 1 for parts in by_fact.values())  # one fact, one part
    for t in ("said", "when", "overview"):
        n = Counter(splits[r["id"]] for r in rows if r["type"] == t)
        assert abs(n["dev"] - n["test"]) <= 2, (t, n)
    assert assign_splits(list(reversed(rows))) == splits  # the file's order does not matter
    # a split once made stays, and a new phrasing of a split fact joins its part
    fixed = [r | {"split": "test" if splits[r["id"]] == "dev" else "dev"} for r in rows]
    again = assign_splits(fixed + [{"id": "new", "type": "said", "fact": "said-0"}])
    assert all(again[r["id"]] == r["split"] for r in fixed)
    assert again["new"] == fixed[0]["split"]
    with pytest.raises(ValueError, match="both splits"):
        assign_splits([{"id": "a", "type": "said", "fact": "f", "split": "dev"},
                       {"id": "b", "type": "said", "fact": "f", "split": "test"}])


@pytest.mark.parametrize("bad", [[], {"answer": 1, "found": True, "citations": []},
                                 {"answer": "x", "found": "yes", "citations": []},
                                 {"answer": "x", "found": True}, resp(citations=["jfk 0:01"]), resp(timings=[1])])
def test_score_rejects_malformed_responses(bad):
    with pytest.raises(ValueError):
        score(q(), "manta", bad)


def test_error_result_counts_as_wrong_where_scored():
    r = error_result(q(span=[0, 11]), "baseline", "stream failed")
    assert (r.answer_correct, r.answer_match, r.time_correct, r.stream_correct) == (False, False, False, False)
    r = error_result(q(type="absent", answers=[]), "manta", "boom")
    assert (r.answer_correct, r.time_correct, r.stream_correct) == (False, None, None)


# -- report ---------------------------------------------------------------------------------------
def test_report_aggregates_per_type_and_mode():
    said, when = q(span=[0, 11]), q(id="w", type="when", answers=[], span=[1.0, 2.6])
    results = []
    for i, ms in enumerate([10.0, 20.0, 30.0, 40.0]):
        good = i % 2 == 0
        r = score(said, "manta", resp("ask what you can do" if good else "no", start=1, end=2))
        r.timings = {"retrieval_ms": ms, "total_ms": ms * 2}
        results.append(r)
    results.append(score(when, "manta", resp("", start=1.5, end=2.0)))
    results.append(score(said, "baseline", resp("no", start=1, end=2)))
    results.append(score(when, "baseline", resp("", start=0, end=30)))
    results.append(error_result(said, "baseline", "stream failed"))
    report = EvalReport(results)
    assert report.modes == ["manta", "baseline"] and report.types == ["said", "when"]
    m, b = report.summary("manta"), report.summary("baseline")
    assert m["said"]["answer"] == {"n": 4, "correct": 2, "rate": 0.5}
    assert m["when"]["time"]["rate"] == 1.0 and m["when"]["answer"]["n"] == 0
    assert m["all"]["n"] == 5 and m["all"]["time"] == {"n": 5, "correct": 5, "rate": 1.0}
    assert b["said"]["answer"] == {"n": 2, "correct": 0, "rate": 0.0} and b["said"]["errors"] == 1
    assert b["when"]["time"]["rate"] == 0.0 and b["when"]["overlaps"]["rate"] == 1.0
    assert m["said"]["similar"]["n"] == 0  # no similarity function: not claimed either way
    lat = report.latency("manta")
    values = [10.0, 20.0, 30.0, 40.0, 3.0]  # the when answer's own 3 ms counts too
    assert lat["retrieval_ms"]["p50"] == pytest.approx(np.percentile(values, 50))
    assert lat["retrieval_ms"]["p99"] == pytest.approx(np.percentile(values, 99))
    assert lat["total_ms"]["n"] == 5 and "client_ms" not in lat
    assert "rerank_ms" not in lat  # never reported by these responses
    md = report.to_markdown()
    assert "### Mode `manta`" in md and "### Mode `baseline`" in md and "### Manta vs baseline" in md
    assert "| said | 4 | 2/4 (50%) |" in md
    assert "| said | 50% | 0% | +50.0 |" in md  # Δ in percentage points
    assert "| retrieval | 20.0 | 39.6 |" in md
    json.dumps(report.to_dict())  # plain data all the way down


def test_percentile_and_a_one_mode_report():
    assert percentile([], 50) is None and percentile([5.0], 99) == 5.0
    data = [3.0, 1.0, 2.0, 10.0, 7.0]
    for p in (0, 50, 90, 99, 100):
        assert percentile(data, p) == pytest.approx(np.percentile(data, p))
    md = EvalReport([score(q(), "manta", resp("ask what you can do"))]).to_markdown()
    assert "Manta vs baseline" not in md and "1/1 (100%)" in md


# -- question files -------------------------------------------------------------------------------
def line(**kw) -> str:
    base = {"id": "x", "type": "said", "question": "What?", "media": [JFK], "answers": ["a"]}
    return json.dumps({k: v for k, v in (base | kw).items() if v is not ...})


@pytest.mark.parametrize("text, message", [
    (line() + "\n{not json", "line 2: not valid JSON"),
    (line(type="seen"), "line 1: unknown type 'seen'"),
    ("\n" + line(type="when", answers=[]), "line 2: a when question needs its gold span"),
    (line(stream="other.wav"), "stream 'other.wav' is not listed in media"),
    (line(media=[JFK, "b.wav"]), "stream is required when media lists several"),
    (line(media=[]), "media must name at least one file"),
    (line(media="jfk.flac"), "media must be a list"),
    (line(answers=[]), "needs at least one accepted answer"),
    (line(span=[3, 1]), "0 <= t0 <= t1"),
    (line(span=[0, "1"]), "span t1 must be a finite number"),
    (line(type="absent", span=[0, 1]), "absent question has no span"),
    (line(type="cross_stream"), "needs several media files"),
    (line(tolerance=-1), "tolerance must not be negative"),
    (line(colour="blue"), "unknown field(s) colour"),
    (line(id=...), "missing field 'id'"),
    (line(media=["a.wav", "A.mp4"], stream="a.wav"), "share a stream id"),
    (line() + "\n" + line(), "line 2: id 'x' already used on line 1"),
    (line() + "\n" + line(id="y", media=["JFK_inaugural_1961.mp4"]), "would share stream id"),
    ("[1, 2]", "must be a JSON object"),
    ("\n\n", "no questions"),
])
def test_question_file_errors_name_the_line(text, message):
    with pytest.raises(QuestionError) as info:
        questions_from_jsonl(text, source="qs.jsonl")
    assert message in str(info.value) and str(info.value).startswith("qs.jsonl")


def test_stream_slug_matches_the_service():
    from actors.stream_actor import make_stream_id

    for name in (JFK, "Big Buck Bunny (2008).webm", "dir/ÄÖ-clip.v2.mp4", "x" * 80 + ".wav"):
        assert stream_slug(name) == make_stream_id(Path(name).stem)
    with pytest.raises(ValueError):
        stream_slug("!!!.wav")


def test_the_project_question_set():
    questions = questions_from_jsonl(QUESTIONS.read_text(), source=QUESTIONS.name)
    counts = Counter(x.type for x in questions)
    assert all(counts[t] >= 4 for t in FIRST_TYPES), counts
    assert all(x.note for x in questions), "every question cites the README fact it rests on"
    if not MEDIA.is_dir():
        pytest.skip(f"real test media not available: {MEDIA} (the question file itself validated)")
    missing = sorted({m for x in questions for m in x.media if not (MEDIA / m).is_file()})
    assert not missing, missing


# -- the runner and the CLI, without a service ----------------------------------------------------
class ScriptedClient:
    """Answers like the API contract (or raises what ``query`` returns); records what was sent."""

    def __init__(self, states: dict[str, str], query=None):
        self.states, self.query, self.sent = states, query, []

    def call(self, method, path, json=None, **_):
        self.sent.append((method, path, json))
        if method == "POST" and path == "/v1/streams":
            if json["name"] == "broken":
                raise CliError("422: cannot open broken.mp4")
            if json["name"] == "exists":
                raise CliError("409: stream exists already")
            return {"id": json["name"]}
        if method == "GET":
            sid = path.rsplit("/", 1)[1]
            return {"id": sid, "state": self.states[sid], "last_error": "decoder died" if sid == "bad" else None}
        answer = self.query(json)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_ingest_all_reuses_existing_and_reports_failures():
    client = ScriptedClient({"ok": "finished", "exists": "finished", "bad": "failed"})
    media = {s: Path(f"/m/{s}.wav") for s in ("ok", "exists", "bad", "broken")}
    errors = evaluation.ingest_all(client, media, 5.0, Console(file=io.StringIO()))
    assert set(errors) == {"bad", "broken"} and "decoder died" in errors["bad"] and "422" in errors["broken"]
    assert ("POST", "/v1/streams", {"source": "/m/ok.wav", "name": "ok"}) in client.sent


def test_ask_sends_the_contract_and_turns_failures_into_errors():
    question = question_from_json({"id": "c", "type": "cross_stream", "question": "Which?", "answers": ["a"],
                               "media": ["s1.wav", "s2.wav"], "stream": "s1.wav"})
    client = ScriptedClient({}, query=lambda body: resp("a", stream="s1"))
    r = evaluation.ask(client, question, "baseline", None, {})
    assert r.answer_correct and r.timings["client_ms"] >= 0 and r.model == "m"
    assert client.sent[-1][2] == {"question": "Which?", "streams": ["s1", "s2"], "start": None, "end": None,
                                  "retrieval": "baseline", "generate": True}
    failed = {"s2": "stream s2 failed: x"}
    assert evaluation.ask(client, question, "manta", None, failed).error == failed["s2"]
    client.query = lambda body: {"answer": "no found field"}
    assert "not as the API promises" in evaluation.ask(client, question, "manta", None, {}).error

    client.query = lambda body: CliError("500: boom")
    assert evaluation.ask(client, question, "manta", None, {}).error == "500: boom"
    client.query = lambda body: CliError("Manta did not answer in time", 2)  # one slow answer: go on
    assert "in time" in evaluation.ask(client, question, "manta", None, {}).error
    client.query = lambda body: CliError("Manta is not running at x", 2)  # gone: stop, do not score
    with pytest.raises(CliError):
        evaluation.ask(client, question, "manta", None, {})


def run_main(capsys, monkeypatch, *argv) -> tuple[int, str]:
    monkeypatch.setenv("COLUMNS", "400")  # rich wraps at the terminal width; one line means one line
    code = main(["eval", *argv])
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    return code, out.err.strip()


def test_cli_bad_question_file_is_one_line(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(line() + "\n" + line(id="y", type="when", answers=[]) + "\n")
    code, err = run_main(capsys, monkeypatch, str(bad))
    assert code == 1 and len(err.splitlines()) == 1
    assert "bad.jsonl line 2" in err and "gold span [t0, t1]" in err  # not eaten as rich markup
    code, err = run_main(capsys, monkeypatch, str(tmp_path / "missing.jsonl"))
    assert code == 1 and "cannot read questions file" in err and len(err.splitlines()) == 1


def test_cli_checks_media_types_and_modes_before_starting_anything(tmp_path, capsys, monkeypatch):
    good = tmp_path / "q.jsonl"
    good.write_text(line() + "\n" + line(id="y", media=["b.wav", "c.mp4"], stream="c.mp4") + "\n")
    code, err = run_main(capsys, monkeypatch, str(good), "--media-dir", str(tmp_path))
    assert code == 1 and "b.wav, c.mp4, jfk_inaugural_1961.flac" in err and len(err.splitlines()) == 1
    code, err = run_main(capsys, monkeypatch, str(good), "--type", "said,sung")
    assert code == 1 and "unknown question type sung" in err
    code, err = run_main(capsys, monkeypatch, str(good), "--type", "when")
    assert code == 1 and "no questions of type when" in err
    code, err = run_main(capsys, monkeypatch, str(good), "--modes", "manta,rag")
    assert code == 1 and "unknown retrieval mode rag" in err
    code, err = run_main(capsys, monkeypatch, str(good), "--split", "dev")  # a file with no split field
    assert code == 1 and "no questions in the dev split" in err and len(err.splitlines()) == 1


def test_load_questions_filters_by_split_and_type(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join([line(id="a", split="dev"), line(id="b", split="test"),
                               line(id="c", type="when", answers=[], span=[1, 2], split="dev")]) + "\n")
    assert [x.id for x in evaluation.load_questions(path, split="dev")] == ["a", "c"]
    assert [x.id for x in evaluation.load_questions(path, split="test")] == ["b"]
    assert [x.id for x in evaluation.load_questions(path, ["when"], "dev")] == ["c"]
    assert [x.id for x in evaluation.load_questions(path)] == ["a", "b", "c"]
    with pytest.raises(CliError, match="no questions of type when"):
        evaluation.load_questions(path, ["when"], "test")
    with pytest.raises(CliError, match="unknown split train"):
        evaluation.load_questions(path, split="train")


class FakeManta(BaseHTTPRequestHandler):
    """The API contract over real HTTP on loopback: enough for ``manta eval --url`` end to end."""

    def log_message(self, *args):  # keep pytest output clean
        pass

    def reply(self, code: int, doc: dict) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.reply(200, {"id": self.path.rsplit("/", 1)[1], "state": "finished", "last_error": None})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/v1/streams":
            return self.reply(201, {"id": body["name"]})
        hierarchy = body["retrieval"] == "manta"
        cite = {"stream": body["streams"][0], "start": 1.6 if hierarchy else 0, "end": 2 if hierarchy else 30}
        self.reply(200, {"answer": "Said: “ask what you can do for your country” [jfk 0:01.6–0:02.0]",
                         "found": True, "citations": [cite], "evidence": [], "warnings": [], "model": "fake",
                         "retrieval": body["retrieval"],
                         "timings": {"retrieval_ms": 2.0, "rerank_ms": 1.0, "selection_ms": 0.5,
                                     "generation_ms": 9.0, "total_ms": 12.5}})


def test_cli_end_to_end_against_a_fake_service(tmp_path, capsys, monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeManta)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (tmp_path / JFK).write_bytes(b"")  # only its existence is checked here; the fake reads nothing
        questions, out_json, out_md = tmp_path / "q.jsonl", tmp_path / "r.json", tmp_path / "r.md"
        questions.write_text(line(answers=["ask what you can do for your country"]) + "\n"
                             + line(id="w", type="when", answers=[], span=[1.0, 2.6]) + "\n")
        # MiniLM is not loaded in a fast test: a fixed cosine stands in for it
        monkeypatch.setattr(evaluation, "minilm_similarity", lambda console: lambda a, b: 0.5)
        code = main(["eval", str(questions), "--url", f"http://127.0.0.1:{server.server_address[1]}",
                     "--media-dir", str(tmp_path), "--json", str(out_json), "--markdown", str(out_md)])
        printed = capsys.readouterr()
        assert code == 0, printed.err
    finally:
        server.shutdown()
    doc = json.loads(out_json.read_text())
    by = {(r["id"], r["mode"]): r for r in doc["results"]}
    assert by["x", "manta"]["answer_correct"] and by["w", "manta"]["time_correct"]
    assert by["w", "baseline"]["time_correct"] is False and by["w", "baseline"]["time_overlaps"]
    assert doc["modes"]["baseline"]["latency"]["generation_ms"]["p50"] == 9.0
    assert "| when | – | – | – | 100% | 0% | +100.0 |" in out_md.read_text()  # when: time only
    assert "Manta vs baseline" in printed.out and "Answers" in printed.out
