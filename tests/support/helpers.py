"""Helpers every kind of test shares: real media from ../shared/media (or a skip with the reason),
free loopback ports, threads that must all finish, text normalised for comparison, and a thin HTTP
client for the service tests (loopback only, never through a proxy)."""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
MEDIA = REPO.parent / "shared" / "media"


def media(name: str) -> Path:
    """A file from ../shared/media, or skip (with the reason printed) on a clone without it."""
    path = MEDIA / name
    if not path.is_file():
        pytest.skip(f"real test media not available: {path} (CI always has ../shared/media)")
    return path


def media_head(name: str, seconds: float, folder: Path) -> Path:
    """The first ``seconds`` of a file from ../shared/media, written into ``folder`` (a test's
    temporary folder, never the project): a scenario that needs a stream's whole life, and not
    its length, runs in less time. Packets are copied, not re-encoded."""
    import subprocess

    source = media(name)
    out = folder / f"{source.stem}_first{seconds:g}s{source.suffix}"
    if not out.exists():
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), "-t", f"{seconds:g}", "-map", "0",
                        "-c", "copy", str(out)], check=True, timeout=60)
    return out


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_threads(threads, errors: list, timeout: float = 60.0) -> None:
    """Start the threads, wait for them all, and fail if one hangs or recorded an error."""
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


def child_processes(name: str) -> list[tuple[int, str]]:
    """(pid, state) of this process's children called ``name``, zombies ("Z") included: what a
    source or a sender must not leave behind once it is closed."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        comm, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        if comm == name and int(rest[1]) == os.getpid():
            found.append((int(stat.parent.name), rest[0]))
    return found


def normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]+", "", re.sub(r"\s+", " ", text.lower())).strip()


def wait_serving(http: httpx.Client, timeout: float = 300.0) -> None:
    """Until the app answers /healthz (Ray and Serve starting, the models loading)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if http.get("/healthz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the app did not come up"
        time.sleep(0.5)


class Api:
    """A thin HTTP client for tests: loopback only, never through a proxy."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=60, trust_env=False)

    def __getattr__(self, name):
        return getattr(self.http, name)

    def add(self, source: str, name: str | None = None, **fields) -> str:
        r = self.http.post("/v1/streams", json={"source": source, "name": name, **fields})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def wait(self, stream_id: str, states=("finished", "failed", "stopped"), timeout=240.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            status = self.http.get(f"/v1/streams/{stream_id}").json()
            if status.get("state") in states:
                return status
            assert time.monotonic() < deadline, f"stream {stream_id} stuck: {status}"
            time.sleep(0.3)

    def ingest_all(self, clips: dict[str, str], timeout: float = 600.0) -> dict[str, str]:
        """Add every clip (stream name -> file in ../shared/media, or a Path) at once, wait until all have
        finished, and return their ids by name."""
        paths = {name: file if isinstance(file, Path) else media(file) for name, file in clips.items()}
        ids = {name: self.add(str(path), name=name) for name, path in paths.items()}
        for sid in ids.values():
            status = self.wait(sid, timeout=timeout)
            assert status["state"] == "finished", status
        return ids

    def ask(self, question: str, **kw) -> dict:
        r = self.http.post("/v1/query", json={"question": question, **kw})
        assert r.status_code == 200, r.text
        return r.json()
