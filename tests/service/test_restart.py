"""Stopping `manta up` and starting it again brings every saved stream back: a finished stream is
searchable with the same answers, an interrupted one resumes from its checkpoint, and one whose
file is gone still answers from what it indexed.

The end-to-end test runs the real `manta up` command twice in subprocesses (each with its own
private Ray, stopped by SIGTERM as a user's Ctrl+C would), so it never touches the session-scoped
`service` fixture's Ray in this process.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from actors.directory import StreamDirectory, read_checkpoint_info, saved_streams
from actors.logs import JsonFormatter
from tests.support.helpers import Api, free_port, media, media_head, normalise
from streaming.settings import Settings
from streaming.memory.store import Checkpoint, StreamStore
from streaming.search.view import StreamView

ROOT = Path(__file__).resolve().parents[2]
JFK_QUESTION = "What does the speaker ask of his fellow Americans?"
SCREEN_QUESTION = "What text appears on screen?"
MANIFESTO_S = 59.3  # in the pause after "…political power": the last word is whole


def _saved(data_dir: Path, stream_id: str, **info) -> Path:
    path = data_dir / "streams" / f"{stream_id}.sqlite"
    store = StreamStore(path)
    store.commit([], [], [], Checkpoint(next_seq=0, resume_t=0.0, media_seconds=0.0, wall=0.0, info=info))
    store.close()
    return path


# -- finding saved streams (no Ray) ---------------------------------------------------------------

def test_saved_streams_are_read_from_their_checkpoints_without_writing(tmp_path):
    done = _saved(tmp_path, "done", source="/media/a.mp4", name="Done", state="finished")
    _saved(tmp_path, "live", source="udp://127.0.0.1:5000", name="live", state="ingesting")
    StreamStore(tmp_path / "streams" / "empty.sqlite").close()  # created, nothing committed yet
    (tmp_path / "streams" / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    _saved(tmp_path, "nosource", name="x", state="finished")
    _saved(tmp_path, "Bad Name", source="/media/b.mp4", name="b", state="finished")
    before = done.read_bytes()

    found = saved_streams(tmp_path)
    assert [(s.id, s.name, s.source, s.state) for s in found] == [
        ("done", "Done", "/media/a.mp4", "finished"),
        ("live", "live", "udp://127.0.0.1:5000", "ingesting")]
    assert read_checkpoint_info(tmp_path / "streams" / "empty.sqlite") is None
    assert done.read_bytes() == before
    assert saved_streams(tmp_path / "nothing-here") == []


def test_restore_saved_creates_each_missing_actor_once_in_resume_mode_and_logs_it(tmp_path):
    for sid in ("a", "b", "c"):
        _saved(tmp_path, sid, source=f"/media/{sid}.mp4", name=sid.upper(), state="finished")
    directory = StreamDirectory(Settings(data_dir=tmp_path))
    spawned = []

    def spawn(stream_id, name, source, settings, resume=False):
        if stream_id == "c":
            raise ValueError("name taken")  # another replica restored it first
        spawned.append((stream_id, name, source, resume))
        return f"handle-{stream_id}"

    directory._live_ids = lambda: {"a"}  # a stream that is running is left alone
    directory._spawn = spawn
    logger = logging.getLogger("manta.directory")
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(JsonFormatter().format(record))
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        assert directory.restore_saved() == ["b"]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert spawned == [("b", "B", "/media/b.mp4", True)]
    assert directory._handles == {"b": "handle-b"}
    entries = [json.loads(line) for line in lines]
    assert len(entries) == 1
    assert entries[0] | {"ts": 0} == {
        "ts": 0, "level": "info", "logger": "manta.directory",
        "msg": f"restored stream b from {tmp_path / 'streams' / 'b.sqlite'}",
        "event": "stream_restored", "stream": "b", "name": "B", "source": "/media/b.mp4",
        "saved_state": "finished", "resumes": False, "path": str(tmp_path / "streams" / "b.sqlite")}


def test_a_resumed_stream_whose_file_is_gone_fails_clearly_and_keeps_what_it_indexed(tmp_path):
    """Stopped mid-ingest, then its file was moved: the reader cannot resume, the stream says why,
    and the segments it had committed stay searchable; nothing is padded onto them."""
    from actors.stream_actor import resume_pipeline, saved_spec
    from manta_models.loader import ModelSet
    from streaming.ingest.pipeline import StreamPipeline
    from streaming.records import MicroSegment, Word

    settings = Settings(asr_model="tiny.en", visual_model="off", ocr="off", stream_model="off")
    models = ModelSet(settings)
    texts = ["The harbour bridge will close for repairs on Tuesday.", "Rain is expected tomorrow."]
    vectors = list(models.for_stream().embedder.encode(texts))
    segs = [MicroSegment("gone", i, 3.0 * i, 3.0 * i + 3.0, (Word(" " + t, 3.0 * i, 3.0 * i + 2.5),), wall=1.0)
            for i, t in enumerate(texts)]
    moved = str(tmp_path / "moved.mp4")
    store = StreamStore(tmp_path / "gone.sqlite")
    # The old reader had decoded to 30 s; only 6 s were committed when the service stopped.
    store.commit(segs, vectors, [None, None], Checkpoint(
        next_seq=2, resume_t=6.0, media_seconds=30.0, wall=1.0,
        info={"source": moved, "name": "gone", "state": "ingesting"}))

    pipe = StreamPipeline("gone", "gone", saved_spec(moved), settings, models.for_stream, store=store)
    resume_pipeline(pipe, "restored from data_dir when the service started", f"no such file: {moved}")
    assert pipe.join(timeout=120)
    snap = pipe.snapshot()
    assert snap["state"] == "failed" and "No such file" in snap["last_error"], snap
    assert any("source no longer available" in n for n in snap["notes"])
    assert [(s.seq, s.text) for s in StreamView.of(pipe).segments()] == [(0, texts[0]), (1, texts[1])]
    assert [s.text for s, _ in StreamView.of(pipe).search(vectors[1], 1)] == [texts[1]]
    on_disk = store.load("gone")
    assert [s.seq for s in on_disk.segments] == [0, 1]  # no quiet segments up to the old 30 s
    assert on_disk.checkpoint.resume_t == 6.0 and on_disk.checkpoint.info["state"] == "failed"
    store.close()


# -- the real thing, stopped and started again ----------------------------------------------------

def _proc_start(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _descendants(pid: int) -> dict[int, str]:
    """Every process below ``pid`` (Ray's GCS, raylet, workers...), with its start time, so a pid
    that the system reuses later is not mistaken for one of them."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            start = _proc_start(child)
            if start is not None:
                out[child] = start
            todo.append(child)
    return out


def _alive(procs: dict[int, str]) -> list[int]:
    return [pid for pid, start in procs.items() if _proc_start(pid) == start]


class MantaUp:
    """`manta up` in a subprocess: its own private Ray and Serve on a free loopback port."""

    def __init__(self, data_dir: Path, log_dir: Path, tag: str):
        self.port = free_port()
        env = {**os.environ, "MANTA_DATA_DIR": str(data_dir), "COLUMNS": "200"}
        env.pop("RAY_ADDRESS", None)  # never join another Ray (the session service's, say)
        self.out = log_dir / f"manta-up-{tag}.out"
        self.err = log_dir / f"manta-up-{tag}.err"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "actors.cli.main", "up", "--port", str(self.port), "--asr-model", "tiny.en"],
                cwd=ROOT, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        self.ray: dict[int, str] = {}
        self.api = Api(f"http://127.0.0.1:{self.port}")

    def logs(self) -> str:
        return self.out.read_text()[-2000:] + self.err.read_text()[-3000:]

    def wait_serving(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while "Manta is serving on" not in self.out.read_text():
            assert self.proc.poll() is None, f"manta up exited {self.proc.returncode}:\n{self.logs()}"
            assert time.monotonic() < deadline, f"manta up not serving after {timeout:g} s:\n{self.logs()}"
            time.sleep(0.2)
        time.sleep(0.5)  # it installs its SIGTERM handler right after saying so
        self.ray = _descendants(self.proc.pid)
        assert self.api.get("/healthz").json()["ok"]

    def session_logs(self) -> str:
        """Everything the Ray processes of this instance wrote (their stderr holds our JSON logs);
        Ray names a session's folder after the process that started it, in its temp folder."""
        tmp = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
        text = []
        for logs in (Path(tmp) / "ray").glob(f"session_*_{self.proc.pid}/logs"):
            for f in logs.glob("*.err"):
                text.append(f.read_text(errors="replace"))
        return "\n".join(text)

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM, as a user's Ctrl+C: `manta up` shuts its Ray down; nothing of it may remain."""
        if self.proc.poll() is None:
            self.ray |= _descendants(self.proc.pid)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                pytest.fail(f"manta up did not stop within {timeout:g} s:\n{self.logs()}")
        assert self.proc.returncode == 0, self.logs()
        deadline = time.monotonic() + 20
        while _alive(self.ray) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = _alive(self.ray)
        if left:
            self.kill()
            pytest.fail(f"Ray processes still running after manta up stopped: {left}")

    def kill(self) -> None:
        """Last resort, for a failed test: end what this instance started, by pid."""
        if self.proc.poll() is None:
            self.ray |= _descendants(self.proc.pid)
            self.proc.kill()
            self.proc.wait(10)
        for pid in _alive(self.ray):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.api.close()


def _wait_states(api: Api, ids: list[str], states: tuple[str, ...], timeout: float) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        listed = {s["id"]: s for s in api.get("/v1/streams").json()["streams"]}
        if all(listed.get(i, {}).get("state") in states for i in ids):
            return listed
        assert time.monotonic() < deadline, f"streams not {states} after {timeout:g} s: {listed}"
        time.sleep(0.3)


def _evidence(answer: dict) -> list[dict]:
    return [{k: e[k] for k in ("stream", "start", "end", "text", "kind", "modality", "score")}
            for e in answer["evidence"]]


def _same_answer(before: dict, after: dict) -> None:
    assert after["answer"] == before["answer"]
    old, new = _evidence(before), _evidence(after)
    assert [{k: v for k, v in e.items() if k != "score"} for e in new] == \
        [{k: v for k, v in e.items() if k != "score"} for e in old]
    assert [e["score"] for e in new] == pytest.approx([e["score"] for e in old], abs=1e-5)


def _ask(api: Api, question: str, streams: list[str]) -> dict:
    return api.ask(question, streams=streams)


def _segments(api: Api, stream_id: str) -> list[dict]:
    return api.get(f"/v1/streams/{stream_id}/segments").json()["segments"]


@pytest.mark.slow
def test_stopping_and_starting_manta_up_brings_every_stream_back(tmp_path):
    # Its first minute: the title card, "a spectre is haunting Europe", and time to be cut off
    # mid-way at real-time pace (the whole 88 s added a minute to the suite and tested nothing more).
    manifesto = media_head("manifesto_audiobook_titlecard.mp4", MANIFESTO_S, tmp_path)
    jfk_copy = tmp_path / "jfk_copy.flac"  # deleted before the restart: the stream must stay
    shutil.copyfile(media("jfk_inaugural_1961.flac"), jfk_copy)
    data_dir = tmp_path / "data"
    started = time.monotonic()
    marks: dict[str, float] = {}  # seconds since the start, printed at the end (pytest -s)

    def mark(name: str) -> None:
        marks[name] = round(time.monotonic() - started, 1)

    questions = [(JFK_QUESTION, ["jfk", "manifesto"]), (SCREEN_QUESTION, ["manifesto"])]

    first = MantaUp(data_dir, tmp_path, "first")
    try:
        first.wait_serving()
        mark("first serving")
        api = first.api
        assert api.add(str(jfk_copy), name="jfk") == "jfk"
        assert api.add(str(manifesto), name="manifesto") == "manifesto"
        _wait_states(api, ["jfk", "manifesto"], ("finished", "failed", "stopped"), timeout=180)
        for sid in ("jfk", "manifesto"):
            assert api.get(f"/v1/streams/{sid}").json()["state"] == "finished"
        mark("jfk and manifesto ingested")
        answers = [_ask(api, q, s) for q, s in questions]
        assert "what your country can do for you" in normalise(answers[0]["answer"]), answers[0]
        assert answers[0]["evidence"][0]["stream"] == "jfk"
        assert any(e["kind"] == "ocr" and e["stream"] == "manifesto" for e in answers[1]["evidence"]), answers[1]
        segments = {sid: _segments(api, sid) for sid in ("jfk", "manifesto")}
        assert all(segments.values())

        # A third stream is cut off mid-ingest: the service stops once it has committed a little.
        # Real-time pace, so however fast the machine, the stop lands well before its end. (Added
        # with the other two, it was 53 s into its minute by the time they finished on a busy box.)
        r = api.post("/v1/streams", json={"source": str(manifesto), "name": "interrupted", "pace": "realtime"})
        assert r.status_code == 201, r.text

        deadline = time.monotonic() + 120
        while True:
            st = api.get("/v1/streams/interrupted").json()
            if st.get("segments", 0) >= 3:
                break
            assert st.get("state") not in ("finished", "failed") and time.monotonic() < deadline, st
            time.sleep(0.05)
        cut_short = _segments(api, "interrupted")
        mark("interrupted ingesting")
        first.stop()
        mark("first stopped")
    finally:
        first.kill()

    saved = read_checkpoint_info(data_dir / "streams" / "interrupted.sqlite")
    assert saved["state"] == "ingesting", "the stop came too late to test a resume"
    assert saved["pace"] == "realtime"  # the stream's own pace is kept, not the service default
    with sqlite3.connect(data_dir / "streams" / "interrupted.sqlite") as db:
        (resume_t,) = db.execute("SELECT resume_t FROM checkpoint WHERE id = 0").fetchone()
    jfk_copy.unlink()

    launched = time.time()  # the segments' ingested_wall is wall-clock time too
    second = MantaUp(data_dir, tmp_path, "second")
    try:
        second.wait_serving()
        mark("second serving")
        api = second.api
        # Restored while the API started: listed at once, before any request created anything.
        assert {s["id"] for s in api.get("/v1/streams").json()["streams"]} == {"jfk", "manifesto", "interrupted"}
        # A restored name is taken, as before the restart.
        r = api.post("/v1/streams", json={"source": str(manifesto), "name": "manifesto"})
        assert r.status_code == 409, r.text
        # Asked at once, while the models and the saved indexes may still be loading: the answer
        # has jfk's evidence, or says the stream is still restoring (never a silent "not found").
        early = _ask(api, JFK_QUESTION, ["jfk", "manifesto"])
        if not any(e["stream"] == "jfk" for e in early["evidence"]):
            assert any("jfk is still restoring" in w for w in early["warnings"]), early
        mark("asked early" + (" (restoring)" if not early["evidence"] else ""))
        _wait_states(api, ["jfk", "manifesto"], ("finished", "failed", "stopped"), timeout=120)
        mark("jfk and manifesto restored")
        listed = _wait_states(api, ["jfk", "manifesto", "interrupted"], ("finished", "failed", "stopped"),
                              timeout=180)
        mark("interrupted finished")
        # It resumed at real-time pace, as it was started: the rest of the file after the checkpoint
        # cannot be searchable sooner than its own length after the restart (a fast read of these
        # 30-odd seconds takes well under that). Measured from the launch, not from the first
        # resumed segment: a slow first segment (models loading on busy cores) is caught up later.
        resumed = [g for g in _segments(api, "interrupted") if g["start"] >= resume_t - 0.01]
        media_span = resumed[-1]["end"] - resume_t
        wall_span = resumed[-1]["ingested_wall"] - launched
        assert media_span > 30 and wall_span >= media_span, (resume_t, media_span, wall_span)

        # Finished streams come back searchable and do not ingest again: same answers, same segments.
        for sid in ("jfk", "manifesto"):
            st = listed[sid]
            assert st["state"] == "finished", st
            assert "restored from data_dir when the service started" in st["notes"]
            assert st["segments"] == len(segments[sid])
        assert listed["manifesto"]["media_seconds"] == pytest.approx(MANIFESTO_S, abs=0.5)
        # jfk's file is gone: it says so, and still answers from what it indexed.
        assert any("source no longer available" in n and "no such file" in n for n in listed["jfk"]["notes"])
        for (q, streams), before in zip(questions, answers):
            _same_answer(before, _ask(api, q, streams))
        for sid in ("jfk", "manifesto"):
            assert _segments(api, sid) == segments[sid], sid

        # The interrupted stream resumed at its checkpoint and lost or repeated nothing.
        st = listed["interrupted"]
        assert st["state"] == "finished", st
        assert st["media_seconds"] == pytest.approx(MANIFESTO_S, abs=0.5)
        resumed = [n for n in st["notes"] if n.startswith("resumed from its checkpoint at")]
        assert resumed and float(resumed[0].split(" at ")[1].rstrip(" s")) < MANIFESTO_S - 30, st["notes"]
        after = _segments(api, "interrupted")
        assert cut_short and after[:len(cut_short)] == cut_short
        assert [s["seq"] for s in after] == list(range(len(after)))
        assert all(b["start"] >= a["end"] - 1e-6 for a, b in zip(after, after[1:]))
        spoken = normalise(" ".join(s["text"] for s in after))
        whole = normalise(" ".join(s["text"] for s in segments["manifesto"]))
        assert spoken.count("haunting europe") == whole.count("haunting europe") == 1, spoken
        # To the end of the speech. It resumed real-time paced, so Whisper heard it in the live
        # profile's shorter pieces: the words may differ a little ("itself a power" / "its self a
        # power"), where the speech ends may not.
        def spoken_until(segs):
            return max(g["end"] for g in segs if g["text"].strip())

        assert spoken_until(after) == pytest.approx(spoken_until(segments["manifesto"]), abs=1.5), \
            (whole[-80:], spoken[-80:])

        # One structured log line per restored stream.
        events = [json.loads(line) for line in second.session_logs().splitlines()
                  if '"stream_restored"' in line and line.startswith("{")]
        assert sorted(e["stream"] for e in events) == ["interrupted", "jfk", "manifesto"], events
        assert {e["stream"]: e["resumes"] for e in events} == {"interrupted": True, "jfk": False,
                                                               "manifesto": False}
        second.stop()
        mark("second stopped")
    finally:
        second.kill()
    print("restart scenario timeline (s):", marks)
    with pytest.raises(httpx.TransportError):  # nothing serves there any more
        httpx.get(f"http://127.0.0.1:{second.port}/healthz", timeout=2, trust_env=False)
