"""eval/questions_v2.jsonl, the question set of issue 19, checked without a service or a model:
it loads, keeps the first 46 questions as they were, names only media the media README lists,
and its dev/test split keeps each fact in one part and each type in both."""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from streaming.tools.evaluate import SPLITS, TYPES, questions_from_jsonl

from tests.support.helpers import MEDIA

REPO = Path(__file__).resolve().parents[2]
V1, V2 = REPO / "eval" / "questions.jsonl", REPO / "eval" / "questions_v2.jsonl"
MEDIA_NAME = re.compile(r"[\w.{},-]+\.(?:flac|wav|mp3|mp4|webm|mkv)\b")


def rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def readme_media(text: str) -> set[str]:
    """Every media file name in the README, with "a_{1,2}.wav" read as a_1.wav and a_2.wav."""
    names = set()
    for token in MEDIA_NAME.findall(text):
        parts = re.split(r"\{([^}]*)\}", token)  # literal, choices, literal, ...
        choices = [p.split(",") if i % 2 else [p] for i, p in enumerate(parts)]
        names.update("".join(c) for c in itertools.product(*choices))
    return names


def test_readme_media_expands_braces():
    assert readme_media("| x_{01,02}.wav | and y.mp4, `z.tar` |") == {"x_01.wav", "x_02.wav", "y.mp4"}


def test_the_set_loads_and_is_big_enough():
    questions = questions_from_jsonl(V2.read_text(encoding="utf-8"), source=V2.name)
    assert len(questions) >= 150
    assert len({q.id for q in questions}) == len(questions)
    assert all(q.note and q.fact and q.split in SPLITS for q in questions), "every question: note, fact, split"
    counts = Counter(q.type for q in questions)
    assert set(counts) == set(TYPES), counts


def test_the_first_46_are_kept_unchanged():
    old, new = rows(V1), {r["id"]: r for r in rows(V2)}
    assert len(old) == 46
    for o in old:
        assert o["id"] in new, o["id"]
        assert {k: v for k, v in new[o["id"]].items() if k not in ("fact", "split")} == o, o["id"]


def test_split_keeps_facts_whole_and_every_type_in_both_parts():
    questions = questions_from_jsonl(V2.read_text(encoding="utf-8"), source=V2.name)
    parts: dict[str, set[str]] = {}
    for q in questions:
        parts.setdefault(q.fact, set()).add(q.split)
    assert all(len(p) == 1 for p in parts.values()), {f: p for f, p in parts.items() if len(p) > 1}
    by_type = Counter((q.type, q.split) for q in questions)
    for t in TYPES:
        dev, test = by_type[t, "dev"], by_type[t, "test"]
        assert dev and test, (t, dev, test)
        assert abs(dev - test) <= max(2, (dev + test) // 5), (t, dev, test)  # about half each


def test_every_media_file_is_listed_and_present():
    if not MEDIA.is_dir():
        pytest.skip(f"real test media not available: {MEDIA} (the question file itself validated)")
    listed = readme_media((MEDIA / "README.md").read_text(encoding="utf-8"))
    named = {m for r in rows(V2) for m in r["media"]}
    assert not sorted(named - listed), "named in questions_v2.jsonl but not in the media README"
    assert not sorted(m for m in named if not (MEDIA / m).is_file())
