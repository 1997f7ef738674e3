"""Nothing lost to a careless request: a stored stream's name is refused (409) until the stream is
removed on purpose, a removal racing a new stream with the same name never takes the new one's data,
and a removal leaves nothing behind.

The directory tests run StreamDirectory against a fake Ray (named actors in a dict; each fake actor
opens its store as the real one does), so races are played out deterministically in milliseconds.
One test runs the real service over HTTP for what only it can show."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path

import pytest
import ray

from actors.directory import StreamDirectory
from actors.stream_actor import store_path
from streaming.memory.store import Checkpoint, StreamStore
from streaming.records import MicroSegment, Word
from streaming.settings import Settings
from tests.support.helpers import free_port


def _commit(path, marker: str, n: int = 2, first: int = 0) -> None:
    store = StreamStore(path)
    segs = [MicroSegment("x", i, 3.0 * i, 3.0 * i + 3.0, (Word(f" {marker} {i}", 3.0 * i, 3.0 * i + 2.0),), wall=1.0)
            for i in range(first, first + n)]
    store.commit(segs, [None] * n, [None] * n, Checkpoint(
        next_seq=first + n, resume_t=3.0 * (first + n), media_seconds=3.0 * (first + n), wall=1.0,
        info={"source": "/media/x.mp4", "name": "x", "state": "finished"}))
    store.close()


def _texts(path) -> list[str]:
    store = StreamStore(path)
    try:
        return [s.text for s in store.load("x").segments]
    finally:
        store.close()


class FakeActor:
    def __init__(self, cluster: "FakeRay", stream_id: str):
        self.id, self.cluster = stream_id, cluster
        self.starting = None  # its __init__, when it has not run yet
        self.stop = self  # handle.stop.remote()
        self.start = type("Start", (), {"remote": staticmethod(lambda: None)})

    def init(self):
        self.starting, starting = None, self.starting
        if starting:
            starting()

    def remote(self):
        self.init()  # a method call waits for the actor's __init__, which makes its store
        return asyncio.sleep(self.cluster.stop_s, result={"id": self.id, "state": "stopped"})


class FakeRay:
    """One Ray namespace's named actors, shared by every fake API replica. A spawned actor writes
    its own first segment to its store at once (the text names its source file), as a real stream
    would soon after it starts."""

    def __init__(self, data_dir, monkeypatch):
        self.data_dir, self.alive, self.stop_s = data_dir, {}, 0.3
        self.pending = False  # spawned actors wait for a CPU: their __init__ runs at the first call
        self.on_kill = None
        monkeypatch.setattr(ray, "kill", self.kill)
        monkeypatch.setattr(ray, "get_actor", lambda name, namespace=None: self.alive[name.split(":", 1)[1]])

    def directory(self) -> StreamDirectory:
        d = StreamDirectory(Settings(data_dir=self.data_dir))
        d._live_ids = lambda: set(self.alive)
        d._spawn = self.spawn
        return d

    def spawn(self, stream_id, name, source, settings, resume=False):
        if stream_id in self.alive:
            raise ValueError(f"actor name {stream_id} is taken")
        actor = self.alive[stream_id] = FakeActor(self, stream_id)
        actor.starting = lambda: _commit(store_path(self.data_dir, stream_id), Path(source).stem, n=1)
        if not self.pending:
            actor.init()
        return actor

    def kill(self, handle, no_restart=True):
        del self.alive[handle.id]  # the name is free from now on
        if self.on_kill:
            self.on_kill()


def _leftovers(data_dir) -> list[str]:
    return sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*") if p.is_file())


def test_a_stored_stream_without_an_actor_keeps_its_name_and_data_until_removed(tmp_path, monkeypatch):
    cluster = FakeRay(tmp_path, monkeypatch)
    directory = cluster.directory()
    path = store_path(tmp_path, "x")
    _commit(path, "old")  # stored, but no actor: removed from Ray some other way, or not restored
    with pytest.raises(KeyError, match=r"'x' is stored .* not running; its data is kept.*remove=true"):
        asyncio.run(directory.create("x", "/media/x.mp4", "x"))
    assert cluster.alive == {}
    assert _texts(path) == ["old 0", "old 1"]
    # The explicit removal is the way to free the name: the store goes, nothing is left behind.
    assert asyncio.run(directory.remove("x")) == {"id": "x", "state": "removed"}
    assert _leftovers(tmp_path) == []
    with pytest.raises(KeyError):
        asyncio.run(directory.remove("x"))
    assert asyncio.run(directory.create("x", "/media/x.mp4", "x")) == "x"
    assert _texts(path) == ["x 0"]


def test_remove_ends_the_actor_and_leaves_nothing_in_streams_or_the_trash(tmp_path, monkeypatch):
    cluster = FakeRay(tmp_path, monkeypatch)
    directory = cluster.directory()

    async def scenario():
        await directory.create("x", "/media/x.mp4", "x")
        return await directory.remove("x")

    assert asyncio.run(scenario()) == {"id": "x", "state": "removed"}
    assert cluster.alive == {}
    assert list((tmp_path / "streams").iterdir()) == [] and list((tmp_path / "trash").iterdir()) == []


def test_create_waits_for_a_removal_of_the_same_name_in_progress(tmp_path, monkeypatch):
    """One replica: create and remove of an id take turns, so a create during a removal neither
    fails on the actor being stopped nor has its new store deleted when the removal finishes."""
    cluster = FakeRay(tmp_path, monkeypatch)
    directory = cluster.directory()

    async def scenario():
        await directory.create("x", "/media/old.mp4", "x")
        return await asyncio.gather(directory.remove("x"), directory.create("x", "/media/new.mp4", "x"))

    assert asyncio.run(scenario()) == [{"id": "x", "state": "removed"}, "x"]
    assert list(cluster.alive) == ["x"]
    assert _texts(store_path(tmp_path, "x")) == ["new 0"]
    _commit(store_path(tmp_path, "x"), "more", n=1, first=1)  # usable: the new stream writes on
    assert _texts(store_path(tmp_path, "x")) == ["new 0", "more 1"]
    assert list((tmp_path / "trash").iterdir()) == []


def test_a_stream_created_by_another_replica_the_moment_the_name_is_free_keeps_its_store(tmp_path, monkeypatch):
    """Across replicas nothing is locked: replica B's create succeeds as soon as A's removal has
    ended the old actor. A moved the old store away before that, so B's new one is not deleted."""
    cluster = FakeRay(tmp_path, monkeypatch)
    replica_a, replica_b = cluster.directory(), cluster.directory()
    asyncio.run(replica_a.create("x", "/media/old.mp4", "x"))
    cluster.on_kill = lambda: cluster.spawn("x", "x", "/media/new.mp4", {})  # B's create, at once
    assert asyncio.run(replica_a.remove("x")) == {"id": "x", "state": "removed"}
    assert asyncio.run(replica_b.resolve("x")) is cluster.alive["x"]
    assert _texts(store_path(tmp_path, "x")) == ["new 0"]
    assert list((tmp_path / "trash").iterdir()) == []


def test_a_removal_before_the_actor_started_also_takes_the_store_it_makes_as_it_starts(tmp_path, monkeypatch):
    cluster = FakeRay(tmp_path, monkeypatch)
    cluster.pending = True
    directory = cluster.directory()

    async def scenario():
        await directory.create("x", "/media/x.mp4", "x")
        assert not store_path(tmp_path, "x").exists()
        return await directory.remove("x")

    assert asyncio.run(scenario()) == {"id": "x", "state": "removed"}
    assert _leftovers(tmp_path) == []
    assert asyncio.run(directory.create("x", "/media/x.mp4", "x")) == "x"  # not refused as stored


def test_remove_only_touches_files_of_valid_stream_ids(tmp_path, monkeypatch):
    directory = FakeRay(tmp_path, monkeypatch).directory()
    (tmp_path / "streams").mkdir()
    (tmp_path / "secret.sqlite").write_text("not a stream")
    with pytest.raises(KeyError):
        asyncio.run(directory.remove("../secret"))
    assert (tmp_path / "secret.sqlite").exists()


# -- the real service ------------------------------------------------------------------------------

@pytest.mark.slow
def test_http_refuses_a_stored_name_with_409_until_removed_and_new_stores_are_private(service):
    data = service.settings.data_dir
    path = store_path(data, "stored-only")
    _commit(path, "kept")
    source = f"udp://127.0.0.1:{free_port(kind=2)}"
    r = service.post("/v1/streams", json={"source": source, "name": "stored-only"})
    assert r.status_code == 409 and "remove=true" in r.json()["detail"], r.text
    assert _texts(path) == ["kept 0", "kept 1"]
    assert service.get("/v1/streams/stored-only").status_code == 404  # stored, not running
    # The one way to delete it: an explicit removal, which works without an actor too.
    r = service.delete("/v1/streams/stored-only", params={"remove": "true"})
    assert r.json() == {"id": "stored-only", "state": "removed"}, r.text
    assert not any((data / "streams").glob("stored-only.*"))
    assert not (data / "trash").exists() or list((data / "trash").iterdir()) == []
    # Now the name is free; the new stream's actor makes its own store, private from the start.
    assert service.add(source, name="stored-only") == "stored-only"
    deadline = time.monotonic() + 60
    while not path.exists():
        assert time.monotonic() < deadline, "the new stream's actor made no store"
        time.sleep(0.2)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert {stat.S_IMODE(os.stat(p).st_mode) for p in (data, data / "streams")} == {0o700}
    r = service.delete("/v1/streams/stored-only", params={"remove": "true"})
    assert r.json() == {"id": "stored-only", "state": "removed"}, r.text
    assert not any((data / "streams").glob("stored-only.*"))
    assert list((data / "trash").iterdir()) == []
