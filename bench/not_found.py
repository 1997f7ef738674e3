"""Calibrating the not-found gate on the development split of eval/questions_v2.jsonl.

The gate answers "not found" unless the best candidate's cosine is ≥ STRONG, or ≥ WEAK and it
shares a content word with the question (streaming/answer/grounding.py). Each answer of a
``bench.answer_quality --json`` run carries what the gate saw (``gate``: dense, lexical). This
replays the gate over a grid of (STRONG, WEAK) on the *dev* questions only and reports, for the
current pair and the best one, the precision of "not found" on absent questions and the recall on
answerable ones, then the same two pairs on *test*, which is never used to choose.

A replay assumes the answer model declines no more often than it did in the run: an answer the gate
passed but the model declined stays declined; one the gate stopped is assumed answered if let through.
Listings (questions naming no content) are not gated and keep their verdict.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from streaming.answer import grounding as g
from streaming.tools.evaluate import questions_from_jsonl

from .common import REPO, emit, parse_args, section, table

KEY = "not_found"
QUESTIONS = REPO / "eval" / "questions_v2.jsonl"


def replay(results: list[dict], strong: float, weak: float) -> tuple[float, float, float, float]:
    """(precision of "not found" on absent, recall on answerable, their harmonic mean, the share
    of absent questions refused)."""
    refused = absent_refused = answerable = answered = absent = 0
    for r in results:
        found = r["found"]
        if r.get("gate"):
            d, lex = r["gate"]["dense"], r["gate"]["lexical"]
            passes = d >= strong or (lex > 0 and d >= weak)
            declined = g.retrieval_found(d, lex) and not found  # the model said NOT FOUND
            found = passes and not declined
        if r["type"] == "absent":
            absent += 1
            refused += not found
            absent_refused += not found
        else:
            answerable += 1
            answered += found
            refused += not found
    precision = absent_refused / refused if refused else 1.0
    recall = answered / answerable if answerable else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1, absent_refused / absent if absent else 1.0


def balanced(scores: tuple[float, float, float, float]) -> float:
    return (scores[1] + scores[3]) / 2


def main() -> None:
    args = parse_args(__doc__, [
        ("results", dict(help="the --json file of a bench.answer_quality run on questions_v2.jsonl")),
        ("--questions", dict(default=str(QUESTIONS), help="the question file that run used"))])
    split = {q.id: q.split for q in questions_from_jsonl(Path(args.questions).read_text(), args.questions)}
    doc = json.loads(Path(args.results).read_text())
    results = [r for r in doc["results"] if r["mode"] == "manta" and r["error"] is None]
    dev = [r for r in results if split.get(r["id"]) == "dev"]
    test = [r for r in results if split.get(r["id"]) == "test"]
    grid = [(s, w) for s in np.round(np.arange(0.20, 0.61, 0.02), 2) for w in np.round(np.arange(0.0, 0.41, 0.02), 2)
            if w <= s]
    # Balanced accuracy: a refused absent question and an answered answerable one count alike (an F1
    # on "not found" would favour answering everything, there being far more answerable questions).
    best = max(grid, key=lambda sw: (balanced(replay(dev, *sw)), -abs(sw[0] - g.STRONG_DENSE)))
    rows = []
    for name, pair in (("today", (g.STRONG_DENSE, g.WEAK_DENSE)), ("best on dev", best)):
        for part, rs in (("dev", dev), ("test", test)):
            p, r, f, a = replay(rs, *pair)
            rows.append([name, f"{pair[0]:.2f} / {pair[1]:.2f}", part, len(rs), f"{p:.0%}", f"{r:.0%}", f"{f:.2f}",
                         f"{a:.0%}", f"{(r + a) / 2:.0%}"])
    body = [f"Replayed on `{args.results}` ({len(dev)} dev and {len(test)} test answers, mode manta).", "",
            *table(["gate", "STRONG / WEAK cosine", "split", "questions", "precision of not found",
                    "recall on answerable", "F1", "absent questions refused", "balanced accuracy"], rows)]
    emit(KEY, section("Not-found gate calibrated on the dev split", body), args.write)


if __name__ == "__main__":
    main()
