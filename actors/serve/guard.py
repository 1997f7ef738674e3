"""Who may talk to the API: the bearer token and the Host header, checked before any route runs.

With a token configured (MANTA_API_TOKEN or ``api_token_file``), every request needs
``Authorization: Bearer <token>`` (an OpenAI client's ``api_key`` sends exactly that), except
``/healthz``, which then answers only that the service is up. The replicas never see the token: the
app is given its SHA-256 and compares digests in constant time.

A browser cannot send that header when it opens a page, so the dashboard (``/ui``, dashboard.py)
logs in once: ``POST /ui/login`` with the right token sets an HttpOnly, SameSite=Strict cookie
``manta_token``, accepted like the header. The cookie holds a value derived from the token's digest
(``cookie_value``), never the token itself: the browser keeps nothing that works as a bearer token
elsewhere, and changing the token logs every browser out. SameSite=Strict keeps other sites' pages
from sending it with their requests.

The Host header check stops DNS rebinding: a web page the operator opens can make the browser send
requests to 127.0.0.1 under the page's own host name. Loopback names are always served; others
only when listed in ``allowed_hosts``. With a token and no list, any name is served (the page
cannot know the token) and the operator is told once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass

from actors.serve.limits import json_reply

log = logging.getLogger("manta.guard")

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
OPEN_PATHS = frozenset({"/healthz"})  # answered without the token, with nothing but "ok"
# The dashboard's page answers a login form without the token, and the form posts here.
LOGIN_PATHS = frozenset({"/ui", "/ui/", "/ui/login"})
COOKIE = "manta_token"


def token_digest(token: str | None) -> str | None:
    return hashlib.sha256(token.encode()).hexdigest() if token else None


def host_name(header: str) -> str:
    """The name in a Host header, without port or IPv6 brackets, lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


@dataclass(frozen=True)
class Guard:
    digest: str | None  # SHA-256 of the token, None: no token configured
    hosts: frozenset[str] | None  # Host names served; None: any

    @classmethod
    def from_settings(cls, settings, digest: str | None) -> "Guard":
        listed = {host_name(h) for h in settings.allowed_hosts}
        if settings.loopback_only or listed:
            names = LOOPBACK_NAMES | listed | ({host_name(settings.host)} if settings.loopback_only else set())
            return cls(digest, frozenset(names))
        log.warning("allowed_hosts is empty: any Host header is served (the API token still guards "
                    "every route); list the names clients use to refuse the rest")
        return cls(digest, None)

    def host_ok(self, header: str | None) -> bool:
        return self.hosts is None or (header is not None and host_name(header) in self.hosts)

    def token_ok(self, authorization: str | None) -> bool:
        if self.digest is None:
            return True
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return False
        return self.digest_ok(token_digest(presented.strip()))

    def digest_ok(self, digest: str | None) -> bool:
        """``digest`` (of a presented token) is the configured token's: compared in constant time."""
        return digest is not None and hmac.compare_digest(digest, self.digest or "")

    def cookie(self) -> str | None:
        """The dashboard cookie's value: derived from the digest, so it is not the token."""
        return cookie_value(self.digest) if self.digest else None

    def cookie_ok(self, header: str | None) -> bool:
        """A ``Cookie`` header carries the dashboard's cookie for this token."""
        expected = self.cookie()
        if expected is None or not header:
            return False
        presented = [v.strip() for k, _, v in (p.partition("=") for p in header.split(";"))
                     if k.strip() == COOKIE]
        # As bytes: compare_digest refuses str with non-ASCII characters, which a header may carry.
        return any(hmac.compare_digest(v.encode("latin-1", "replace"), expected.encode()) for v in presented)


def cookie_value(digest: str) -> str:
    return hmac.new(bytes.fromhex(digest), b"manta dashboard cookie v1", hashlib.sha256).hexdigest()


_guard: Guard | None = None


def install(guard: Guard) -> None:
    """The guard of this process's API (one MantaApi replica per process)."""
    global _guard
    _guard = guard


def current() -> Guard | None:
    return _guard


class GuardMiddleware:
    """Plain ASGI, so it also covers streamed (SSE) responses and FastAPI's own /docs."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        guard = _guard
        if guard is None:  # not configured yet: the replica is still starting
            return await json_reply(send, 503, "the API is starting")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if not guard.host_ok(headers.get("host")):
            return await json_reply(send, 400, "this Host header is not served here; an operator can list "
                                               "it in allowed_hosts")
        authorized = guard.token_ok(headers.get("authorization")) or guard.cookie_ok(headers.get("cookie"))
        scope.setdefault("state", {})["authorized"] = authorized
        # The login paths check ``authorized`` themselves: without it, /ui answers the login form.
        if not authorized and scope.get("path") not in OPEN_PATHS | LOGIN_PATHS:
            return await json_reply(send, 401, "missing or wrong API token: send 'Authorization: Bearer <token>'",
                                    {"www-authenticate": "Bearer"})
        return await self.app(scope, receive, send)

