"""A real multi-node Ray cluster on this machine (tests/support/cluster_scenario.py): stream actors
and model replicas on both nodes; the worker node removed, its stream resumes on the head from its
checkpoint with nothing committed lost or repeated."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.helpers import REPO, free_port, media_head

pytestmark = pytest.mark.slow


CLIP_S = 50.5  # the manifesto's first 50 s, cut in a pause: long enough to lose a node mid-way


def test_streams_and_models_span_nodes_and_survive_losing_one(tmp_path):
    clip = media_head("manifesto_audiobook_titlecard.mp4", CLIP_S, tmp_path)
    proc = subprocess.run([sys.executable, "-m", "tests.support.cluster_scenario", str(clip), str(free_port())],
                          cwd=REPO, capture_output=True, text=True, timeout=1200)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    out = json.loads(lines[-1])
    assert proc.returncode == 0, proc.stderr[-5000:]
    head, worker = out["nodes"]["head"], out["nodes"]["worker"]
    # Placed on both nodes: one models replica each, and the two streams spread.
    assert out["replicas_on"] == sorted([head, worker])
    assert sorted(out["streams_on"].values()) == sorted([head, worker]), out["streams_on"]
    moved = next(sid for sid, node in out["streams_on"].items() if node == worker)
    # After the worker went, every stream runs on the head and finished its clip.
    assert set(out["streams_on_after"].values()) == {head}
    for sid, st in out["final"].items():
        assert st["state"] == "finished", st
        before, after = out["before"][sid], out["after"][sid]
        key = [(s["seq"], s["start"], s["end"], s["text"]) for s in before]
        assert [(s["seq"], s["start"], s["end"], s["text"]) for s in after[:len(before)]] == key, sid
        seqs = [s["seq"] for s in after]
        assert seqs == sorted(set(seqs)), f"{sid}: a segment repeated"
        assert all(a["end"] <= b["start"] + 1e-6 for a, b in zip(after, after[1:])), f"{sid}: overlapping segments"
        assert after[-1]["end"] > CLIP_S - 8, f"{sid} stopped at {after[-1]['end']} of {CLIP_S} s"
    assert "restarted after a crash" in out["final"][moved]["notes"]
