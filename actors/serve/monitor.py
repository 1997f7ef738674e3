"""Watches and alerts over HTTP: ``/v1/watches`` and ``/v1/alerts`` (JSON and Server-Sent Events).

A router rather than more methods on ``MantaApi``: the routes need only the alert desk
(actors/watch_desk.py), the question embedder and the source policy, which the replica hands over
with ``install`` when it starts (as the guard is installed).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import APIRouter, Header, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from streaming.settings import Settings
from streaming.source.media import SourceError
from streaming.source.policy import SourcePolicy, SourceRefused

from actors.directory import wait_ref
from actors.serve.schemas import WatchRequest
from actors.watch_desk import TooManyWatches, desk

log = logging.getLogger("manta.monitor")
router = APIRouter()
KEEPALIVE_S = 15.0  # an idle SSE connection gets a comment this often, so proxies keep it open


@dataclass
class Monitor:
    settings: Settings
    embed: Callable[[str], Awaitable]  # a text's unit vector, as questions are embedded
    policy: SourcePolicy
    answerer: object = None  # the answer model's handle: ``verify`` watches ask it
    desk: object = None

    def handle(self):
        if self.desk is None:
            self.desk = desk(self.settings, self.answerer)
        return self.desk


_monitor: Monitor | None = None


def install(monitor: Monitor) -> None:
    global _monitor
    _monitor = monitor


def install_desk() -> None:
    try:
        _m().handle()
    except Exception:  # noqa: BLE001 - the API must come up; the routes try again
        log.exception("creating the alert desk failed")


def _m() -> Monitor:
    if _monitor is None:
        raise HTTPException(503, detail="the API is starting")
    return _monitor


async def _ask(method: str, *args):
    try:
        return await asyncio.wait_for(wait_ref(getattr(_m().handle(), method).remote(*args)), 30)
    except asyncio.TimeoutError:
        raise HTTPException(504, detail="the alert desk did not answer within 30 s") from None


def sse_alert(alert: dict) -> str:
    return f"id: {alert['id']}\nevent: alert\ndata: {json.dumps(alert)}\n\n"


@router.post("/v1/watches", status_code=201)
async def add_watch(req: WatchRequest) -> dict:
    """Alert whenever something said, shown or seen on the covered streams matches ``text``."""
    m = _m()
    if req.webhook_url is not None:
        try:  # where alerts will be sent obeys the sources' egress rules (resolves: off the loop)
            await run_in_threadpool(m.policy.check_url, req.webhook_url)
        except SourceRefused as exc:
            raise HTTPException(403, detail=f"webhook_url refused: {exc}") from None
        except SourceError as exc:
            raise HTTPException(400, detail=f"webhook_url: {exc}") from None
    s = m.settings
    if req.verify and s.answer_model == "off":
        raise HTTPException(409, detail="verify needs an answer model, and answer_model is off")
    watch = {"id": f"w-{secrets.token_hex(4)}", "text": req.text, "streams": req.streams or [],
             "modality": req.modality, "threshold": req.threshold or s.watch_threshold,
             "cooldown_s": s.watch_cooldown_s if req.cooldown_s is None else req.cooldown_s,
             "webhook_url": req.webhook_url, "created_wall": time.time(), "verify": req.verify}
    vector = await m.embed(req.text)
    try:
        return {"watch": await _ask("add_watch", watch, vector.tolist())}
    except TooManyWatches as exc:  # raised in the desk: Ray's wrapper carries it as ``cause``
        raise HTTPException(429, detail=str(getattr(exc, "cause", exc))) from None


@router.get("/v1/watches")
async def list_watches() -> dict:
    return {"watches": await _ask("watches")}


@router.delete("/v1/watches/{watch_id}")
async def remove_watch(watch_id: str) -> dict:
    if not await _ask("remove_watch", watch_id):
        raise HTTPException(404, detail=f"no watch {watch_id}")
    return {"removed": watch_id}


@router.get("/v1/alerts")
async def list_alerts(since: int = Query(0, ge=0, description="alerts after this id"),
                      stream: str | None = Query(None, max_length=63),
                      watch: str | None = Query(None, max_length=64),
                      limit: int = Query(100, ge=1, le=1000)) -> dict:
    """Alerts oldest first, each with its webhook delivery state."""
    alerts = await _ask("alerts", since, stream, watch, limit)
    return {"alerts": alerts, "last_id": alerts[-1]["id"] if alerts else since}


@router.get("/v1/alerts/stream")
async def alert_feed(since: int | None = Query(None, ge=0, description="resume after this alert id"),
                     last_event_id: str | None = Header(None)):
    """Alerts as Server-Sent Events the moment they are raised (``id:`` is the alert id). A client
    that reconnects with ``Last-Event-ID`` (browsers' EventSource does) gets what it missed."""
    after = since
    if last_event_id is not None:
        try:
            after = int(last_event_id)
        except ValueError:
            raise HTTPException(400, detail="Last-Event-ID must be an alert id (an integer)") from None
    if after is None:
        after = await _ask("last_id")  # from now on
    handle = _m().handle()

    async def body():
        nonlocal after
        yield ": connected\n\n"  # headers and a first byte now: the client knows it is subscribed
        while True:
            alerts = await wait_ref(handle.wait.remote(after, KEEPALIVE_S))
            if not alerts:
                yield ": keepalive\n\n"
            for alert in alerts:
                after = alert["id"]
                yield sse_alert(alert)

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
