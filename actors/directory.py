"""Finding stream actors: they are named, detached actors in Manta's namespace, so any API replica
can list them and they survive the replica that created them.

When the service starts, every stream saved in ``data_dir/streams/<id>.sqlite`` that has no live
actor comes back: its actor is created in resume mode (the store is kept, the index and state are
restored, an unfinished stream resumes its source from the checkpoint). Actor names are unique, so
several API replicas starting at once restore each stream exactly once: a replica that finds the
name taken leaves it to the one that won.

A stream's data is deleted only by ``remove`` (``DELETE /v1/streams/{id}?remove=true``): a new stream
whose name has a store on disk but no actor (removed from Ray some other way, or skipped by the
restore) is refused, never given the old file. Create and remove of one id are serialised by a lock
per id within an API replica. Across replicas no lock is shared, and none is needed: Ray's actor names
are unique (a create while the old actor lives is refused), and ``remove`` renames the store into
``data_dir/trash`` before it ends the actor, so a new stream created the moment the name is free
gets a fresh file that the rest of the removal never touches (streaming/memory/data_dir.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import ray
from fastapi.concurrency import run_in_threadpool

from streaming.settings import Settings

from streaming.memory.data_dir import empty_trash, store_exists, trash_store
from streaming.source.redact import redact_text, redact_uri

from actors.spares import RUNTIME_ENV, SpareKeeper
from actors.stream_actor import ACTOR_PREFIX, STREAM_ID_RE, StreamActor, actor_name, make_stream_id

log = logging.getLogger("manta.directory")

STATUS_TIMEOUT_S = 2.0
STOP_TIMEOUT_S = 20.0  # the actor's stop waits up to 10 s for its threads
REFRESH_EVERY_S = 1.0


def lost_message(stream_id: str) -> str:
    """Why a stream whose actor is gone does not answer. Ray's own text (a constructor traceback,
    pids, paths) goes to the log, not to clients."""
    return (f"stream {stream_id} is not running: its actor is gone (it crashed past its restarts or was "
            f"killed); its saved data comes back when the service restarts, or DELETE "
            f"/v1/streams/{stream_id}?remove=true forgets it")


class TooManyStreams(Exception):
    """max_streams streams exist already; the message says what to do."""


@dataclass(frozen=True)
class SavedStream:
    """A stream found on disk: what its checkpoint says about it."""

    id: str
    name: str
    source: str
    state: str | None  # the state it was in when its checkpoint was last written
    path: Path
    pace: str | None = None  # the stream's own pace, when it was given one


def read_checkpoint_info(path: Path) -> dict | None:
    """The ``info`` of a stream store's checkpoint (source, name, state), read without writing;
    None when nothing was committed yet. Raises sqlite3.Error or ValueError on a damaged file."""
    db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    try:
        has_table = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'checkpoint'").fetchone()
        row = db.execute("SELECT info FROM checkpoint WHERE id = 0").fetchone() if has_table else None
    finally:
        db.close()
    if row is None:
        return None
    info = json.loads(row[0])
    if not isinstance(info, dict):
        raise ValueError("checkpoint info is not a JSON object")
    return info


def saved_streams(data_dir: Path) -> list[SavedStream]:
    """Every stream store under ``data_dir/streams`` that can be restored, in id order. A file that
    cannot be (nothing committed yet, damaged, no source recorded) is logged and skipped."""
    found = []
    for path in sorted((Path(data_dir) / "streams").glob("*.sqlite")):
        stream_id = path.stem
        if not STREAM_ID_RE.match(stream_id):
            log.warning("not restoring %s: not a stream id", path)
            continue
        try:
            info = read_checkpoint_info(path)
        except (sqlite3.Error, ValueError) as exc:
            log.warning("not restoring stream %s: cannot read %s: %s", stream_id, path, exc)
            continue
        if info is None:
            log.info("not restoring stream %s: nothing was committed to %s", stream_id, path)
            continue
        source = info.get("source")
        if not isinstance(source, str) or not source:
            log.warning("not restoring stream %s: its checkpoint records no source", stream_id)
            continue
        pace = info.get("pace") if info.get("pace") in ("fast", "realtime") else None
        found.append(SavedStream(stream_id, str(info.get("name") or stream_id), source,
                                 info.get("state"), path, pace))
    return found


class StreamDirectory:
    def __init__(self, settings: Settings, models=None):
        """``models``: the shared models deployment's handle, given to every stream actor."""
        self.settings = settings
        self.models = models
        self._handles: dict[str, ray.actor.ActorHandle] = {}
        self._refreshed = 0.0
        # Creates in this replica one at a time, so concurrent ones cannot pass max_streams together
        # (several API replicas can still overshoot it by a stream or two each: a soft limit).
        self._creating = asyncio.Lock()
        self._locks: dict[str, list] = {}  # stream id -> [its lock, how many hold or wait for it]
        # Started by the API replica (start()); a directory made elsewhere (tests) keeps none.
        self.spares = SpareKeeper(settings.spare_stream_workers)

    @contextlib.asynccontextmanager
    async def _locked(self, stream_id: str):
        """Create and remove of one id, one at a time (in this replica); the entry goes when unused,
        so ids that come and go do not pile up."""
        entry = self._locks.setdefault(stream_id, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[stream_id]

    def _live_ids(self) -> set[str]:
        named = ray.util.list_named_actors(all_namespaces=True)
        return {a["name"][len(ACTOR_PREFIX):] for a in named
                if a["namespace"] == self.settings.namespace and a["name"].startswith(ACTOR_PREFIX)}

    async def refresh(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._refreshed < REFRESH_EVERY_S:
            return
        ids = await run_in_threadpool(self._live_ids)
        for stream_id in ids - self._handles.keys():
            try:
                self._handles[stream_id] = ray.get_actor(actor_name(stream_id),
                                                         namespace=self.settings.namespace)
            except ValueError:  # removed between the listing and now
                ids.discard(stream_id)
        for stream_id in self._handles.keys() - ids:
            del self._handles[stream_id]
        self._refreshed = time.monotonic()

    async def ids(self) -> list[str]:
        await self.refresh()
        return sorted(self._handles)

    async def resolve(self, stream_id: str):
        """The actor handle of a stream; KeyError when there is no such stream."""
        if stream_id not in self._handles:
            await self.refresh(force=True)
        try:
            return self._handles[stream_id]
        except KeyError:
            raise KeyError(f"unknown stream: {stream_id}") from None

    async def create(self, name: str | None, source: str, hint: str, pace: str | None = None) -> str:
        """Start a stream actor; returns at once, the actor loads its models in the background.
        KeyError (409) when the name is taken by a live stream or by a store on disk."""
        stream_id = make_stream_id(name, hint)
        async with self._locked(stream_id), self._creating:
            await self.refresh(force=True)
            if stream_id in self._handles:
                raise KeyError(f"a stream named '{stream_id}' already exists")
            if await run_in_threadpool(store_exists, self.settings.data_dir, stream_id):
                raise KeyError(
                    f"a stream named '{stream_id}' is stored in {self.settings.data_dir}/streams but not "
                    "running; its data is kept. Restart the service to bring it back, delete it with "
                    f"DELETE /v1/streams/{stream_id}?remove=true (manta stop {stream_id} --remove), "
                    "or choose another name")
            if len(self._handles) >= self.settings.max_streams:
                raise TooManyStreams(
                    f"too many streams: {len(self._handles)} exist, the limit is {self.settings.max_streams} "
                    "(max_streams; stopped streams count until removed with DELETE "
                    "/v1/streams/{id}?remove=true)")
            settings = self.settings.model_dump(mode="json") | ({"pace": pace} if pace else {})
            try:
                handle = self._spawn(stream_id, name or stream_id, source, settings)
            except ValueError:  # Ray: the name is taken (a concurrent request won)
                raise KeyError(f"a stream named '{stream_id}' already exists") from None
            handle.start.remote()
            self._handles[stream_id] = handle
            self.spares.nudge()  # it took a spare, most likely: start another
        return stream_id

    def _spawn(self, stream_id: str, name: str, source: str, settings: dict, resume: bool = False):
        """Create the stream's named, detached actor; ValueError when the name is taken."""
        return StreamActor.options(
            name=actor_name(stream_id), namespace=self.settings.namespace, lifetime="detached",
            num_cpus=self.settings.stream_num_cpus, max_restarts=self.settings.stream_restarts,
            # Over a cluster's nodes, not packed onto the first: a node lost takes fewer streams down
            # (Ray restarts them elsewhere from their checkpoints). One node: no difference.
            scheduling_strategy="SPREAD",
            # Started in a spare process (actors/spares.py) when one is idle on the chosen node.
            runtime_env=RUNTIME_ENV if self.settings.spare_stream_workers else None).remote(
            stream_id, name, source, settings, resume=resume, models=self.models)

    def restore_saved(self) -> list[str]:
        """Bring back every stream saved in ``data_dir`` that has no live actor (the service was
        stopped and started again); returns the ids this call restored. Synchronous: it runs once,
        while the API replica starts, before it takes requests. A stream whose actor exists (a
        running stream, or one another replica restored first) is left alone."""
        saved = saved_streams(self.settings.data_dir)
        if not saved:
            return []
        live = self._live_ids()
        settings = self.settings.model_dump(mode="json")
        restored = []
        for s in saved:
            if s.id in live:
                continue
            try:
                handle = self._spawn(s.id, s.name, s.source,
                                     settings | ({"pace": s.pace} if s.pace else {}), resume=True)
            except ValueError:  # another replica restored it between our listing and now
                continue
            except Exception:  # noqa: BLE001 - one bad stream must not keep the API from starting
                log.exception("stream %s could not be restored from %s", s.id, s.path)
                continue
            self._handles[s.id] = handle
            restored.append(s.id)
            log.info("restored stream %s from %s", s.id, s.path,
                     extra={"fields": {"event": "stream_restored", "stream": s.id, "name": s.name,
                                       "source": redact_uri(s.source), "saved_state": s.state,
                                       "resumes": s.state not in ("finished", "stopped"),
                                       "path": str(s.path)}})
        return restored

    async def status(self, stream_id: str) -> dict:
        handle = await self.resolve(stream_id)
        try:
            return await asyncio.wait_for(wait_ref(handle.status.remote()), STATUS_TIMEOUT_S)
        except asyncio.TimeoutError:
            # Not scheduled yet (no free CPU) or still loading its models.
            return {"id": stream_id, "state": "pending",
                    "last_error": f"stream actor did not answer within {STATUS_TIMEOUT_S:g} s: still "
                    "starting (or loading its own models with shared_models off), or waiting for a free "
                    "CPU share (each stream actor, stopped "
                    f"or not, holds {self.settings.stream_num_cpus:g} CPU until removed with "
                    "`manta stop --remove`)"}
        except ray.exceptions.RayActorError as exc:
            log.warning("stream %s: its actor is gone: %s", stream_id, redact_text(str(exc)))
            return {"id": stream_id, "state": "lost", "last_error": lost_message(stream_id)}

    async def remove(self, stream_id: str) -> dict:
        """Forget a stream: delete its saved store, stop it and end its actor (freeing its CPU share
        and memory). Its segments are no longer searchable and a restart does not bring it back. A
        store without an actor (nothing restored it) is deleted too; KeyError when there is neither.

        The store is moved to the trash first, before anything can free the name: a stream created
        with the same name once the actor is killed gets a new file, which the rest of this removal
        never touches. The trash is emptied after the kill (the old actor may hold the files open
        until then; deleting them under it is harmless on POSIX, the space comes back when it exits)."""
        if not STREAM_ID_RE.match(stream_id):  # it names a file: nothing outside streams/
            raise KeyError(f"unknown stream: {stream_id}")
        async with self._locked(stream_id):
            try:
                handle = await self.resolve(stream_id)
            except KeyError:
                handle = None
            trash = await run_in_threadpool(trash_store, self.settings.data_dir, stream_id)
            if handle is None and trash is None:
                raise KeyError(f"unknown stream: {stream_id}")
            if handle is not None:
                await self._stop(stream_id, handle)
                # An actor that had not started when the store was moved made its file since (its
                # stop waited for that): while the old actor holds the name, no new stream can own a
                # file there, so this second move takes only the old stream's.
                trash = await run_in_threadpool(trash_store, self.settings.data_dir, stream_id, trash)
                ray.kill(handle, no_restart=True)
                self._handles.pop(stream_id, None)
            await run_in_threadpool(empty_trash, trash)
        log.info("removed stream %s", stream_id,
                 extra={"fields": {"event": "stream_removed", "stream": stream_id,
                                   "had_actor": handle is not None}})
        return {"id": stream_id, "state": "removed"}

    async def _stop(self, stream_id: str, handle) -> None:
        try:  # a clean stop first, so the source is closed; a stuck or dead actor is killed anyway
            await asyncio.wait_for(wait_ref(handle.stop.remote()), STOP_TIMEOUT_S)
        except (asyncio.TimeoutError, ray.exceptions.RayError):
            log.warning("stream %s did not stop cleanly within %g s; killing its actor", stream_id,
                        STOP_TIMEOUT_S)

    async def statuses(self) -> list[dict]:
        ids = await self.ids()
        return list(await asyncio.gather(*(self.status(s) for s in ids)))


def totals(statuses: list[dict]) -> dict:
    """The whole service at a glance: how many streams are ingesting and how many wait for their
    broadcast, the processing seconds all of them spend per media second together (above the CPUs
    you gave them, they fall behind), and the worst lag."""
    active = [s for s in statuses if s.get("state") in ("ingesting", "connecting", "reconnecting")]
    return {"streams": len(statuses), "ingesting": len(active),
            # Listeners added before their broadcast: alive, nothing to process yet (no lag, no RTF).
            "waiting": sum(s.get("state") == "waiting" for s in statuses),
            "rtf": round(sum(s.get("rtf") or 0.0 for s in active), 4),
            "max_lag_s": round(max((s.get("lag_s") or 0.0 for s in active), default=0.0), 3),
            "failed": sum(s.get("state") in ("failed", "lost") for s in statuses),
            "degraded": sum((s.get("degraded") or 0) > 0 for s in active)}


async def wait_ref(ref):
    """An ObjectRef as a coroutine, so asyncio.wait_for can bound it."""
    return await ref
