"""Finding stream actors: they are named, detached actors in Manta's namespace, so any API replica
can list them and they survive the replica that created them."""

from __future__ import annotations

import asyncio
import time

import ray
from fastapi.concurrency import run_in_threadpool

from streaming.settings import Settings

from .stream_actor import ACTOR_PREFIX, StreamActor, actor_name, make_stream_id

STATUS_TIMEOUT_S = 2.0
REFRESH_EVERY_S = 1.0


class StreamDirectory:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._handles: dict[str, ray.actor.ActorHandle] = {}
        self._refreshed = 0.0

    async def refresh(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._refreshed < REFRESH_EVERY_S:
            return
        named = await run_in_threadpool(ray.util.list_named_actors, all_namespaces=True)
        ids = {a["name"][len(ACTOR_PREFIX):] for a in named
               if a["namespace"] == self.settings.namespace and a["name"].startswith(ACTOR_PREFIX)}
        for stream_id in ids - self._handles.keys():
            self._handles[stream_id] = ray.get_actor(actor_name(stream_id),
                                                     namespace=self.settings.namespace)
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
        """Start a stream actor; returns at once, the actor loads its models in the background."""
        stream_id = make_stream_id(name, hint)
        await self.refresh(force=True)
        if stream_id in self._handles:
            raise KeyError(f"a stream named '{stream_id}' already exists")
        settings = self.settings.model_dump(mode="json") | ({"pace": pace} if pace else {})
        try:
            handle = StreamActor.options(
                name=actor_name(stream_id), namespace=self.settings.namespace, lifetime="detached",
                num_cpus=self.settings.stream_num_cpus, max_restarts=self.settings.stream_restarts).remote(
                stream_id, name or stream_id, source, settings)
        except ValueError:  # Ray: the name is taken (a concurrent request won)
            raise KeyError(f"a stream named '{stream_id}' already exists") from None
        handle.start.remote()
        self._handles[stream_id] = handle
        return stream_id

    async def status(self, stream_id: str) -> dict:
        handle = await self.resolve(stream_id)
        try:
            return await asyncio.wait_for(wait_ref(handle.status.remote()), STATUS_TIMEOUT_S)
        except asyncio.TimeoutError:
            # Not scheduled yet (no free CPU) or still loading its models.
            return {"id": stream_id, "state": "pending",
                    "last_error": f"stream actor did not answer within {STATUS_TIMEOUT_S:g} s"}
        except ray.exceptions.RayActorError as exc:
            return {"id": stream_id, "state": "lost", "last_error": f"stream actor died: {exc}"}

    async def statuses(self) -> list[dict]:
        ids = await self.ids()
        return list(await asyncio.gather(*(self.status(s) for s in ids)))


async def wait_ref(ref):
    """An ObjectRef as a coroutine, so asyncio.wait_for can bound it."""
    return await ref
