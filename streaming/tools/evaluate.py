"""Scoring answers against a gold question set: parsing, metrics and the report, nothing else.

Kept free of Ray, HTTP and models so the metrics can be tested in milliseconds and reused by the
``manta eval`` command and the answer-quality benchmark alike. The one model-based metric (answer
similarity) takes its similarity function as an argument for the same reason.

Time is scored strictly: the cited span must lie *inside* the gold span widened by the tolerance.
A citation that merely overlaps ("somewhere in these 30 s") is not a precise time, so it is only
reported as the looser "overlaps" rate. The exception is the kinds that ask about a window or a whole
stream rather than one moment (overview, who, language, at_time): their time counts when the citation
overlaps the gold span, as "what is on screen at 0:20" is answered by any evidence touching 0:20.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import PurePath

TYPES = ("said", "shown", "when", "last_n", "cross_stream", "absent",
         "overview", "who", "language", "at_time", "paraphrase")
MODES = ("manta", "baseline")
TIMINGS = ("retrieval_ms", "rerank_ms", "selection_ms", "generation_ms", "total_ms", "client_ms")
SIMILAR = 0.75  # MiniLM cosine above which a paraphrase counts as the gold answer
NEEDS_ANSWERS = ("said", "shown", "last_n", "cross_stream",  # when/absent are scored on time/found
                 "overview", "who", "language", "at_time", "paraphrase")
NEEDS_SPAN = ("when", "at_time")  # the time is the question: no gold span, nothing to score
OVERLAP_TIME = ("overview", "who", "language", "at_time")  # a window, not a moment: overlapping is right
SPLITS = ("dev", "test")
KEYS = {"id", "type", "question", "media", "answers", "span", "stream", "tolerance", "note", "fact", "split"}

Similarity = Callable[[str, str], float]


class QuestionError(ValueError):
    """A question line that cannot be used; the message names the line."""


# -- names ---------------------------------------------------------------------------------------
def stream_slug(file_name: str) -> str:
    """The stream id of a media file: its stem slugged as ``make_stream_id`` does (kept in step by
    a test; copied so this module needs no Ray)."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", PurePath(file_name).stem.strip().lower()).strip("-_")[:63]
    if not re.match(r"^[a-z0-9][a-z0-9_-]{0,62}$", slug):
        raise ValueError(f"media name {file_name!r} has no letter or digit to name a stream by")
    return slug


# -- questions -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalQuestion:
    id: str
    type: str
    question: str
    media: tuple[str, ...]
    answers: tuple[str, ...] = ()
    span: tuple[float, float] | None = None
    stream: str | None = None  # the media file the answer comes from (None: absent questions)
    tolerance: float = 1.0
    note: str | None = None
    line: int = 0
    fact: str | None = None  # the ground-truth fact it rests on: its phrasings share one split
    split: str | None = None  # "dev" (may be tuned on) or "test" (reported, never tuned on)

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(stream_slug(m) for m in self.media)

    @property
    def stream_id(self) -> str | None:
        return stream_slug(self.stream) if self.stream else None


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, not {value!r}")
    return float(value)


def _strings(value, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{what} must be a list of non-empty strings")
    return tuple(v.strip() for v in value)


def _span(value) -> tuple[float, float] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"span must be [t0, t1] or null, not {value!r}")
    t0, t1 = _number(value[0], "span t0"), _number(value[1], "span t1")
    if not 0 <= t0 <= t1:
        raise ValueError(f"span must satisfy 0 <= t0 <= t1, not [{t0:g}, {t1:g}]")
    return t0, t1


def question_from_json(obj, line: int = 0) -> EvalQuestion:
    """One validated question; raises QuestionError naming the line and the problem."""
    try:
        if not isinstance(obj, dict):
            raise ValueError("must be a JSON object")
        unknown = sorted(set(obj) - KEYS)
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}")
        for key in ("id", "type", "question", "media"):
            if key not in obj:
                raise ValueError(f"missing field {key!r}")
        qid, qtype, text = obj["id"], obj["type"], obj["question"]
        if not isinstance(qid, str) or not qid.strip():
            raise ValueError("id must be a non-empty string")
        if qtype not in TYPES:
            raise ValueError(f"unknown type {qtype!r} (expected one of {', '.join(TYPES)})")
        if not isinstance(text, str) or not text.strip():
            raise ValueError("question must be a non-empty string")
        media = _strings(obj["media"], "media")
        if not media:
            raise ValueError("media must name at least one file")
        if len(set(media)) != len(media):
            raise ValueError("media names a file twice")
        slugs = [stream_slug(m) for m in media]
        if len(set(slugs)) != len(slugs):
            raise ValueError(f"two media files would share a stream id: {', '.join(slugs)}")
        answers = _strings(obj.get("answers", []), "answers")
        if qtype in NEEDS_ANSWERS and not answers:
            raise ValueError(f"a {qtype} question needs at least one accepted answer")
        span = _span(obj.get("span"))
        if qtype in NEEDS_SPAN and span is None:
            raise ValueError(f"a {qtype} question needs its gold span [t0, t1]")
        if qtype == "absent" and span is not None:
            raise ValueError("an absent question has no span (nothing to find)")
        if qtype == "cross_stream" and len(media) < 2:
            raise ValueError("a cross_stream question needs several media files")
        stream = obj.get("stream")
        if stream is None and qtype != "absent":
            if len(media) > 1:
                raise ValueError("stream is required when media lists several files")
            stream = media[0]
        if stream is not None and stream not in media:
            raise ValueError(f"stream {stream!r} is not listed in media")
        tolerance = _number(obj.get("tolerance", 1.0), "tolerance")
        if tolerance < 0:
            raise ValueError("tolerance must not be negative")
        note = obj.get("note")
        if note is not None and not isinstance(note, str):
            raise ValueError("note must be a string")
        fact = obj.get("fact")
        if fact is not None and (not isinstance(fact, str) or not fact.strip()):
            raise ValueError("fact must be a non-empty string")
        split = obj.get("split")
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    except ValueError as exc:
        raise QuestionError(f"line {line}: {exc}") from None
    return EvalQuestion(qid.strip(), qtype, text.strip(), media, answers, span, stream, tolerance, note, line,
                        fact.strip() if fact else None, split)


def questions_from_jsonl(text: str, source: str = "questions") -> list[EvalQuestion]:
    """Every non-blank line of a JSONL file; ids must be unique, and one stream id one file."""
    out: list[EvalQuestion] = []
    seen: dict[str, int] = {}
    files: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise QuestionError(f"{source} line {n}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        try:
            q = question_from_json(obj, n)
        except QuestionError as exc:
            raise QuestionError(f"{source} {exc}") from None
        if q.id in seen:
            raise QuestionError(f"{source} line {n}: id {q.id!r} already used on line {seen[q.id]}")
        seen[q.id] = n
        for name, slug in zip(q.media, q.streams):
            if files.setdefault(slug, name) != name:
                raise QuestionError(f"{source} line {n}: {name} and {files[slug]} would share stream id {slug}")
        out.append(q)
    if not out:
        raise QuestionError(f"{source}: no questions")
    splits: dict[str, tuple[str, int]] = {}
    for x in out:
        if x.fact and x.split:
            first = splits.setdefault(x.fact, (x.split, x.line))
            if first[0] != x.split:
                raise QuestionError(f"{source} line {x.line}: fact {x.fact!r} is in {first[0]} on line {first[1]} "
                                    f"and in {x.split} here (one fact, one split)")
    return out


def select_split(questions: list[EvalQuestion], split: str | None) -> list[EvalQuestion]:
    """The questions of one split ("dev" or "test"); None keeps them all."""
    if split is None:
        return list(questions)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    return [q for q in questions if q.split == split]


def assign_splits(rows: list[dict]) -> dict[str, str]:
    """A split for every question row (JSON objects with id, type and fact), decided once per fact.

    Rows that have a split keep it, and their fact's other rows follow it. Each remaining fact, the
    largest first and equal sizes in the order of the SHA-256 of the fact's name, goes to the part
    where it leaves the per-type counts of dev and test least unequal; a tie goes to dev when that
    hash is even. A row without a fact is its own fact (named by its id). Deterministic: the same
    rows always get the same split, whatever their order in the file.
    """
    facts: dict[str, list[dict]] = {}
    for row in rows:
        facts.setdefault(row.get("fact") or row["id"], []).append(row)
    chosen: dict[str, str] = {}
    counts = {part: dict.fromkeys(TYPES, 0) for part in SPLITS}
    for fact, members in facts.items():
        given = {r["split"] for r in members if r.get("split")}
        if len(given) > 1:
            raise ValueError(f"fact {fact!r} is in both splits already")
        if given:
            chosen[fact] = given.pop()
            for r in members:
                counts[chosen[fact]][r["type"]] += 1
    for fact in sorted((f for f in facts if f not in chosen),
                       key=lambda f: (-len(facts[f]), hashlib.sha256(f.encode()).hexdigest())):
        need = dict.fromkeys(TYPES, 0)
        for r in facts[fact]:
            need[r["type"]] += 1

        def imbalance(part: str) -> int:
            return sum(abs(counts["dev"][t] + (n if part == "dev" else 0) - counts["test"][t]
                           - (n if part == "test" else 0)) for t, n in need.items() if n)

        dev, test = imbalance("dev"), imbalance("test")
        even = int(hashlib.sha256(fact.encode()).hexdigest(), 16) % 2 == 0
        chosen[fact] = "dev" if dev < test or (dev == test and even) else "test"
        for t, n in need.items():
            counts[chosen[fact]][t] += n
    return {r["id"]: chosen[r.get("fact") or r["id"]] for r in rows}


# -- metrics -------------------------------------------------------------------------------------
NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
                "fifteen sixteen seventeen eighteen nineteen twenty").split()
CLOCK = re.compile(r"\[[^\]]*\d:\d\d[^\]]*\]|\b\d+:\d\d(?:\.\d+)?\b")


def normalise(text: str) -> str:
    """Lower case, no accents or punctuation, single spaces, 0–20 spelled as words."""
    if not isinstance(text, str):
        raise TypeError(f"normalise takes a string, not {type(text).__name__}")
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    text = re.sub(r"['’‘`]", "", text.lower().replace("&", " and "))  # "I'm" ~ "im", not "i m"
    words = re.sub(r"[\W_]+", " ", text).split()
    return " ".join(NUMBER_WORDS[int(w)] if w.isdigit() and int(w) <= 20 else w for w in words)


def answer_match(answer: str, answers: Iterable[str]) -> bool:
    """Any gold string, normalised, occurs as whole words in the normalised answer. Citation clocks
    ("[jfk 0:03.0–0:04.0]") are dropped first, or their digits would "say" three or four."""
    said = f" {normalise(CLOCK.sub(' ', answer))} "
    golds = [normalise(g) for g in answers]
    if not golds or not all(golds):
        raise ValueError("answer_match needs gold answers with words in them")
    return any(f" {g} " in said for g in golds)


def best_similarity(answer: str, answers: Iterable[str], similarity: Similarity) -> float:
    """Best cosine of any gold with the whole answer or one of its lines: a generated sentence
    followed by quoted evidence scores low as a whole though its first line says the gold."""
    golds = list(answers)
    if not golds:
        raise ValueError("best_similarity needs gold answers")
    lines = [t for t in (CLOCK.sub(" ", x).strip() for x in answer.splitlines()) if t]
    best = -1.0
    for piece in [answer] + (lines if len(lines) > 1 else []):
        for gold in golds:
            s = similarity(piece, gold)
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not -1.001 <= s <= 1.001:
                raise ValueError(f"similarity must return a cosine in [-1, 1], got {s!r}")
            best = max(best, float(s))
    return best


def time_scores(citation: dict | None, stream: str, span: tuple[float, float],
                tolerance: float) -> tuple[bool, bool]:
    """(contained, overlaps): the citation in the right stream, inside / touching the gold span ± tol."""
    t0, t1 = _span(span)
    if _number(tolerance, "tolerance") < 0:
        raise ValueError("tolerance must not be negative")
    if citation is None:
        return False, False
    start, end = _number(citation.get("start"), "citation start"), _number(citation.get("end"), "citation end")
    if end < start:
        raise ValueError(f"citation ends before it starts: {start:g} > {end:g}")
    if citation.get("stream") != stream:
        return False, False
    lo, hi = t0 - tolerance, t1 + tolerance
    return lo <= start and end <= hi, start <= hi and end >= lo


# -- results -------------------------------------------------------------------------------------
@dataclass
class EvalResult:
    id: str
    type: str
    mode: str
    answer: str = ""
    found: bool | None = None
    citation: dict | None = None
    answer_correct: bool | None = None  # None: this question's answer is not scored
    answer_match: bool | None = None
    answer_similarity: float | None = None
    time_correct: bool | None = None  # None: no gold span (or absent)
    time_overlaps: bool | None = None
    stream_correct: bool | None = None
    timings: dict = field(default_factory=dict)
    model: str | None = None  # the answer model the service named
    error: str | None = None
    gate: dict | None = None  # the not-found gate's inputs (dense, lexical) when the service gave them

    def to_dict(self) -> dict:
        return asdict(self)


def error_result(q: EvalQuestion, mode: str, error: str) -> EvalResult:
    """A question the service could not answer counts as wrong on everything it would be scored on."""
    scored = q.type != "absent"
    return EvalResult(q.id, q.type, mode, error=error,
                      answer_correct=False if q.type == "absent" or q.answers else None,
                      answer_match=False if scored and q.answers else None,
                      time_correct=False if scored and q.span else None,
                      time_overlaps=False if scored and q.span else None,
                      stream_correct=False if scored else None)


def score(q: EvalQuestion, mode: str, response: dict, similarity: Similarity | None = None,
          threshold: float = SIMILAR, client_ms: float | None = None) -> EvalResult:
    """Score one ``POST /v1/query`` response; a malformed response raises ValueError."""
    if mode not in MODES or not isinstance(response, dict):
        raise ValueError(f"mode must be one of {', '.join(MODES)} and the response a JSON object")
    if not 0 < _number(threshold, "threshold") <= 1:
        raise ValueError(f"threshold must be a cosine in (0, 1], not {threshold:g}")
    answer, found, cites = response.get("answer"), response.get("found"), response.get("citations")
    if not isinstance(answer, str) or not isinstance(found, bool) or not isinstance(cites, list):
        raise ValueError("response needs answer (string), found (bool) and citations (list)")
    citation = cites[0] if cites else None
    if citation is not None and not isinstance(citation, dict):
        raise ValueError("citations must be objects {stream, start, end}")
    timings = response.get("timings") or {}
    if not isinstance(timings, dict):
        raise ValueError("timings must be an object of milliseconds")
    timings = {k: float(v) for k, v in timings.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if client_ms is not None:
        timings["client_ms"] = float(client_ms)
    model = response.get("model")
    gate = response.get("gate")
    r = EvalResult(q.id, q.type, mode, answer, found, citation, timings=timings,
                   model=model if isinstance(model, str) else None,
                   gate=gate if isinstance(gate, dict) else None)
    if q.type == "absent":
        r.answer_correct = not found
        return r
    r.stream_correct = found and citation is not None and citation.get("stream") == q.stream_id
    if q.span is not None:
        contained, overlaps = time_scores(citation, q.stream_id, q.span, q.tolerance)
        r.time_correct = found and (overlaps if q.type in OVERLAP_TIME else contained)
        r.time_overlaps = found and overlaps
    if q.answers:
        r.answer_match = found and answer_match(answer, q.answers)
        if similarity is not None:
            r.answer_similarity = best_similarity(answer, q.answers, similarity)
        similar = r.answer_similarity is not None and r.answer_similarity >= threshold
        r.answer_correct = found and (r.answer_match or similar)
        if q.type == "cross_stream":  # the right words from the wrong stream do not answer "which"
            r.answer_correct = r.answer_correct and r.stream_correct
    return r


# -- report --------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    xs, pos = sorted(values), (len(values) - 1) * q / 100
    lo = math.floor(pos)
    return xs[lo] + (xs[min(lo + 1, len(xs) - 1)] - xs[lo]) * (pos - lo)


def _rate(flags: list[bool | None]) -> dict:
    scored = [f for f in flags if f is not None]
    return {"n": len(scored), "correct": sum(scored), "rate": sum(scored) / len(scored) if scored else None}


def summarise(results: list[EvalResult], threshold: float = SIMILAR) -> dict:
    sims = [None if r.answer_similarity is None else r.found and r.answer_similarity >= threshold
            for r in results if r.answer_correct is not None and r.type != "absent"]  # as match: found only
    return {"n": len(results), "errors": sum(r.error is not None for r in results),
            "answer": _rate([r.answer_correct for r in results]),
            "match": _rate([r.answer_match for r in results if r.answer_correct is not None]),
            "similar": _rate(sims),
            "time": _rate([r.time_correct for r in results]),
            "overlaps": _rate([r.time_overlaps for r in results]),
            "stream": _rate([r.stream_correct for r in results])}


@dataclass
class EvalReport:
    results: list[EvalResult]
    threshold: float = SIMILAR

    @property
    def modes(self) -> list[str]:
        return [m for m in MODES if any(r.mode == m for r in self.results)]

    @property
    def types(self) -> list[str]:
        return [t for t in TYPES if any(r.type == t for r in self.results)]

    def summary(self, mode: str) -> dict:
        mine = [r for r in self.results if r.mode == mode]
        out = {t: summarise([r for r in mine if r.type == t], self.threshold) for t in self.types}
        return out | {"all": summarise(mine, self.threshold)}

    def latency(self, mode: str) -> dict[str, dict[str, float | None]]:
        ok = [r.timings for r in self.results if r.mode == mode and r.error is None]
        return {k: {"p50": percentile(v, 50), "p99": percentile(v, 99), "n": len(v)}
                for k in TIMINGS if (v := [t[k] for t in ok if k in t])}

    def to_dict(self) -> dict:
        modes = {m: {"summary": self.summary(m), "latency": self.latency(m)} for m in self.modes}
        return {"threshold": self.threshold, "modes": modes, "results": [r.to_dict() for r in self.results]}

    def to_markdown(self) -> str:
        lines: list[str] = []
        for mode in self.modes:
            lines += [f"### Mode `{mode}`", "", "| type | questions | answer | match | similar (≥ "
                      f"{self.threshold:g}) | time (contained) | time (overlaps) | right stream | errors |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for name, s in self.summary(mode).items():
                cells = [_cell(s[k]) for k in ("answer", "match", "similar", "time", "overlaps", "stream")]
                lines.append(f"| {'**all**' if name == 'all' else name} | {s['n']} | {' | '.join(cells)} | "
                             f"{s['errors']} |")
            lines += ["", "| latency (ms) | p50 | p99 |", "|---|---|---|"]
            lines += [f"| {k.removesuffix('_ms')} | {v['p50']:.1f} | {v['p99']:.1f} |"
                      for k, v in self.latency(mode).items()] or ["| (no answered question) | – | – |"]
            lines.append("")
        if {"manta", "baseline"} <= set(self.modes):
            lines += self._versus()
        return "\n".join(lines).rstrip() + "\n"

    def _versus(self) -> list[str]:
        m, b = self.summary("manta"), self.summary("baseline")
        lines = ["### Manta vs baseline", "", "| type | answer: manta | baseline | Δ points | "
                 "time: manta | baseline | Δ points |", "|---|---|---|---|---|---|---|"]
        for name in m:
            row = []
            for key in ("answer", "time"):
                a, z = m[name][key]["rate"], b.get(name, {}).get(key, {}).get("rate")
                delta = "–" if a is None or z is None else f"{(a - z) * 100:+.1f}"
                row += [_pct(a), _pct(z), delta]
            lines.append(f"| {'**all**' if name == 'all' else name} | {' | '.join(row)} |")
        return lines + [""]


def _pct(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.0f}%"


def _cell(s: dict) -> str:
    return "–" if not s["n"] else f"{s['correct']}/{s['n']} ({_pct(s['rate'])})"
