"""What one client can make the service hold or say: limits on streams, bodies, time and pictures,
and no leaks of Ray's internals, answer-model errors or source credentials.

The first tests need no Ray (the guards on their own); the slow ones share the session's service.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import struct
import time
import zlib
from pathlib import Path

import pytest
from fastapi import Request  # at module level: the route's string annotation is resolved here

from actors.serve import limits
from actors.serve.limits import decode_image
from actors.serve.schemas import QueryRequest, SimilarRequest
from tests.support.helpers import free_port


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height``: what a decompression bomb looks like to its reader."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


def _picture(fmt: str) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(out, format=fmt)
    return out.getvalue()


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nnewpath 0 0 moveto 8 8 lineto stroke\n%%EOF\n"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_only_png_and_jpeg_are_decoded():
    assert decode_image(b64(_picture("PNG"))).shape == (8, 8, 3)
    assert decode_image(b64(_picture("JPEG"))).shape == (8, 8, 3)
    for raw in (_picture("GIF"), _picture("BMP"), _picture("TIFF"), EPS):
        with pytest.raises(ValueError, match="not a PNG or JPEG"):
            decode_image(b64(raw))


def test_a_decompression_bomb_is_refused_by_its_header():
    with pytest.raises(ValueError, match="pixels"):
        decode_image(b64(_png_header(10_000, 6_000)))  # over our cap, under PIL's
    with pytest.raises(ValueError, match="pixels"):
        decode_image(b64(_png_header(30_000, 30_000)))  # PIL's own bomb error


def test_streams_named_twice_are_asked_once_in_order():
    assert QueryRequest(question="q", streams=["b", "a", "b", "a", "c"]).streams == ["b", "a", "c"]
    assert SimilarRequest(image="aa", streams=["x", "x"]).streams == ["x"]
    assert QueryRequest(question="q").streams is None


@pytest.fixture
def guarded():
    """A bare FastAPI app behind RequestLimits with a 1 KB body limit and a 0.5 s timeout."""
    import asyncio

    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()
    app.add_middleware(limits.RequestLimits)

    @app.post("/echo")
    async def echo(request: Request):
        return {"bytes": len(await request.body())}

    @app.get("/slow")
    async def slow():
        await asyncio.sleep(5)
        return {}

    saved = dict(limits._limits)
    limits.set_limits(1 / 1024, 0.5)
    try:
        yield TestClient(app)
    finally:
        limits._limits.update(saved)


def test_a_body_over_the_limit_is_refused_before_it_is_parsed(guarded):
    assert guarded.post("/echo", content=b"x" * 1024).json() == {"bytes": 1024}
    r = guarded.post("/echo", content=b"x" * 1025)
    assert r.status_code == 413 and "max_body_mb" in r.json()["detail"]
    # Without a Content-Length (chunked), counted as it arrives.
    r = guarded.post("/echo", content=iter([b"x" * 600, b"x" * 600]))
    assert r.status_code == 413 and "max_body_mb" in r.json()["detail"]


def test_a_request_without_a_response_in_time_gets_504(guarded):
    t = time.monotonic()
    r = guarded.get("/slow")
    assert r.status_code == 504 and "request_timeout_s" in r.json()["detail"]
    assert time.monotonic() - t < 3


def test_logs_never_show_source_credentials():
    from actors.logs import JsonFormatter

    record = logging.LogRecord("manta.directory", logging.INFO, __file__, 1,
                               "restored stream %s from rtsp://cam:HUNTER2@10.0.0.5/live", ("s",), None)
    record.fields = {"event": "stream_restored", "source": "srt://h:9000?passphrase=PHRASE42&latency=20"}
    line = JsonFormatter().format(record)
    assert "HUNTER2" not in line and "PHRASE42" not in line
    assert json.loads(line)["source"] == "srt://h:9000?passphrase=***&latency=20"


# -------------------------------------------------------------------------- on the real service
class _Filler:
    """Stands for a stream that is never scheduled (it asks for a resource no node has): it counts
    towards max_streams and never answers, at no cost."""

    def status(self):
        return {}

    def retrieve(self, plan):
        return None

    def segments(self, start, end, limit):
        return []


def _fillers(service, count: int, prefix: str):
    import ray

    from actors.stream_actor import actor_name

    cls = ray.remote(num_cpus=0, resources={"manta-test-never": 1})(_Filler)
    return [cls.options(name=actor_name(f"{prefix}-{i}"), namespace=service.settings.namespace).remote()
            for i in range(count)]


@pytest.mark.slow
def test_limits_on_streams_bodies_and_slow_streams(service):
    import ray

    r = service.post("/v1/query", content=b"{" + b" " * (17 * 1024 * 1024) + b"}",
                     headers={"content-type": "application/json"})
    assert r.status_code == 413 and "max_body_mb" in r.json()["detail"]

    existing = len(service.get("/v1/streams").json()["streams"])
    fillers = _fillers(service, service.settings.max_streams - existing, "filler")
    try:
        deadline = time.monotonic() + 30
        while len(service.get("/v1/streams").json()["streams"]) < service.settings.max_streams:
            assert time.monotonic() < deadline, "the fillers never showed up as streams"
            time.sleep(0.5)
        r = service.post("/v1/streams", json={"source": f"udp://127.0.0.1:{free_port()}", "name": "one-more"})
        assert r.status_code == 429, r.text
        assert "max_streams" in r.json()["detail"] and "remove=true" in r.json()["detail"]
        # A stream that does not answer: 504 with a message, and a question naming it twice
        # waits on it once and says so once.
        r = service.get("/v1/streams/filler-0/segments")
        assert r.status_code == 504 and "filler-0 did not answer" in r.json()["detail"]
        answer = service.ask("anything?", streams=["filler-0", "filler-0"], generate=False)
        assert sum("filler-0" in w for w in answer["warnings"]) == 1, answer["warnings"]
    finally:
        for f in fillers:
            ray.kill(f, no_restart=True)


@pytest.mark.slow
def test_pictures_other_than_png_or_jpeg_and_bombs_get_422(service):
    for raw in (_picture("GIF"), _png_header(30_000, 30_000)):
        r = service.post("/v1/frames/similar", json={"image": b64(raw)})
        assert r.status_code == 422, r.text
        assert "PNG or JPEG" in r.json()["detail"] or "pixels" in r.json()["detail"]


def _session_logs() -> list[Path]:
    import ray

    session = Path(ray._private.worker._global_node.get_session_dir_path())
    return [p for p in (session / "logs").rglob("*") if p.is_file()]


@pytest.mark.slow
def test_credentials_stay_out_of_status_and_logs_and_a_lost_actor_says_so_plainly(service):
    import ray

    from actors.stream_actor import actor_name

    # Nothing listens there: the stream fails to connect, and its error quotes the source.
    source = f"rtsp://cam:HUNTER2x@127.0.0.1:{free_port()}/live?token=TOKEN42x&channel=1"
    sid = service.add(source, name="secret-cam")
    status = service.wait(sid, states=("failed", "reconnecting"), timeout=120)
    assert "rtsp://cam:***@127.0.0.1:" in status["last_error"], status  # the error quotes the source
    listing = service.get("/v1/streams").text
    for shown in (json.dumps(status), listing):
        assert "HUNTER2x" not in shown and "TOKEN42x" not in shown
    assert status["source"].startswith("rtsp://cam:***@127.0.0.1:") and "token=***&channel=1" in status["source"]
    for path in _session_logs():
        text = path.read_text(errors="replace")
        assert "HUNTER2x" not in text and "TOKEN42x" not in text, path

    ray.kill(ray.get_actor(actor_name(sid), namespace=service.settings.namespace), no_restart=True)
    deadline = time.monotonic() + 30
    while (status := service.get(f"/v1/streams/{sid}").json()).get("state") != "lost":
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    error = status["last_error"]
    assert sid in error and "actor is gone" in error
    for leak in ("Traceback", "pid", ".py", "/tmp", "ActorDiedError", "HUNTER2x"):
        assert leak not in error, error
    r = service.get(f"/v1/streams/{sid}/segments")
    assert r.status_code == 503 and sid in r.json()["detail"] and "Traceback" not in r.text
