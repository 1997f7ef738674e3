"""The `manta` command as a user runs it: subprocesses against the real service."""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import urlparse

import pytest

from tests.support.helpers import free_port, media, normalise

pytestmark = pytest.mark.slow


def manta(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "actors.cli.main", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_client_commands_without_a_service_say_so():
    r = manta("ask", "anything", "--port", str(free_port()))
    assert r.returncode == 2
    assert "not running" in r.stderr and "manta up" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_ingest_ask_status_stop(service):
    port = str(urlparse(service.base_url).port)
    r = manta("ingest", str(media("jfk_inaugural_1961.flac")), "--name", "cli-jfk", "--wait",
              "--port", port)
    assert r.returncode == 0, r.stderr
    assert "finished" in r.stdout
    r = manta("ask", "What does the speaker ask of his fellow Americans?", "--stream", "cli-jfk",
              "--port", port)
    assert r.returncode == 0, r.stderr
    # The answer model's sentence streams first; the quote it rests on follows with its citation.
    sentence, grounding = r.stdout.splitlines()[:2]
    assert sentence.strip() and "Said:" not in sentence
    assert "ask not what your country can do for you" in normalise(grounding)
    assert "[cli-jfk 0:0" in grounding  # the citation: stream and time span
    assert "source: cli-jfk 0:0" in r.stdout  # and again as a link to the segments
    r = manta("status", "--port", port)
    assert r.returncode == 0 and "cli-jfk" in r.stdout and "finished" in r.stdout
    assert "ingesting · total RTF" in r.stdout  # the whole service at a glance
    r = manta("stop", "cli-jfk", "--port", port)
    assert r.returncode == 0 and "stay searchable" in r.stdout
    r = manta("stop", "cli-jfk", "--remove", "--port", port)
    assert r.returncode == 0 and "removed" in r.stdout, r.stderr
    assert service.get("/v1/streams/cli-jfk").status_code == 404
    r = manta("ask", "fellow Americans", "--stream", "cli-jfk", "--port", port)
    assert r.returncode == 1 and "unknown stream(s): cli-jfk" in r.stderr


def test_cli_errors_are_one_line(service, tmp_path):
    port = str(urlparse(service.base_url).port)
    r = manta("ingest", str(tmp_path / "missing.mp4"), "--port", port)
    assert r.returncode == 1
    assert "400: no such file" in r.stderr and "Traceback" not in r.stderr
    r = manta("ask", "x", "--stream", "nope", "--port", port)
    assert r.returncode == 1 and "404" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("applications: [{args: {settings: {asr_model: base, colour: blue}}}]")
    r = manta("status", "--config", str(bad))
    assert r.returncode == 1 and "colour" in r.stderr and "Traceback" not in r.stderr


def test_demo_end_to_end():
    """The README's first command: its own Ray + Serve, the generated bulletin, answers with times."""
    r = manta("demo", "--port", str(free_port()), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = normalise(r.stdout)
    assert "the harbor bridge will close for repairs on tuesday" in out or \
        "the harbour bridge will close for repairs on tuesday" in out
    assert "[demo 0:0" in r.stdout  # a cited time span
