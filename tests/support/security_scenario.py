"""Manta exposed as an operator would expose it, inside a network namespace the test made, for
tests/service/test_security.py.

The test runs this module under ``unshare --net`` with only the namespace's loopback up, so a source
pointed at cloud metadata or a private range cannot send a packet off this machine even if the
policy under test were broken: such a connect fails with "network unreachable". Inside, the API
listens on 0.0.0.0 with an API token, ``allowed_hosts``, ``media_roots`` and ``source_allow``, as
the README's "Security" section tells an operator to. Prints one JSON object: what each request got.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from actors.logs import prepare_environment

prepare_environment(local=True)  # before Ray is imported

import httpx  # noqa: E402

from actors import runtime  # noqa: E402
from streaming.settings import Settings  # noqa: E402
from tests.support.helpers import wait_serving  # noqa: E402

TOKEN = "scenario-token-0123456789abcdef"
ALLOWED_PRIVATE = "10.9.9.9"  # allow-listed by the operator; unreachable in the namespace


def main(media_dir: str, clip: str, port: int) -> None:
    out: dict = {}
    data = tempfile.TemporaryDirectory(prefix="manta-security-")
    outside = Path(data.name) / "outside.wav"
    outside.write_bytes(Path(clip).read_bytes())  # a real media file, but outside the media roots
    os.environ["MANTA_API_TOKEN"] = TOKEN
    settings = Settings(host="0.0.0.0", port=port, data_dir=Path(data.name) / "data", media_roots=[media_dir],
                        source_allow=[f"{ALLOWED_PRIVATE}/32"], allowed_hosts=["manta.example"],
                        asr_model="tiny.en", visual_model="off", ocr="off", answer_model="off",
                        open_timeout_s=2.0)
    base = f"http://127.0.0.1:{port}"
    anon = httpx.Client(base_url=base, timeout=30, trust_env=False)
    auth = httpx.Client(base_url=base, timeout=30, trust_env=False,
                        headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        runtime.start_ray(settings)
        runtime.deploy(settings, restore=False)
        wait_serving(anon)

        out["healthz_anonymous"] = anon.get("/healthz").json()
        out["healthz_with_token"] = sorted(auth.get("/healthz").json())
        out["list_anonymous"] = reply(anon.get("/v1/streams"))
        out["list_wrong_token"] = reply(anon.get("/v1/streams", headers={"Authorization": "Bearer nope"}))
        out["list_with_token"] = auth.get("/v1/streams").status_code
        out["delete_anonymous"] = anon.delete("/v1/streams/x", params={"remove": "true"}).status_code
        out["docs_anonymous"] = anon.get("/openapi.json").status_code
        out["rebound_host"] = reply(auth.get("/v1/streams", headers={"Host": "attacker.example:8000"}))
        out["listed_host"] = auth.get("/v1/streams", headers={"Host": "manta.example"}).status_code

        attempts = {
            "metadata": "http://169.254.169.254/latest/meta-data/iam.mp4",
            "metadata_mapped": "http://[::ffff:169.254.169.254]/live.m3u8",
            "private": "http://10.0.0.1/live.m3u8",
            "loopback_exposed": f"http://127.0.0.1:{port}/healthz",
            "tcp_listen": "tcp://93.184.216.34:9999?listen=1",
            "udp_localport": "udp://0.0.0.0:5000?localport=22",
            "file_outside_roots": str(outside),
            "file_missing": str(Path(media_dir) / "missing.mp4"),
            "file_system": "/etc/passwd",
        }
        out["refused"] = {k: reply(auth.post("/v1/streams", json={"source": v})) for k, v in attempts.items()}

        # Allow-listed private host: accepted, and the namespace is what keeps it from leaving.
        r = auth.post("/v1/streams", json={"source": f"http://{ALLOWED_PRIVATE}/live.m3u8", "name": "allowed"})
        out["allowed_private"] = reply(r)
        if r.status_code == 201:
            out["allowed_private_status"] = wait(auth, r.json()["id"])

        r = auth.post("/v1/streams", json={"source": clip, "name": "inside"})
        out["inside_roots"] = reply(r)
        if r.status_code == 201:
            out["inside_status"] = wait(auth, r.json()["id"])
            out["inside_segments"] = len(auth.get("/v1/streams/inside/segments").json()["segments"])

        from openai import OpenAI

        chat = OpenAI(base_url=base + "/v1", api_key=TOKEN, http_client=httpx.Client(trust_env=False))
        reply_ = chat.chat.completions.create(model="manta", messages=[{"role": "user", "content": "what is said?"}])
        out["openai_with_api_key"] = bool(reply_.choices[0].message.content)

        cli = [sys.executable, "-m", "actors.cli.main", "status", "--port", str(port)]
        env = {k: v for k, v in os.environ.items() if k != "MANTA_API_TOKEN"}
        no_token = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=60)
        with_token = subprocess.run(cli, capture_output=True, text=True, env=env | {"MANTA_API_TOKEN": TOKEN},
                                    timeout=60)
        out["cli_without_token"] = [no_token.returncode, no_token.stderr.strip()]
        out["cli_with_token"] = [with_token.returncode, "inside" in with_token.stdout]
    finally:
        runtime.shutdown(settings)
        data.cleanup()
    print(json.dumps(out))


def reply(r: httpx.Response) -> list:
    try:
        detail = r.json().get("detail")
    except ValueError:
        detail = r.text
    return [r.status_code, detail]


def wait(http: httpx.Client, sid: str, timeout: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        st = http.get(f"/v1/streams/{sid}").json()
        if st.get("state") in ("finished", "failed", "stopped") or time.monotonic() > deadline:
            return {"state": st.get("state"), "last_error": st.get("last_error")}
        time.sleep(0.5)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
