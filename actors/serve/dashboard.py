"""The dashboard: a web page served by the API itself (``/ui``), and the two routes only it needs,
a recorded stream's file (HTTP range requests, so the browser's player can seek) and thumbnails.

Plain HTML, CSS and JavaScript from ``web/`` (no build step, nothing fetched from elsewhere): the
page calls the same JSON API as any client, with the cookie that ``POST /ui/login`` sets when a
token is configured (guard.py). The routes live on a router that app.py includes before
``@serve.ingress`` freezes the app; like the guard, they reach the replica's settings and stream
directory through a module global that ``MantaApi.__init__`` installs (one replica per process).
"""

from __future__ import annotations

import asyncio
import html
import logging
import math
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import ray
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from streaming.ingest.thumbnails import still_at
from streaming.settings import Settings
from streaming.source.media import SourceError
from streaming.source.policy import SourcePolicy, SourceRefused

from actors.directory import StreamDirectory, lost_message, wait_ref
from actors.serve import guard as guard_module
from actors.serve.guard import COOKIE, token_digest

log = logging.getLogger("manta.dashboard")

WEB = Path(__file__).resolve().parent / "web"
# All that /ui/static serves: names, not paths.
ASSETS = {"app.js": "text/javascript", "monitor.js": "text/javascript", "style.css": "text/css"}
MAX_LOGIN_BYTES = 4096  # a form with one token field
MAX_AT_S = 1e7  # media seconds (~115 days): past any stream, short of float trouble
# The page's own files only: no inline script, nothing from another origin, no framing.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
            "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
LOGIN_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                    "Cache-Control": "no-store"}

router = APIRouter()


@dataclass(frozen=True)
class _Replica:
    settings: Settings
    policy: SourcePolicy
    streams: StreamDirectory
    decoding: asyncio.Semaphore  # thumbnails decoded at once: a page of them must not take every thread


_replica: _Replica | None = None


def install(settings: Settings, policy: SourcePolicy, streams: StreamDirectory) -> None:
    """What this process's routes use (MantaApi.__init__ calls it)."""
    global _replica
    _replica = _Replica(settings, policy, streams, asyncio.Semaphore(2))


def _installed() -> _Replica:
    if _replica is None:
        raise HTTPException(503, detail="the API is starting")
    return _replica


# -- the page and its login ---------------------------------------------------------------------

LOGIN_FORM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Manta: sign in</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:26rem;margin:4rem auto;padding:0 1rem;color:#1b1f24}}
label,input,button{{display:block;width:100%;box-sizing:border-box}}input,button{{font:inherit;padding:.5rem;margin:.25rem 0 1rem}}
button{{background:#0b5cad;color:#fff;border:0;border-radius:4px;cursor:pointer}}
[role=alert]{{color:#a4161a;font-weight:600}}</style></head>
<body><main><h1>Manta</h1>
<p>This service needs its API token (the value of <code>MANTA_API_TOKEN</code>).</p>
{message}
<form method="post" action="/ui/login">
<label for="token">API token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button>
</form></main></body></html>
"""


def _login_form(message: str = "") -> HTMLResponse:
    shown = f'<p role="alert">{html.escape(message)}</p>' if message else ""
    return HTMLResponse(LOGIN_FORM.format(message=shown), status_code=401,
                        headers=SECURITY_HEADERS | {"Content-Security-Policy": LOGIN_CSP})


@router.get("/ui", include_in_schema=False)
@router.get("/ui/", include_in_schema=False)
async def page(request: Request):
    """The dashboard, or (a token is configured and this browser has no cookie) the login form."""
    if not getattr(request.state, "authorized", False):  # set by the guard, which runs first
        return _login_form()
    return FileResponse(WEB / "index.html", media_type="text/html; charset=utf-8",
                        headers=SECURITY_HEADERS | {"Content-Security-Policy": PAGE_CSP})


@router.post("/ui/login", include_in_schema=False)
async def login(request: Request):
    """The login form's target: the right token sets the cookie and goes to the page."""
    guard = guard_module.current()
    if guard is None or guard.digest is None:  # no token configured: nothing to sign in to
        return RedirectResponse("/ui", status_code=303)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_LOGIN_BYTES:
            raise HTTPException(413, detail="login form too large")
    fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=4)
    token = (fields.get("token") or [""])[0].strip()
    if not token or not guard.digest_ok(token_digest(token)):
        # The client's address, never what it typed: a near-miss token must not reach a log.
        log.warning("dashboard sign-in with a wrong token from %s", request.client.host if request.client else "?")
        return _login_form("Wrong token.")
    response = RedirectResponse("/ui", status_code=303)
    secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
    response.set_cookie(COOKIE, guard.cookie(), httponly=True, samesite="strict", secure=secure, path="/")
    return response


@router.post("/ui/logout", include_in_schema=False)
async def logout():
    response = RedirectResponse("/ui", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/ui/static/{name}", include_in_schema=False)
async def asset(name: str):
    if name not in ASSETS:
        raise HTTPException(404, detail=f"no such dashboard file: {name}")
    return FileResponse(WEB / name, media_type=ASSETS[name], headers={"X-Content-Type-Options": "nosniff",
                                                                    "Cache-Control": "no-cache"})


# -- media and thumbnails -------------------------------------------------------------------------

async def _call(stream_id: str, method: str, *args):
    """A stream actor's ``method``, as app.py's routes call it: 404 unknown, 504 slow, 503 gone."""
    replica = _installed()
    try:
        handle = await replica.streams.resolve(stream_id)
    except KeyError as exc:
        raise HTTPException(404, detail=exc.args[0]) from None
    timeout = replica.settings.query_timeout_s
    try:
        return await asyncio.wait_for(wait_ref(getattr(handle, method).remote(*args)), timeout)
    except asyncio.TimeoutError:
        raise HTTPException(504, detail=f"stream {stream_id} did not answer within {timeout:g} s") from None
    except ray.exceptions.RayActorError:
        raise HTTPException(503, detail=lost_message(stream_id)) from None


async def _recorded_file(stream_id: str) -> Path | None:
    """The file a recorded stream reads, checked by the source policy now (a stream created before
    media_roots changed, or a file replaced by a link since, gets no more than a new one would);
    None for a live stream. 409 for a recording that is not a local file, 403 refused, 404 gone."""
    info = await _call(stream_id, "recording")
    if info["live"]:
        return None
    if not info.get("path"):
        raise HTTPException(409, detail=f"stream {stream_id} is not recorded from a local file: the service "
                                        "has no copy to play")
    try:
        spec = await run_in_threadpool(_installed().policy.parse, info["path"])
    except SourceRefused as exc:
        raise HTTPException(403, detail=str(exc)) from None
    except SourceError:
        raise HTTPException(404, detail=f"the recording of stream {stream_id} is no longer readable") from None
    return Path(spec.uri)


@router.get("/v1/streams/{stream_id}/media", tags=["dashboard"])
async def media(stream_id: str):
    """The recorded file of a stream read from a file, for a player: HTTP range requests are
    answered (206), so it can seek. 409 for a live stream (there is no file; see ``/thumbnail``)."""
    path = await _recorded_file(stream_id)
    if path is None:
        raise HTTPException(409, detail=f"stream {stream_id} is live: there is no recording to play; "
                                        f"GET /v1/streams/{stream_id}/thumbnail?at=<seconds> shows its recent frames")
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=kind, headers={"Cache-Control": "private, no-cache",
                                                        "X-Content-Type-Options": "nosniff"})


@router.get("/v1/streams/{stream_id}/thumbnail", tags=["dashboard"],
            responses={200: {"content": {"image/jpeg": {}}}})
async def thumbnail(stream_id: str, at: float = Query(..., ge=0, le=MAX_AT_S,
                                                      description="media seconds")):
    """A JPEG (at most 320 px wide) of what the stream showed at ``at`` seconds: decoded from the
    file of a recorded stream; for a live one, the nearest of the thumbnails it kept of its last
    minutes. ``X-Manta-Frame-Time`` says the picture's own time."""
    if not math.isfinite(at):
        raise HTTPException(422, detail="'at' must be a finite number of seconds")
    path = await _recorded_file(stream_id)
    if path is None:
        found = await _call(stream_id, "thumbnail", at)
        if found is None:
            raise HTTPException(404, detail=f"stream {stream_id} kept no thumbnails (no video, or none "
                                            "sampled yet)")
        cache = "no-store"
    else:
        async with _installed().decoding:
            try:
                found = await run_in_threadpool(still_at, str(path), at)
            except Exception as exc:  # noqa: BLE001 - av.FFmpegError and kin: a reply, not a traceback
                log.warning("thumbnail of stream %s at %g s failed: %s", stream_id, at, type(exc).__name__)
                raise HTTPException(422, detail=f"cannot decode a frame of stream {stream_id} at {at:g} s") from None
        if found is None:
            raise HTTPException(404, detail=f"stream {stream_id} has no video track")
        cache = "private, max-age=3600"  # a recording's frame at a time does not change
    t, jpeg = found
    return Response(jpeg, media_type="image/jpeg",
                    headers={"X-Manta-Frame-Time": f"{t:.3f}", "Cache-Control": cache,
                             "X-Content-Type-Options": "nosniff"})
