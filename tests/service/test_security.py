"""Safe to expose: remote sources that connect, the API token, the Host guard, the source policy.

The tests that try forbidden destinations run the service inside a network namespace they create
(``unshare --net``, loopback only): even a broken policy could not send a packet off this machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from streaming.tools import broadcast
from tests.support.helpers import REPO, free_port, media

SPEECH = "librivox_sense_and_sensibility_0880.wav"


def in_namespace(*cmd: str, timeout: float) -> subprocess.CompletedProcess:
    """``cmd`` in a fresh network namespace whose only interface is its loopback."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip (util-linux, iproute2) to make a network namespace")
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace here (needs root): {probe.stderr.strip()}")
    script = "ip link set lo up && exec " + " ".join(f"'{c}'" for c in cmd)
    return subprocess.run(["unshare", "--net", "sh", "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_an_exposed_service_guards_every_route_and_refuses_forbidden_sources():
    clip = media(SPEECH)
    proc = in_namespace(sys.executable, "-m", "tests.support.security_scenario", str(clip.parent), str(clip),
                        str(free_port()), timeout=900)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    out = json.loads(lines[-1])

    # The token: every route needs it; /healthz says only that the service is up.
    assert out["healthz_anonymous"] == {"ok": True}
    assert "streams" in out["healthz_with_token"]
    assert out["list_anonymous"][0] == 401 and "Bearer" in out["list_anonymous"][1]
    assert out["list_wrong_token"][0] == 401
    assert out["list_with_token"] == 200
    assert out["delete_anonymous"] == 401 and out["docs_anonymous"] == 401
    # DNS rebinding: a Host name nobody listed is refused, a listed one served.
    assert out["rebound_host"][0] == 400 and "allowed_hosts" in out["rebound_host"][1]
    assert out["listed_host"] == 200

    refused = out["refused"]
    for attempt, (code, detail) in refused.items():
        assert code == 403, (attempt, code, detail)
        assert "Traceback" not in detail
    assert "link-local" in refused["metadata"][1] and "link-local" in refused["metadata_mapped"][1]
    assert "private" in refused["private"][1]
    assert "loopback" in refused["loopback_exposed"][1]
    assert "listen" in refused["tcp_listen"][1] and "localport" in refused["udp_localport"][1]
    # Files: one answer whether outside the roots, missing or a system file: no map of the disk.
    assert refused["file_outside_roots"][1] == refused["file_missing"][1] == refused["file_system"][1]

    # The operator's allow-list lets a private host through; the namespace is all that stops it.
    assert out["allowed_private"][0] == 201, out["allowed_private"]
    assert out["allowed_private_status"]["state"] == "failed"
    assert "unreachable" in out["allowed_private_status"]["last_error"].lower()
    # A media file under the roots is ingested as ever.
    assert out["inside_roots"][0] == 201, out["inside_roots"]
    assert out["inside_status"]["state"] == "finished", out["inside_status"]
    assert out["inside_segments"] > 0

    assert out["openai_with_api_key"]  # an OpenAI client's api_key is the bearer token
    code, message = out["cli_without_token"]
    assert code == 1 and "MANTA_API_TOKEN" in message and "Traceback" not in message
    assert out["cli_with_token"] == [0, True]


@pytest.mark.slow
def test_a_remote_hls_broadcast_connects_under_manta_up(service):
    """Ray's processes get a closed proxy so its dashboard cannot probe cloud metadata; the stream
    actors inherited it and FFmpeg honoured it, so every non-loopback HLS server was refused at
    once. 127.0.0.2 stands for a remote server: only 127.0.0.1 is exempt from the proxy."""
    assert os.environ.get("http_proxy", "").startswith("http://127.0.0.1:9")  # the closed proxy is set
    with broadcast.hls(media("manifesto_audiobook_titlecard.mp4"), free_port(), host="127.0.0.2",
                       speed=4.0, max_seconds=24.0, segment_s=1) as b:
        assert b.ready.wait(30)
        sid = service.add(b.url, name="remote-hls")
        deadline = time.monotonic() + 120
        while True:
            st = service.get(f"/v1/streams/{sid}").json()
            segs = service.get(f"/v1/streams/{sid}/segments").json()["segments"]
            if any(s["text"].strip() for s in segs) or st["state"] in ("failed", "finished"):
                break
            assert time.monotonic() < deadline, st
            time.sleep(1.0)
    assert st["state"] != "failed", st
    assert any(s["text"].strip() for s in segs), st  # speech from the remote server was transcribed


def test_a_loopback_service_refuses_a_rebound_host_name(service):
    """DNS rebinding: a page's own name pointed at 127.0.0.1 gets nothing from the local API."""
    r = service.get("/v1/streams", headers={"Host": "attacker.example"})
    assert r.status_code == 400 and "allowed_hosts" in r.json()["detail"]
    assert service.get("/v1/streams", headers={"Host": "localhost:8000"}).status_code == 200
    assert "streams" in service.get("/healthz").json()  # no token configured: as easy as before


def test_listening_beyond_loopback_needs_a_token(monkeypatch, tmp_path):
    from actors.serve.app import build_app

    monkeypatch.delenv("MANTA_API_TOKEN", raising=False)
    with pytest.raises(ValueError, match="without an API token"):
        build_app({"settings": {"host": "0.0.0.0"}})
    r = subprocess.run([sys.executable, "-m", "actors.cli.main", "up", "--host", "0.0.0.0"], cwd=REPO,
                       capture_output=True, text=True, timeout=60,
                       env={k: v for k, v in os.environ.items() if k != "MANTA_API_TOKEN"})
    assert r.returncode == 1 and "MANTA_API_TOKEN" in r.stderr and "Traceback" not in r.stderr
    short = tmp_path / "token"
    short.write_text("abc\n")
    with pytest.raises(ValueError, match="at least 16 characters"):
        build_app({"settings": {"host": "0.0.0.0", "api_token_file": str(short)}})
