"""The Ray Serve application: Manta's HTTP API.

Deploy with ``manta up`` or ``serve run serve_config.yaml`` (import path ``actors.serve.app:build_app``).
Per-stream state lives in the stream actors; this deployment only validates requests, embeds
questions, fans searches out to the streams and merges what comes back.
"""


import asyncio
import functools
import json
import logging
import threading
from pathlib import PurePosixPath
from typing import Any, Literal
from urllib.parse import urlparse

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
import ray
from ray import serve

from streaming.answer.extractive import extractive_answer, merge_evidence
from streaming.settings import Settings
from streaming.source.media import SourceError, open_container
from streaming.source.policy import SourcePolicy, SourceRefused, opener_options

from actors.model_service import bind_models
from actors.serve.answerer import Answerer
from actors.directory import STOP_TIMEOUT_S, StreamDirectory, TooManyStreams, lost_message, totals, wait_ref
from actors.serve.limits import RequestLimits, decode_image, set_limits
from actors.serve.openai_compat import ChatRequest, ChunkWriter, completion
from actors.serve.fanout import QueryEngine, UnknownStreams
from actors.serve import monitor
from actors.serve.guard import Guard, GuardMiddleware, install, token_digest
from actors.serve import dashboard
from actors.serve.schemas import QueryRequest, SimilarRequest, StreamRequest
from actors.logs import configure_logging, prepare_environment

log = logging.getLogger("manta.app")
api = FastAPI(title="Manta", version="0.1.0",
              description="Ask questions about live and recorded video streams.")
# Before @serve.ingress below, which freezes a copy of the app: body size and time bounds (limits.py).
api.add_middleware(RequestLimits)
# Outermost (added last): a request without the token is refused before anything else.
api.add_middleware(GuardMiddleware)
api.include_router(monitor.router)  # /v1/watches and /v1/alerts (actors/serve/monitor.py)
api.include_router(dashboard.router)  # the web page (/ui) and its media routes


def sse(event: str, data) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


# Helpers sit above the deployment: Serve ships the class by value and resolves names there.
def _probe_file(spec, settings: Settings) -> None:
    """``spec`` passed the policy just before: only its FFmpeg bounds, not a second DNS lookup."""
    open_container(spec, settings.open_timeout_s, settings.read_timeout_s, opener_options(spec)).close()


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64)
@serve.ingress(api)
class MantaApi:
    def __init__(self, settings: dict[str, Any] | None = None, restore: bool = True, answerer=None,
                 models=None, token_sha256: str | None = None):
        """``token_sha256``: the API token's digest (the token itself never reaches a replica)."""
        prepare_environment(local=False)
        configure_logging()
        from manta_models.perception.embed import TextEmbedder

        self.settings = Settings.load(settings)
        install(Guard.from_settings(self.settings, token_sha256))
        self.policy = SourcePolicy.from_settings(self.settings)
        set_limits(self.settings.max_body_mb, self.settings.request_timeout_s)
        self.streams = StreamDirectory(self.settings, models)
        self.streams.spares.start()
        dashboard.install(self.settings, self.policy, self.streams)
        if restore:
            # Streams saved in data_dir come back (resumed or just searchable) before the first
            # request, so a name restored here is taken (409), as it was before the restart. Every
            # replica does this; actor names are unique, so each stream is restored once.
            try:
                self.streams.restore_saved()
            except Exception:  # noqa: BLE001 - the API must come up even if the scan fails
                log.exception("restoring saved streams failed")
        self.embedder = TextEmbedder(self.settings.embed_model, threads=self.settings.torch_threads)
        # Monitoring dashboards re-ask the same questions on a timer: embed each text once.
        self._question_vector = functools.lru_cache(maxsize=1024)(self._embed)
        self._vision = None
        self._vision_lock = threading.Lock()
        cross = None
        if self.settings.rerank_model:
            from manta_models.answering.reranker import CrossEncoder

            cross = CrossEncoder(self.settings.rerank_model, threads=self.settings.torch_threads)
        self.engine = QueryEngine(self.settings, self.streams, self._embed_async, answerer, cross)
        # The alert desk now, not at the first watch: after a restart the saved watches must reach
        # the streams before anyone calls the API.
        monitor.install(monitor.Monitor(self.settings, self._embed_async, self.policy, answerer))
        monitor.install_desk()

    async def _embed_async(self, text: str):
        return await run_in_threadpool(self._question_vector, text)

    def _embed(self, question: str):
        vector = self.embedder.encode([question])[0]
        vector.setflags(write=False)  # shared by every later request for the same text
        return vector

    @api.get("/healthz")
    async def healthz(self, request: Request) -> dict:
        from actors.metrics import metrics_url

        if not request.state.authorized:  # a load balancer's probe learns that it is up, no more
            return {"ok": True}
        return {"ok": True, "streams": len(await self.streams.ids()),
                "metrics_url": await run_in_threadpool(metrics_url)}

    @api.post("/v1/streams", status_code=201)
    async def add_stream(self, req: StreamRequest) -> dict:
        try:  # resolves the host: off the event loop
            spec = await run_in_threadpool(self.policy.parse, req.source)
        except SourceRefused as exc:
            raise HTTPException(403, detail=str(exc)) from None
        except SourceError as exc:
            raise HTTPException(400, detail=str(exc)) from None
        if not spec.live:  # a file that is not media is reported now, not as a failed stream later
            try:
                await run_in_threadpool(_probe_file, spec, self.settings)
            except SourceError as exc:
                raise HTTPException(422, detail=str(exc)) from None
        hint = PurePosixPath(spec.uri).stem if not spec.live else (urlparse(spec.uri).hostname or "")
        try:
            stream_id = await self.streams.create(req.name, req.source, hint, pace=req.pace)
        except ValueError as exc:
            raise HTTPException(400, detail=str(exc)) from None
        except KeyError as exc:
            raise HTTPException(409, detail=exc.args[0]) from None
        except TooManyStreams as exc:
            raise HTTPException(429, detail=str(exc)) from None
        return {"id": stream_id, "status_url": f"/v1/streams/{stream_id}"}

    @api.get("/v1/streams")
    async def list_streams(self) -> dict:
        statuses = await self.streams.statuses()
        return {"streams": statuses, "total": totals(statuses)}

    @api.get("/v1/streams/{stream_id}")
    async def get_stream(self, stream_id: str) -> dict:
        await self._known(stream_id)
        return await self.streams.status(stream_id)

    @api.get("/v1/streams/{stream_id}/segments")
    async def get_segments(self, stream_id: str, start: float | None = Query(None, ge=0),
                           end: float | None = Query(None, ge=0),
                           limit: int = Query(1000, ge=1, le=10000)) -> dict:
        segs = await self._call(stream_id, "segments", start, end, limit)
        return {"stream": stream_id, "segments": segs}

    @api.delete("/v1/streams/{stream_id}")
    async def stop_stream(self, stream_id: str, remove: bool = Query(
            False, description="also forget the stream: end its actor and delete its data")) -> dict:
        if remove:  # also a stream that is only stored (no actor): the one way to delete its data
            try:
                return await self.streams.remove(stream_id)
            except KeyError as exc:
                raise HTTPException(404, detail=exc.args[0]) from None
        handle = await self._known(stream_id)
        try:
            return await asyncio.wait_for(wait_ref(handle.stop.remote()), STOP_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise HTTPException(504, detail=f"stream {stream_id} did not stop within "
                                f"{STOP_TIMEOUT_S:g} s; DELETE with ?remove=true ends its actor") from None
        except ray.exceptions.RayActorError:
            raise HTTPException(503, detail=lost_message(stream_id)) from None

    @api.post("/v1/query")
    async def query(self, req: QueryRequest):
        """Answer a question from every (or the given) stream: a sentence from the answer model
        grounded in the chosen evidence, its citations, the evidence, and per-stage timings. With
        ``stream: true`` the same arrives as Server-Sent Events: ``evidence`` first, ``token``
        events while the model writes, then ``done`` with the whole answer."""
        if req.level != "micro":
            return await self._level_query(req)
        ask = req.ask()
        if not req.stream:
            try:
                return await self.engine.answer(ask)
            except UnknownStreams as exc:
                raise HTTPException(404, detail=exc.args[0]) from None
        events = self.engine.run(ask)
        try:  # the first event comes after the streams answered: unknown ones are a 404 still
            first = await events.__anext__()
        except UnknownStreams as exc:
            raise HTTPException(404, detail=exc.args[0]) from None

        async def body():
            yield sse(*first)
            async for kind, payload in events:
                yield sse(kind, {"text": payload} if kind == "token" else payload)
        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    @api.post("/v1/chat/completions")
    async def chat_completions(self, req: ChatRequest):
        """OpenAI-compatible: the last user message is the question; ``streams`` (extra field)
        picks the streams. Citations and evidence come back under ``manta``."""
        try:
            ask = req.ask()
        except ValueError as exc:
            raise HTTPException(422, detail=str(exc)) from None
        if not req.stream:
            try:
                return completion(await self.engine.answer(ask))
            except UnknownStreams as exc:
                raise HTTPException(404, detail=exc.args[0]) from None
        events = self.engine.run(ask)
        try:
            await events.__anext__()  # the evidence: OpenAI chunks have no place for it until the end
        except UnknownStreams as exc:
            raise HTTPException(404, detail=exc.args[0]) from None
        writer = ChunkWriter()

        async def body():
            yield writer.role()
            sent = False
            async for kind, payload in events:
                if kind == "token":
                    sent = True
                    yield writer.text(payload)
                elif kind == "done":
                    yield writer.finish(payload, sent)
        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def _level_query(self, req: QueryRequest) -> dict:
        """Summaries of longer spans: what a stretch of the stream was about."""
        try:
            wanted = await self.engine.stream_ids(req.ask().streams)
        except UnknownStreams as exc:
            raise HTTPException(404, detail=exc.args[0]) from None
        k = req.k or self.settings.max_evidence
        vector = await self._embed_async(" ".join(req.question.split()))
        found, warnings = await self.engine.fan_out(
            wanted, lambda h: h.search_level.remote(vector, k, req.level, req.start, req.end))
        evidence = merge_evidence(found, k)
        return extractive_answer(req.question, evidence, warnings).to_dict() | {"found": bool(evidence)}

    @api.get("/v1/streams/{stream_id}/levels/{level}")
    async def get_levels(self, stream_id: str, level: Literal["meso", "macro"],
                         start: float | None = Query(None, ge=0), end: float | None = Query(None, ge=0),
                         limit: int = Query(1000, ge=1, le=10000)) -> dict:
        """Meso (≈30 s) or macro (≈180 s) parents with span, children, summary and density; the
        still-open parent comes last with ``closed: false``."""
        parents = await self._call(stream_id, "parents", level, start, end, limit)
        return {"stream": stream_id, "level": level, "parents": parents}

    @api.get("/v1/streams/{stream_id}/shown")
    async def get_shown(self, stream_id: str, start: float | None = Query(None, ge=0),
                        end: float | None = Query(None, ge=0),
                        limit: int = Query(1000, ge=1, le=10000)) -> dict:
        """On-screen text (OCR) and subtitle cues, each with its time span."""
        items = await self._call(stream_id, "shown", start, end, limit)
        return {"stream": stream_id, "shown": items}

    @api.get("/v1/streams/{stream_id}/frames")
    async def get_frames(self, stream_id: str, start: float | None = Query(None, ge=0),
                         end: float | None = Query(None, ge=0),
                         limit: int = Query(1000, ge=1, le=10000)) -> dict:
        """Sampled frames with image labels; ``cut`` marks shot boundaries."""
        frames = await self._call(stream_id, "frames", start, end, limit)
        return {"stream": stream_id, "frames": frames}

    @api.post("/v1/frames/similar")
    async def similar_frames(self, req: SimilarRequest) -> dict:
        """Frames like the example, from every (or the given) stream; ``warnings`` names each
        stream that did not answer (the others' frames still come back)."""
        if req.image is not None:
            vector = await run_in_threadpool(self._image_vector, req.image)
        else:
            vector = await self._call(req.stream, "frame_vector", req.at)
            if vector is None:
                raise HTTPException(404, detail=f"stream {req.stream} has no sampled frame near {req.at:g} s")
        try:
            wanted = await self.engine.stream_ids(req.streams)
        except UnknownStreams as exc:
            raise HTTPException(404, detail=exc.args[0]) from None
        # A stream that fails or times out is named in the warnings, as a question's would be.
        found, warnings = await self.engine.fan_out(
            wanted, lambda h: h.similar_frames.remote(vector, req.k, None, None))
        frames = [f for r in found for f in r]
        frames.sort(key=lambda f: -f["score"])
        return {"frames": frames[:req.k], "warnings": warnings}

    def _image_vector(self, image_b64: str):
        """Embed an uploaded picture in the frames' space (the model loads on first use)."""
        if self.settings.visual_model == "off":
            raise HTTPException(409, detail="visual_model is off: frames are not embedded")
        try:
            frame = decode_image(image_b64)
        except ValueError as exc:
            raise HTTPException(422, detail=str(exc)) from None
        with self._vision_lock:
            if self._vision is None:
                from manta_models.perception.vision import VisualEmbedder

                self._vision = VisualEmbedder(threads=self.settings.torch_threads)
        return self._vision.encode([frame])[0][0]

    async def _call(self, stream_id: str, method: str, *args):
        """One stream actor's ``method``: 404 for an unknown stream, 504 when it does not answer in
        query_timeout_s, 503 when its actor is gone (Ray's own text is not for clients)."""
        handle = await self._known(stream_id)
        timeout = self.settings.query_timeout_s
        try:
            return await asyncio.wait_for(wait_ref(getattr(handle, method).remote(*args)), timeout)
        except asyncio.TimeoutError:
            raise HTTPException(504, detail=f"stream {stream_id} did not answer within {timeout:g} s "
                                "(query_timeout_s)") from None
        except ray.exceptions.RayActorError:
            raise HTTPException(503, detail=lost_message(stream_id)) from None

    async def _known(self, stream_id: str):
        try:
            return await self.streams.resolve(stream_id)
        except KeyError as exc:
            raise HTTPException(404, detail=exc.args[0]) from None


def build_app(args: dict[str, Any] | None = None):
    """Serve application builder; ``args`` is serve_config.yaml's ``args`` mapping. ``restore``
    (default true): bring back the streams saved in ``data_dir`` when the API starts."""
    args = dict(args or {})
    settings = args.pop("settings", {}) or {}
    restore = args.pop("restore", True)
    if args:
        raise ValueError(f"unknown app args: {sorted(args)}; put options under 'settings:'")
    if not isinstance(restore, bool):
        raise ValueError("app arg 'restore' must be true or false")
    loaded = Settings.load(settings)  # fail at deploy time on a bad config, not in a replica
    loaded.check_exposure()
    digest = token_digest(loaded.api_token())
    if loaded.rerank_model:
        from manta_models.packaged import check_model_dir

        check_model_dir(loaded.rerank_model, "reranker")
    answerer = Answerer.bind(settings) if loaded.answer_model != "off" else None
    models = bind_models(settings) if loaded.shared_models else None
    # Serve answers 503 once this many requests wait for a replica (its default is no limit).
    api_deployment = MantaApi.options(max_queued_requests=loaded.max_queued_requests)
    return api_deployment.bind(settings, restore, answerer, models, digest)

