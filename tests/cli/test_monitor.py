"""``manta watch / watches / unwatch / alerts``: argument handling, output and one-line errors.

The app here is a small stand-in for the real service's monitoring API (contract of issue 17),
served by uvicorn on 127.0.0.1: it only records what the CLI sent and answers in the contract's
shapes. The real endpoints, with Ray and Serve, are covered by the end-to-end test on main.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Literal

import pytest
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from actors.cli import client as cli_client
from actors.cli.main import main
from actors.cli.monitor import span, sse_events

from tests.support.helpers import free_port

REPO = Path(__file__).resolve().parents[2]
TOKEN = "stand-in-token-0123456789abcdef0123456789"


def alert(i: int, stream: str = "cam-1") -> dict:
    return {"id": i, "watch": "w-0000abcd", "watch_text": "fire alarm", "stream": stream,
            "start": 60.0 * i + 1.2, "end": 60.0 * i + 4.9, "modality": "said", "kind": "speech",
            "text": "and then the fire alarm went off", "quote": "fire alarm", "score": 0.8 + i / 100,
            "fired_wall": 1.7e9, "sent_wall": None,
            "webhook": {"state": "failed" if i == 2 else "none", "attempts": 0,
                        "last_error": "HTTP 404" if i == 2 else None}}


class WatchIn(BaseModel):
    text: str = Field(min_length=1, max_length=500)
    streams: list[str] | None = None
    modality: Literal["any", "said", "shown", "seen"] = "any"
    threshold: float = Field(0.55, gt=0, le=1)
    cooldown_s: float = Field(60.0, ge=0)
    webhook_url: str | None = None


def stand_in() -> FastAPI:
    app = FastAPI()
    app.state.token = None
    app.state.bodies = []  # what POST /v1/watches received
    app.state.resumes = []  # each alert-stream connection's Last-Event-ID
    app.state.stop = threading.Event()
    watches: dict[str, dict] = {"w-0000abcd": {"id": "w-0000abcd", "text": "fire alarm", "streams": [],
                                               "modality": "said", "threshold": 0.55, "cooldown_s": 60.0,
                                               "webhook_url": None, "created_wall": 0.0, "alerts": 3}}
    alerts = [alert(i) for i in (1, 2, 3)]

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if app.state.token and request.headers.get("authorization") != f"Bearer {app.state.token}":
            return JSONResponse({"detail": "missing or wrong API token"}, status_code=401)
        return await call_next(request)

    @app.post("/v1/watches", status_code=201)
    def add(body: WatchIn):
        app.state.bodies.append(body.model_dump(exclude_unset=True))
        w = body.model_dump() | {"id": f"w-{len(watches):08x}", "streams": body.streams or [], "alerts": 0}
        watches[w["id"]] = w
        return {"watch": w}

    @app.get("/v1/watches")
    def listing():
        return {"watches": list(watches.values())}

    @app.delete("/v1/watches/{wid}")
    def remove(wid: str):
        if watches.pop(wid, None) is None:
            raise HTTPException(404, f"unknown watch {wid}")
        return {"removed": wid}

    @app.get("/v1/alerts")
    def listed(since: int = 0, stream: str | None = None, watch: str | None = None, limit: int = 100):
        out = [a for a in alerts if a["id"] > since and stream in (None, a["stream"])][:limit]
        return {"alerts": out, "last_id": out[-1]["id"] if out else since}

    @app.get("/v1/alerts/stream")
    def stream(request: Request):
        resume = request.headers.get("last-event-id")
        app.state.resumes.append(resume)
        after = int(resume) if resume else 0

        async def events():
            first = len(app.state.resumes) == 1
            yield ": keepalive\n\n"
            for a in alerts:
                if a["id"] > after and (not first or a["id"] <= 2):  # the first connection drops after #2
                    yield f"id: {a['id']}\nevent: alert\ndata: {json.dumps(a)}\n\n"
            while not first and not app.state.stop.is_set():
                await asyncio.sleep(0.1)
                yield ": keepalive\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


@pytest.fixture(scope="module")
def service():
    app = stand_in()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    app.state.port = port
    yield app
    app.state.stop.set()
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def manta(service, monkeypatch, capsys):
    """Run ``manta ARGS --port <stand-in>``: (exit status, stdout, stderr)."""
    monkeypatch.delenv("MANTA_API_TOKEN", raising=False)
    monkeypatch.setattr(cli_client.console, "width", 200)
    monkeypatch.setattr(cli_client.err, "width", 200)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main([*args, "--port", str(service.state.port)])
        out, errs = capsys.readouterr()
        return rc, out, errs

    return run


def test_watch_sends_the_options_given_and_prints_the_id(manta, service) -> None:
    rc, out, _ = manta("watch", "fire alarm", "--stream", "cam-*", "--stream", "lobby", "--modality", "said",
                       "--threshold", "0.7", "--cooldown", "30", "--webhook", "https://hooks.example/x")
    assert rc == 0 and "w-00000001" in out and "cam-*, lobby" in out
    assert service.state.bodies[-1] == {"text": "fire alarm", "streams": ["cam-*", "lobby"], "modality": "said",
                                        "threshold": 0.7, "cooldown_s": 30.0,
                                        "webhook_url": "https://hooks.example/x"}
    rc, out, _ = manta("watch", "smoke")
    assert rc == 0 and "every stream" in out
    assert service.state.bodies[-1] == {"text": "smoke"}  # the service's defaults for the rest


def test_bad_values_are_one_line_errors(manta) -> None:
    rc, _, errs = manta("watch", "x" * 501)  # refused by the service: 422
    assert rc == 1 and errs.count("\n") == 1 and "422" in errs and "text" in errs and "Traceback" not in errs
    with pytest.raises(SystemExit) as exited:  # refused before sending: argparse's usage error
        manta("watch", "x", "--threshold", "1.5")
    assert exited.value.code == 2


def test_watches_table_and_unwatch(manta) -> None:
    manta("watch", "exit sign", "--stream", "cam-2")
    rc, out, _ = manta("watches")
    assert rc == 0
    row = next(line for line in out.splitlines() if "w-0000abcd" in line)
    assert "fire alarm" in row and "all" in row and "said" in row and "0.55" in row and row.rstrip(" │").endswith("3")
    assert any("exit sign" in line and "cam-2" in line for line in out.splitlines())
    rc, out, _ = manta("unwatch", "w-0000abcd")
    assert rc == 0 and "w-0000abcd removed" in out
    rc, _, errs = manta("unwatch", "w-0000abcd")
    assert rc == 1 and "no watch w-0000abcd" in errs and errs.count("\n") == 1


def test_alerts_print_span_stream_watch_quote_and_score(manta) -> None:
    rc, out, _ = manta("alerts")
    lines = out.strip().splitlines()
    assert rc == 0 and len(lines) == 3
    assert lines[0] == "#1 1:01–1:04 cam-1 fire alarm “fire alarm” 0.81"
    assert "webhook failed: HTTP 404" in lines[1]
    rc, out, _ = manta("alerts", "--since", "2")
    assert [line.split()[0] for line in out.strip().splitlines()] == ["#3"]
    rc, out, _ = manta("alerts", "--since", "3")
    assert out.strip() == "no alerts after #3"
    assert span(3725.9) == "1:02:05" and span(59.99) == "0:59"


def test_service_not_running_and_401_are_one_line(manta, service, monkeypatch, capsys) -> None:
    for command in (["watches"], ["alerts", "--follow"], ["unwatch", "w-1"]):
        assert main([*command, "--port", str(free_port())]) == 2
        errs = capsys.readouterr().err
        assert "Manta is not running at http://127.0.0.1:" in errs and errs.count("\n") == 1
    service.state.token = TOKEN
    try:
        rc, _, errs = manta("watches")
        assert rc == 1 and "wants its API token" in errs and errs.count("\n") == 1
        monkeypatch.setenv("MANTA_API_TOKEN", TOKEN)
        assert manta("watches")[0] == 0
    finally:
        service.state.token = None


def test_sse_parsing() -> None:
    lines = [": keepalive", "", "id: 4", "event: alert", "data: {\"a\":", "data: 1}", "", "data: x", ""]
    assert list(sse_events(iter(lines))) == [("4", "alert", "{\"a\":\n1}"), (None, "message", "x")]


def test_follow_resumes_after_a_drop_and_ctrl_c_exits_0(service) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MANTA_API_TOKEN"}
    env |= {"PYTHONPATH": str(REPO), "COLUMNS": "200"}
    # Ctrl+C is SIGINT with its default action: a parent that ignores SIGINT (a job started in the
    # background) would hand that on, and Python then never raises KeyboardInterrupt.
    proc = subprocess.Popen([sys.executable, "-m", "actors.cli.main", "alerts", "--follow", "--since", "0",
                             "--port", str(service.state.port)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[str] = []
    errors: list[str] = []  # read as it comes, so a full pipe can never block the CLI
    readers = [threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True),
               threading.Thread(target=lambda: errors.extend(iter(proc.stderr.readline, "")), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        deadline = time.monotonic() + 60
        while sum(line.startswith("#") for line in lines) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sum(line.startswith("#") for line in lines) == 3, (lines, errors, service.state.resumes)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    for reader in readers:
        reader.join(5)
    errs = "".join(errors)
    assert [line.split()[0] for line in lines] == ["#1", "#2", "#3"], (lines, errs)  # none lost, none twice
    assert service.state.resumes[:2] == ["0", "2"]  # the second connection resumed after #2
    assert rc == 0 and "Traceback" not in errs and "reconnecting" in errs
