"""The layering is checked, not hoped for: import-linter's contracts in pyproject.toml (streaming/ is
pure, manta_models/ knows no Ray, stages follow the data flow, no import circles) hold on this tree,
and they do catch a violation planted in a copy of it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.helpers import REPO


def lint(root: Path) -> subprocess.CompletedProcess:
    # lint-imports reads pyproject.toml from, and imports the packages of, its working directory.
    return subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                           "lint_imports_command()"], cwd=root, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_contracts_hold_on_this_tree():
    r = lint(REPO)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


@pytest.mark.parametrize("module, planted, broken", [
    ("streaming/ingest/segmenter.py", "import ray", "streaming/ is pure logic"),
    ("streaming/ingest/segmenter.py", "from streaming.answer import rerank", "follow the data flow"),
    ("manta_models/packaged.py", "import ray", "knows no Ray"),
    ("actors/logs.py", "from actors import runtime", "no import circles"),
])
def test_a_planted_violation_is_caught(tmp_path, module, planted, broken):
    for part in ("streaming", "actors", "manta_models"):
        shutil.copytree(REPO / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__", "*.pt"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{planted}  # planted by tests/test_layers.py\n")
    r = lint(tmp_path)
    assert r.returncode != 0 and broken in r.stdout.split("Broken contracts")[-1], r.stdout[-3000:]
