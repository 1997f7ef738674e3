"""The models as one Ray Serve deployment that every stream actor shares.

``ModelService`` hosts ``SharedModels`` (manta_models/serving/shared.py): one copy of each model per
replica, each behind a ``MicroBatcher`` that batches the requests of every stream and serves live
streams first. Serve places the replicas (``model_replicas``, at most one per node; CPUs or GPU
fractions from Settings, or serve_config.yaml's ``deployments:``) and replaces one that dies.

``RemoteModels`` is a stream actor's end: the same clients as in-process use
(manta_models/serving/clients.py) over a deployment handle. When a replica dies mid-request or is
being replaced, the call waits and tries again, so the stream's reader backpressures and nothing it
committed is lost; ``waiting_for`` says so in the stream's status meanwhile. A model that cannot
load is not retried: the stream fails with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ray
from ray import serve
from ray.exceptions import RayError, RayTaskError
from ray.serve.exceptions import RayServeException

from actors.logs import configure_logging, prepare_environment
from actors.metrics import MetricsExporter, ServiceMetrics
from streaming.settings import Settings

log = logging.getLogger("manta.model_service")

DEPLOYMENT = "models"
RETRY_MAX_S = 2.0  # longest pause between tries while the service is unavailable
# A call unanswered this long is reported as waiting: while no replica is up, Serve's router holds
# new calls without an error, so a stream between calls when its replica dies never sees one.
SLOW_CALL_S = 5.0


@serve.deployment(name=DEPLOYMENT, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1024,
                  max_replicas_per_node=1, health_check_period_s=5)
class ModelService:
    def __init__(self, settings: dict[str, Any] | None = None, services: list[str] | None = None):
        """``services``: the model services this deployment serves (a per-model deployment); None: all."""
        prepare_environment(local=False)
        configure_logging()
        from manta_models.serving.shared import SharedModels

        self.settings = Settings.load(settings)
        self.shared = SharedModels(self.settings, services=services)
        # Requests wait here while a stream has too many in flight (MicroBatcher.submit blocks):
        # never on the event loop, which must keep taking other streams' requests.
        self._pool = ThreadPoolExecutor(max_workers=256, thread_name_prefix="manta-models")
        started = time.monotonic()
        # Loading takes seconds: the replica is up at once, and calls wait for the models. A model
        # that fails to load is reported to every caller (no health check fails on it: a restart
        # would only fail the same way again).
        self._loading = self._pool.submit(self._load, started)
        self._metrics = MetricsExporter(DEPLOYMENT, self.stats, metrics=ServiceMetrics()).start()

    def _load(self, started: float):
        try:
            facts = self.shared.start()
        except Exception as exc:
            log.error("models failed to load: %s: %s", type(exc).__name__, exc)
            raise
        log.info("models loaded in %.1f s: %s", time.monotonic() - started, ", ".join(facts.services),
                 extra={"fields": {"event": "models_loaded", "seconds": round(time.monotonic() - started, 2),
                                   "node": ray.get_runtime_context().get_node_id()}})
        return facts

    async def facts(self):
        """ServiceFacts once the models are loaded; the loading error otherwise."""
        return await asyncio.wrap_future(self._loading)

    async def call(self, service: str, item, key: str, priority: int):
        await asyncio.wrap_future(self._loading)
        loop = asyncio.get_running_loop()
        future = await loop.run_in_executor(self._pool, self.shared.submit, service, item, key, priority)
        result = await asyncio.wrap_future(future)
        if isinstance(result, Exception):  # this request's own error
            raise result
        return result

    def stats(self) -> dict:
        """Batch sizes and queue waits per service, and where this replica runs."""
        return {"node": ray.get_runtime_context().get_node_id(),
                "loaded": self._loading.done() and self._loading.exception() is None,
                "services": [s.to_dict() for s in self.shared.stats()]}


# model_deployments: per-model — a deployment per group of services that share a model.
GROUPS: dict[str, tuple[str, ...]] = {
    "speech": ("speech", "vad"), "text": ("text",), "frames": ("frames",), "ocr": ("ocr",),
    "stream": ("stream",), "clip": ("clip_frames", "clip_text"), "caption": ("caption",),
    "provisional": ("provisional",), "voice": ("voice",)}


def bind_models(settings: dict) -> dict:
    """The model deployments bound for an app, by name, sized by ``settings`` (a Settings dump):
    ``models`` alone, or with ``model_deployments: per-model`` one ``models-<group>`` per model the
    settings use. Each can be given replicas, CPUs, GPU fractions or autoscaling of its own under
    ``deployments:`` in a Serve config."""
    from manta_models.loader import enabled
    from manta_models.serving.shared import SERVICES

    s = Settings.load(settings)
    options: dict = {"num_replicas": s.model_replicas,
                     "ray_actor_options": {"num_cpus": s.model_num_cpus, "num_gpus": s.model_num_gpus}}
    if s.model_deployments == "one":
        return {DEPLOYMENT: ModelService.options(**options).bind(settings)}
    bound = {}
    for group, services in GROUPS.items():
        if all(enabled(p, s) for name in services for p in SERVICES[name] if p != "fallback"):
            name = f"{DEPLOYMENT}-{group}"
            bound[name] = ModelService.options(name=name, **options).bind(settings, list(services))
    return bound


def _retryable(exc: BaseException) -> bool:
    """A replica or node gone, or none ready yet: worth waiting for. An error the model raised is
    the answer (a RayTaskError carries it), and so is anything that is not Ray's."""
    if isinstance(exc, RayTaskError):
        return isinstance(exc.cause, (RayError, RayServeException)) and not isinstance(exc.cause, RayTaskError)
    return isinstance(exc, (RayError, RayServeException))


class RemoteModels:
    """A stream actor's connection to the ``models`` deployment."""

    def __init__(self, handles, stream_id: str):
        """``handles``: the model deployments' handles by name (``bind_models``), or one handle."""
        self.handles = handles if isinstance(handles, dict) else {DEPLOYMENT: handles}
        self.stream_id = stream_id
        self._retry_note: str | None = None  # set while a failed call is being tried again
        self._pending: tuple[str, float] | None = None  # the call in flight and when it began
        self._closed = threading.Event()
        self._facts = None
        self._route: dict = {}  # service name → the handle of the deployment serving it

    def close(self) -> None:
        self._closed.set()

    @property
    def waiting_for(self) -> str | None:
        """What the stream waits for, shown in its status: a call being retried, or one unanswered
        for ``SLOW_CALL_S``; None while the service answers."""
        if self._retry_note is not None:
            return self._retry_note
        pending = self._pending
        if pending is not None and (waited := time.monotonic() - pending[1]) >= SLOW_CALL_S:
            return f"model service '{pending[0]}' (no answer for {waited:.0f} s)"
        return None

    def _retrying(self, what: str, call):
        pause = 0.1
        while True:
            try:
                self._pending = (what, time.monotonic())
                try:
                    result = call()
                finally:
                    self._pending = None
                if self._retry_note is not None:
                    log.info("stream %s: model service answers again", self.stream_id)
                self._retry_note = None
                return result
            except Exception as exc:  # noqa: BLE001 - sorted below: wait for Ray, pass the model's error on
                if not _retryable(exc) or self._closed.is_set():
                    cause = getattr(exc, "cause", None)
                    if isinstance(exc, RayTaskError) and isinstance(cause, Exception):
                        raise cause from None  # the model's own error, without Ray's remote traceback
                    raise
                if self._retry_note is None:
                    log.warning("stream %s waits for the model service (%s): %s", self.stream_id, what,
                                type(exc).__name__)
                self._retry_note = f"model service '{what}' ({type(exc).__name__}: retrying)"
            if self._closed.wait(pause):
                raise RuntimeError("stream stopped while waiting for the model service")
            pause = min(RETRY_MAX_S, pause * 2)

    def facts(self):
        """What the deployments serve, merged; waits while their models load."""
        if self._facts is None:
            from manta_models.serving.shared import ServiceFacts

            parts = []
            for name, handle in self.handles.items():
                self._retry_note = f"models to load ({name})"
                facts = self._retrying("loading", lambda h=handle: h.facts.remote().result())
                self._route.update({service: handle for service in facts.services})
                parts.append(facts)
            self._facts = ServiceFacts.merge(parts)
        return self._facts

    def call(self, service: str, item, key: str, priority: int):
        handle = self._route[service]
        return self._retrying(service, lambda: handle.call.remote(service, item, key, priority).result())

    def for_stream(self, live: bool):
        """A ``ModelLoader`` for the stream's pipeline: blocks until the models are loaded."""
        from manta_models.serving.batcher import FILE, LIVE
        from manta_models.serving.clients import stream_models

        return lambda: stream_models(self.call, self.facts(), self.stream_id, LIVE if live else FILE)
