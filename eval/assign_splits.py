"""Give each question of a JSONL question file that has no "split" yet its split, in place.

    PYTHONPATH=. python3 eval/assign_splits.py eval/questions_v2.jsonl

Questions that have a split keep it (a split is decided once, before any tuning); a new question of
a fact already split joins that fact's part; new facts are placed by
``streaming.tools.evaluate.assign_splits`` (SHA-256 order of the fact name, then the part that keeps
dev and test per type most equal). See eval/README.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from streaming.tools.evaluate import assign_splits, questions_from_jsonl


def main(path: str) -> int:
    file = Path(path)
    rows = [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    splits = assign_splits(rows)
    out = [json.dumps(row | {"split": splits[row["id"]]}, ensure_ascii=False) for row in rows]
    text = "\n".join(out) + "\n"
    questions_from_jsonl(text, source=file.name)  # never write a file the loader would refuse
    file.write_text(text, encoding="utf-8")
    new = sum("split" not in row for row in rows)
    print(f"{file}: {len(rows)} questions, {new} newly split")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "eval/questions_v2.jsonl"))
