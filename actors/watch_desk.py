"""The alert desk: one named, detached actor that keeps the watches and the alerts they raise.

Stream actors check their own commits against the watches (streaming/watch/matcher.py) and send
what matched here; the desk numbers the alerts, keeps them (streaming/watch/store.py), wakes every
API replica waiting on ``wait`` (the SSE feed), hands webhooks to their sender and counts alerts per
watch for Prometheus. Keeping the scoring in the stream actors means an alert costs one small call
only when something matched; keeping the log here gives every replica the same ids to resume from.

Stream actors learn of new or removed watches by asking ``watches_since`` about once a second
(``WatchFeed`` below): a watch covers a stream within a second of being added, streams added later
included, and the desk never has to know which streams exist.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import asdict

import numpy as np
import ray

from streaming.records import Alert, Watch
from streaming.settings import Settings
from streaming.source.redact import redact_uri
from streaming.watch.matcher import WatchMatcher
from streaming.watch.store import NO_WEBHOOK, MonitorStore, monitor_path
from streaming.watch.verify import MAX_TOKENS, verdict, verify_messages

from actors.logs import configure_logging, prepare_environment

log = logging.getLogger("manta.watch_desk")

DESK_NAME = "manta-watch-desk"
POLL_S = 1.0  # how often a stream actor asks whether the watches changed
EXPORT_EVERY_S = 2.0


class TooManyWatches(Exception):
    pass


def public_watch(watch: dict, alerts: int) -> dict:
    """A watch as clients see it: credentials in its webhook URL masked."""
    return {**watch, "streams": list(watch["streams"]), "webhook_url": redact_uri(watch.get("webhook_url")),
            "alerts": alerts}


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class WatchDesk:
    def __init__(self, settings: dict, answerer=None):
        """``answerer``: the answer model's deployment handle (checks ``verify`` watches), or None."""
        prepare_environment(local=False)  # webhooks go where the operator's egress allows
        configure_logging()
        self.settings = Settings.load(settings)
        self.store = MonitorStore(monitor_path(self.settings.data_dir))
        self._version = time.time_ns()  # a restarted desk is a new version: feeds reload
        self._watches = {w.id: (w, v) for w, v in self.store.watches()}
        self._counts = self.store.alert_counts()
        self._rejected: dict[str, int] = {}  # matches the answer model said no to, since the desk started
        self._answerer = answerer
        self._new = asyncio.Event()
        self._sender = None
        self._gauge = None
        self._exporter: asyncio.Task | None = None

    def _webhooks(self):
        if self._sender is None:
            from streaming.watch.webhook import WebhookSender

            self._sender = WebhookSender.from_settings(self.settings, on_state=self.store.set_webhook)
        return self._sender

    def _export_started(self) -> None:
        if self._exporter is None:  # needs the actor's event loop, which __init__ does not run in
            self._exporter = asyncio.get_running_loop().create_task(self._export())

    # -- watches -----------------------------------------------------------------------------------
    async def add_watch(self, watch: dict, vector: list[float]) -> dict:
        self._export_started()
        if len(self._watches) >= self.settings.max_watches:
            raise TooManyWatches(f"{len(self._watches)} watches exist (max_watches); remove one first")
        w = Watch(**{**watch, "streams": tuple(watch["streams"])})
        v = np.asarray(vector, dtype=np.float32)
        self.store.add_watch(w, v)
        self._watches[w.id] = (w, v)
        self._version += 1
        log.info("watch %s added", w.id, extra={"fields": {"event": "watch_added", "watch": w.id}})
        return public_watch(w.to_dict(), 0)

    async def remove_watch(self, watch_id: str) -> bool:
        if self._watches.pop(watch_id, None) is None:
            return False
        self.store.remove_watch(watch_id)
        self._version += 1
        return True

    async def watches(self) -> list[dict]:
        return [public_watch(w.to_dict(), self._counts.get(w.id, 0)) | {"rejected": self._rejected.get(w.id, 0)}
                for w, _ in self._watches.values()]

    async def watches_since(self, version: int | None):
        """None when nothing changed since ``version``; else (version, [(watch, vector), …])."""
        self._export_started()
        if version == self._version:
            return None
        return self._version, [(w.to_dict(), v) for w, v in self._watches.values()]

    # -- alerts ------------------------------------------------------------------------------------
    async def record(self, alerts: list[dict]) -> list[int]:
        """Alerts a stream raised: numbered, kept, announced, and sent to their webhooks. Those of a
        ``verify`` watch go to the answer model first, without holding the others up."""
        alerts = [a for a in alerts if a["watch"] in self._watches]  # removed meanwhile: dropped
        checked = [a for a in alerts if self._watches[a["watch"]][0].verify]
        for a in checked:
            asyncio.get_running_loop().create_task(self._verify_then_keep(a))
        return self._keep([a for a in alerts if a not in checked])

    def _keep(self, alerts: list[dict]) -> list[int]:
        hooks = [self._watches[a["watch"]][0].webhook_url for a in alerts]
        states = [dict(NO_WEBHOOK, state="pending") if url else dict(NO_WEBHOOK) for url in hooks]
        kept = self.store.add_alerts([Alert(**a) for a in alerts], states)
        for alert, url in zip(kept, hooks):
            self._counts[alert.watch] = self._counts.get(alert.watch, 0) + 1
            log.info("alert %d: watch %s on stream %s at %.1f-%.1f s (score %.2f)", alert.id, alert.watch,
                     alert.stream, alert.start, alert.end, alert.score,
                     extra={"fields": {"event": "alert", "alert": alert.id, "watch": alert.watch,
                                       "stream": alert.stream}})
            if url:
                first = self._webhooks().submit(asdict(alert), url)
                if first["state"] != "pending":  # refused at once (queue full, closed): say why
                    self.store.set_webhook(alert.id, first)
        if kept:
            self._new.set()
            self._new = asyncio.Event()
        return [a.id for a in kept]

    async def _verify_then_keep(self, alert: dict) -> None:
        entry = self._watches.get(alert["watch"])
        if entry is None:
            return
        said = await self._ask_model(entry[0], alert)
        if said is False:
            self._rejected[alert["watch"]] = self._rejected.get(alert["watch"], 0) + 1
            log.info("watch %s: the answer model rejected a match on stream %s at %.1f s", alert["watch"],
                     alert["stream"], alert["start"])
            return
        if alert["watch"] in self._watches:
            self._keep([dict(alert, verified=said)])

    async def _ask_model(self, watch: Watch, alert: dict) -> bool | None:
        """The answer model's yes (True) or no (False); None without a model or a clear reply."""
        if self._answerer is None:
            return None
        reply = []

        async def collect():
            gen = self._answerer.options(stream=True).stream.remote(
                verify_messages(watch.text, alert["modality"], alert["text"]), MAX_TOKENS)
            async for piece in gen:
                reply.append(piece)

        try:
            await asyncio.wait_for(collect(), self.settings.answer_timeout_s)
        except Exception as exc:  # noqa: BLE001 - the alert is kept, unverified
            log.warning("watch %s: the answer model could not check an alert: %s", watch.id, type(exc).__name__)
            return None
        return verdict("".join(reply))

    async def alerts(self, since: int = 0, stream: str | None = None, watch: str | None = None,
                     limit: int = 100) -> list[dict]:
        return self.store.alerts(since, stream, watch, limit)

    async def last_id(self) -> int:
        return self.store.last_id()

    async def wait(self, after: int, timeout: float) -> list[dict]:
        """Alerts after id ``after``, waiting up to ``timeout`` s for the first (the SSE feed)."""
        found = self.store.alerts(after, limit=500)
        if found:
            return found
        try:
            await asyncio.wait_for(self._new.wait(), timeout)
        except asyncio.TimeoutError:
            return []
        return self.store.alerts(after, limit=500)

    def __ray_shutdown__(self) -> None:
        if self._sender is not None:
            self._sender.close()  # what it had not sent yet is marked failed, with the reason
        self.store.close()

    async def _export(self) -> None:
        """Alerts per watch as a gauge that only grows (see actors/metrics.py for why a gauge)."""
        from ray.util.metrics import Gauge

        gauge = Gauge("manta_watch_alerts", "alerts raised by each watch so far", ("watch",))
        while True:
            for watch_id in self._watches:
                gauge.set(float(self._counts.get(watch_id, 0)), tags={"watch": watch_id})
            await asyncio.sleep(EXPORT_EVERY_S)


def desk(settings: Settings, answerer=None):
    """The desk's handle, created on first use (any API replica may be first; the name is unique)."""
    return WatchDesk.options(name=DESK_NAME, namespace=settings.namespace, lifetime="detached",
                             get_if_exists=True).remote(settings.model_dump(mode="json"), answerer)


class WatchFeed:
    """A stream actor's side: keeps its matcher's watches current and sends what matches.

    ``check`` runs in the stream's worker thread inside each commit: scoring is numpy and string
    work on the watches covering the stream, and sending is one fire-and-forget call when something
    matched, so watches never hold ingest up. A desk that is unreachable costs nothing but a
    logged warning: the stream goes on."""

    def __init__(self, stream_id: str, name: str, settings: Settings):
        self.matcher = WatchMatcher(stream_id, name)
        self.settings = settings
        self._version: int | None = None
        self._desk = None
        self._stop = threading.Event()
        self._warned = False
        self._thread = threading.Thread(target=self._poll, name=f"manta-{stream_id}-watches", daemon=True)
        self._thread.start()

    def refresh(self) -> None:
        if self._desk is None:
            self._desk = ray.get_actor(DESK_NAME, namespace=self.settings.namespace)
        changed = ray.get(self._desk.watches_since.remote(self._version), timeout=10)
        if changed is not None:
            self._version, watches = changed
            self.matcher.set_watches(
                (Watch(**{**w, "streams": tuple(w["streams"])}), v) for w, v in watches)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
                self._warned = False
            except Exception as exc:  # noqa: BLE001 - no desk yet (no watch made) or restarting
                self._desk = None
                if not self._warned and not isinstance(exc, ValueError):  # ValueError: not created yet
                    self._warned = True
                    log.warning("stream %s: cannot reach the watch desk: %s", self.matcher.stream_id,
                                type(exc).__name__)
            self._stop.wait(POLL_S)

    def check(self, items, fired_wall: float, sent_wall) -> None:
        if not self.matcher.watches or not items:
            return
        alerts = self.matcher.check(items, fired_wall, sent_wall)
        if alerts and self._desk is not None:
            self._desk.record.remote([a.to_dict() for a in alerts])

    def close(self) -> None:
        self._stop.set()
