"""Webhook delivery: each alert of a watch with a ``webhook_url`` is POSTed there, signed, retried.

The request (contract of issue 17): the AlertJSON without its ``webhook`` field as the body, with
``Content-Type: application/json``, ``X-Manta-Alert: <alert id>``, ``X-Manta-Timestamp: <unix s>``
and, when a secret is configured, ``X-Manta-Signature: sha256=<hex>``: HMAC-SHA256 of
``f"{timestamp}.".encode() + body`` under the secret. A receiver checks it with ``verify_signature``
(or the same three lines of hmac), refusing old timestamps so a captured request cannot be replayed.

A 2xx is delivered. 408, 429, 5xx and connection errors are retried, ``attempts`` tries in all, after
1, 2, 4, 8 … s (at most 30 s; a longer ``Retry-After`` up to that). Any other answer (other 4xx, and
3xx: redirects are never followed) fails at once.

Before every try the URL goes through the source egress policy (``SourcePolicy.check_url``): http
or https only, and every address its host resolves to must be one a source may reach (public, or
allow-listed, or loopback while the API is loopback-only). The connection then goes to exactly the
addresses that were checked, so a name that answers differently a moment later (DNS rebinding)
reaches nothing new; https still verifies the certificate against the host name.

``WebhookSender`` does this off the caller's thread: ``submit`` only queues (a full queue fails the
alert with the reason, it never blocks ingest), a few daemon workers deliver, and ``on_state`` hears
of every try. Errors and logs show the URL through ``redact_uri``: a password,
token or signature in it never appears, and neither does the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import logging
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from streaming.source.media import SourceError
from streaming.source.policy import SourcePolicy, SourceRefused
from streaming.source.redact import redact_text, redact_uri

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Manta-Signature"
TIMESTAMP_HEADER = "X-Manta-Timestamp"
ALERT_HEADER = "X-Manta-Alert"
DEFAULT_TOLERANCE_S = 300.0  # a receiver's default: how old a timestamp it accepts
MAX_BACKOFF_S = 30.0
RETRIED_STATUSES = frozenset({408, 429})  # and every 5xx
USER_AGENT = "Manta-Webhook/1"

StateCallback = Callable[[int, dict], None]


# -- signing ---------------------------------------------------------------------------------------

def _key(secret: bytes | str) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def sign(secret: bytes | str, timestamp: int | str, body: bytes) -> str:
    """The ``X-Manta-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of ``"{timestamp}." + body``."""
    digest = hmac.new(_key(secret), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: bytes | str, body: bytes, timestamp: str | int | None, signature: str | None,
                     *, tolerance_s: float = DEFAULT_TOLERANCE_S, now: float | None = None) -> bool:
    """Whether a received webhook is ours and fresh: ``signature`` (the X-Manta-Signature header) is
    the HMAC of ``timestamp`` (X-Manta-Timestamp) and the raw ``body`` under ``secret``, and the
    timestamp lies within ``tolerance_s`` of ``now`` (default: this machine's clock), either side."""
    if not secret or not signature or timestamp is None:
        return False
    try:
        ts = int(str(timestamp).strip())
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body).encode(), signature.strip().encode())


def backoff_s(failed_tries: int, retry_after: float | None = None) -> float:
    """Seconds to wait after the ``failed_tries``-th failed try: 1, 2, 4, 8 … at most 30; a receiver's
    ``Retry-After`` when it asks for longer (still at most 30)."""
    wait = min(MAX_BACKOFF_S, 2.0 ** max(0, failed_tries - 1))
    if retry_after is not None:
        wait = min(MAX_BACKOFF_S, max(wait, retry_after))
    return wait


def alert_body(alert: dict) -> bytes:
    """The request body: the AlertJSON without its delivery state (``webhook``)."""
    return json.dumps({k: v for k, v in alert.items() if k != "webhook"}, separators=(",", ":"),
                      ensure_ascii=False).encode()


# -- one try ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    """What one try came to: ``delivered``, or ``retry`` (worth another try), or neither (failed)."""

    delivered: bool
    retry: bool
    error: str | None = None
    retry_after: float | None = None


def _pinned(addresses: list[str]):
    """A ``create_connection`` that connects to the checked ``addresses`` whatever host it is asked
    for (http.client passes the URL's host; https still sends it for SNI and verifies it)."""

    def create_connection(address, timeout=None, source_address=None):
        _, port = address
        last: OSError | None = None
        for addr in addresses:
            try:
                return socket.create_connection((addr, port), timeout, source_address)
            except OSError as exc:
                last = exc
        raise last or OSError("no address to connect to")

    return create_connection


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: the usual backoff will do


def _connection_error(exc: BaseException) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or type(exc).__name__}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return f"connection error: {exc.strerror}"
    return f"connection error: {type(exc).__name__}"


def post_once(url: str, body: bytes, headers: dict[str, str], addresses: list[str], timeout_s: float,
              ssl_context: ssl.SSLContext | None = None) -> Outcome:
    """POST ``body`` to ``url``, connecting only to ``addresses``; redirects are not followed."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = dict(headers)
    if parts.username is not None:  # http://user:pass@host/: the receiver's basic auth
        cred = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(cred).decode()
    https = parts.scheme.lower() == "https"
    port = parts.port or (443 if https else 80)  # explicit: http.client would read "::1" as host ":", port 1
    if https:
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, port, timeout=timeout_s, context=ssl_context or ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    # HTTPConnection.connect opens its socket through this attribute (CPython 3.x; not public API, but
    # it is what lets the connection go to the checked addresses while Host/SNI keep the name).
    conn._create_connection = _pinned(addresses)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read(65536)  # what the receiver says is not kept (it could echo anything)
        status = response.status
        retry_after = _retry_after(response.getheader("Retry-After"))
    except (OSError, http.client.HTTPException) as exc:
        return Outcome(False, True, _connection_error(exc))
    finally:
        conn.close()
    if 200 <= status < 300:
        return Outcome(True, False)
    if 300 <= status < 400:
        return Outcome(False, False, f"HTTP {status}: redirects are not followed")
    if status in RETRIED_STATUSES or status >= 500:
        return Outcome(False, True, f"HTTP {status}", retry_after)
    return Outcome(False, False, f"HTTP {status}")


# -- the sender ------------------------------------------------------------------------------------

@dataclass
class _Job:
    alert_id: int
    url: str
    body: bytes


class WebhookSender:
    """Delivers alerts to webhooks on its own daemon threads; the alert desk owns one.

    ``on_state(alert_id, {"state": "pending"|"delivered"|"failed", "attempts": n, "last_error": str|None})``
    is called after every try, from a worker thread (and from ``close`` for alerts it leaves unsent):
    a callback that touches shared state needs a lock. ``submit`` does not call it; it returns the
    first state itself (pending, or failed when the queue is full), so a caller may hold its own
    lock around ``submit`` without the callback deadlocking on it.
    ``sleep`` waits out a backoff (default: a wait that ``close`` cuts short); ``clock`` gives the
    X-Manta-Timestamp (unix seconds); tests without DNS pass a ``policy`` with a stand-in resolver.
    """

    def __init__(self, policy: SourcePolicy, *, secret: bytes | str | None = None, attempts: int = 5,
                 timeout_s: float = 5.0, on_state: StateCallback | None = None, queue_size: int = 1000,
                 workers: int = 2, sleep: Callable[[float], None] | None = None,
                 clock: Callable[[], float] = time.time, ssl_context: ssl.SSLContext | None = None):
        if attempts < 1 or workers < 1 or queue_size < 1:
            raise ValueError("attempts, workers and queue_size must be at least 1")
        self.policy = policy
        self._secret = _key(secret) if secret else None
        self.attempts = attempts
        self.timeout_s = timeout_s
        self.on_state = on_state
        self._clock = clock
        self._ssl_context = ssl_context
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=queue_size)
        self._threads = [threading.Thread(target=self._work, name=f"webhook-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()

    @classmethod
    def from_settings(cls, settings, *, policy: SourcePolicy | None = None, **kw) -> "WebhookSender":
        """A sender with the settings' secret, attempts, timeout and source egress policy."""
        return cls(policy or SourcePolicy.from_settings(settings), secret=settings.webhook_secret(),
                   attempts=settings.webhook_attempts, timeout_s=settings.webhook_timeout_s, **kw)

    def __repr__(self) -> str:  # never the secret
        return f"WebhookSender(attempts={self.attempts}, signed={self._secret is not None})"

    # -- public -----------------------------------------------------------------------------------

    def submit(self, alert: dict, url: str) -> dict:
        """Queue ``alert`` (an AlertJSON with its int ``id``) for ``url``; returns at once with the
        alert's first state (not told to ``on_state``): pending, or failed with the reason."""
        alert_id = int(alert["id"])
        if self._stop.is_set():
            return self._state("failed", 0, "not sent: the webhook sender closed")
        try:
            self._queue.put_nowait(_Job(alert_id, url, alert_body(alert)))
        except queue.Full:
            log.warning("webhook for alert %s to %s dropped: the delivery queue is full (%d)", alert_id,
                        redact_uri(url), self._queue.maxsize)
            return self._state("failed", 0, f"not sent: the webhook queue is full ({self._queue.maxsize} waiting)")
        return self._state("pending", 0, None)

    def pending(self) -> int:
        """Alerts queued and not yet taken by a worker."""
        return self._queue.qsize()

    def close(self, timeout: float = 5.0) -> None:
        """Stop: backoffs end, workers finish the try under way, queued alerts are not sent."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for _ in self._threads:  # one end mark each; stopped workers empty the queue quickly
            try:
                self._queue.put(None, timeout=max(0.0, deadline - time.monotonic()))
            except queue.Full:
                break
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        while True:  # what was still queued ends failed, so no alert stays "pending" for ever
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                self._report(job.alert_id, "failed", 0, "not sent: the webhook sender closed")

    # -- workers ----------------------------------------------------------------------------------

    @staticmethod
    def _state(state: str, attempts: int, error: str | None) -> dict:
        return {"state": state, "attempts": attempts, "last_error": error}

    def _report(self, alert_id: int, state: str, attempts: int, error: str | None) -> dict:
        info = self._state(state, attempts, error)
        if self.on_state is not None:
            try:
                self.on_state(alert_id, dict(info))
            except Exception:  # noqa: BLE001 - a faulty callback must not stop deliveries
                log.exception("webhook state callback failed for alert %s", alert_id)
        return info

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if self._stop.is_set():
                self._report(job.alert_id, "failed", 0, "not sent: the webhook sender closed")
                continue
            try:
                self._deliver(job)
            except Exception:  # noqa: BLE001 - one bad job must not end the worker
                log.exception("webhook delivery of alert %s failed unexpectedly", job.alert_id)
                self._report(job.alert_id, "failed", 0, "internal error while sending")

    def _deliver(self, job: _Job) -> None:
        shown = redact_uri(job.url)
        for attempt in range(1, self.attempts + 1):
            outcome = self._try(job)
            if outcome.delivered:
                self._report(job.alert_id, "delivered", attempt, None)
                log.info("webhook for alert %s delivered to %s (try %d)", job.alert_id, shown, attempt)
                return
            error = redact_text(outcome.error or "failed")
            last = attempt == self.attempts or not outcome.retry or self._stop.is_set()
            self._report(job.alert_id, "failed" if last else "pending", attempt, error)
            if last:
                log.warning("webhook for alert %s to %s failed after %d %s: %s", job.alert_id, shown,
                            attempt, "try" if attempt == 1 else "tries", error)
                return
            self._sleep(backoff_s(attempt, outcome.retry_after))
            if self._stop.is_set():
                self._report(job.alert_id, "failed", attempt, f"{error}; not retried: the sender closed")
                return

    def _try(self, job: _Job) -> Outcome:
        try:
            addresses = self.policy.check_url(job.url)
        except SourceRefused as exc:
            reason = str(exc).removeprefix("source refused: ")
            return Outcome(False, False, f"refused by the egress policy: {reason}")
        except SourceError as exc:  # the name did not resolve: perhaps later
            return Outcome(False, True, str(exc))
        timestamp = str(int(self._clock()))
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   ALERT_HEADER: str(job.alert_id), TIMESTAMP_HEADER: timestamp}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, job.body)
        return post_once(job.url, job.body, headers, addresses, self.timeout_s, self._ssl_context)
