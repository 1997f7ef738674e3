"""Webhook delivery against a real HTTP receiver on 127.0.0.1 (http.server in a thread).

Backoff sleeps are injected (recorded, not slept), so retries take no time. Refused destinations
use literal addresses or a stand-in resolver: nothing here leaves loopback, and the refusal tests
make any connection attempt fail the test.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from streaming.settings import Settings
from streaming.source.policy import SourcePolicy, SourceRefused
from streaming.watch import webhook
from streaming.watch.webhook import WebhookSender, alert_body, backoff_s, sign, verify_signature

LOCAL = Settings(host="127.0.0.1")  # API on loopback only: the policy lets sources reach loopback
EXPOSED = Settings(host="0.0.0.0")  # API reachable from elsewhere: loopback is refused
SECRET = b"whsec-test-0123456789"
FINAL = ("delivered", "failed")


def alert(alert_id: int = 7) -> dict:
    return {"watch": "w-0000abcd", "watch_text": "fire alarm", "stream": "cam-1", "start": 61.0,
            "end": 64.5, "modality": "said", "kind": "speech", "text": "the fire alarm went off",
            "quote": "fire alarm", "score": 0.81, "fired_wall": 1.7e9, "sent_wall": None, "id": alert_id,
            "webhook": {"state": "pending", "attempts": 0, "last_error": None}}


class Receiver:
    """An HTTP server answering each POST with the next scripted status (the last one repeats)."""

    def __init__(self, statuses=(200,), headers: dict | None = None, gate: threading.Event | None = None):
        self.statuses = list(statuses)
        self.extra = headers or {}
        self.gate = gate
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if receiver.gate is not None:
                    receiver.gate.wait(10)
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                for k, v in receiver.extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(*a, **kw) -> Receiver:
        made.append(Receiver(*a, **kw))
        return made[-1]

    yield make
    for r in made:
        if r.gate is not None:
            r.gate.set()
        r.close()


class Harness:
    """A sender whose states and backoff sleeps are recorded."""

    def __init__(self, settings: Settings = LOCAL, resolver=None, **kw):
        self.states: list[tuple[int, dict]] = []
        self.slept: list[float] = []
        self.lock = threading.Lock()
        policy = SourcePolicy.from_settings(settings, **({"resolver": resolver} if resolver else {}))
        kw.setdefault("sleep", self.slept.append)
        kw.setdefault("secret", SECRET)
        kw.setdefault("attempts", 5)
        kw.setdefault("timeout_s", 5.0)
        self.sender = WebhookSender(policy, on_state=self.record, **kw)

    def record(self, alert_id: int, state: dict) -> None:
        with self.lock:
            self.states.append((alert_id, state))

    def of(self, alert_id: int) -> list[dict]:
        with self.lock:
            return [s for a, s in self.states if a == alert_id]

    def final(self, alert_id: int, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.of(alert_id)
            if states and states[-1]["state"] in FINAL:
                return states[-1]
            time.sleep(0.01)
        raise AssertionError(f"alert {alert_id} never finished: {self.of(alert_id)}")


@pytest.fixture
def harness():
    made: list[Harness] = []

    def make(*a, **kw) -> Harness:
        made.append(Harness(*a, **kw))
        return made[-1]

    yield make
    for h in made:
        h.sender.close(timeout=2.0)


@pytest.fixture
def no_connections(monkeypatch):
    """Any outgoing TCP connection fails the test (the policy must refuse before connecting)."""
    tried: list = []

    def refuse(address, *a, **kw):
        tried.append(address)
        raise AssertionError(f"connection attempted to {address}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    return tried


# -- signing ---------------------------------------------------------------------------------------

def test_a_signed_post_arrives_with_the_contract_headers(receivers, harness) -> None:
    rx = receivers()
    h = harness(clock=lambda: 1_700_000_123.9)
    assert h.sender.submit(alert(7), rx.url) == {"state": "pending", "attempts": 0, "last_error": None}
    assert h.final(7) == {"state": "delivered", "attempts": 1, "last_error": None}

    [req] = rx.requests
    headers = {k.lower(): v for k, v in req["headers"].items()}
    assert req["path"] == "/hook"
    assert headers["content-type"] == "application/json"
    assert headers["x-manta-alert"] == "7"
    assert headers["x-manta-timestamp"] == "1700000123"
    body = req["body"]
    sent = json.loads(body)
    assert "webhook" not in sent and sent == {k: v for k, v in alert(7).items() if k != "webhook"}
    assert body == alert_body(alert(7))

    # Independently of our code: the HMAC-SHA256 of "{timestamp}." + body under the secret.
    expected = hmac.new(SECRET, b"1700000123." + body, hashlib.sha256).hexdigest()
    assert headers["x-manta-signature"] == f"sha256={expected}"
    # ... and as a receiver checks it with our function.
    ts, sig = headers["x-manta-timestamp"], headers["x-manta-signature"]
    assert verify_signature(SECRET, body, ts, sig, now=1_700_000_200)
    assert verify_signature(SECRET.decode(), body, ts, sig, now=1_700_000_200)  # str secret alike
    assert not verify_signature(SECRET, body, ts, sig, now=1_700_000_123 + 301)  # too old: a replay
    assert not verify_signature(SECRET, body, ts, sig, now=1_700_000_123 - 301)  # from the future
    assert verify_signature(SECRET, body, ts, sig, now=1_700_000_123 + 3000, tolerance_s=3600)
    assert not verify_signature(b"another-secret", body, ts, sig, now=1_700_000_200)
    assert not verify_signature(SECRET, body + b" ", ts, sig, now=1_700_000_200)  # body changed
    assert not verify_signature(SECRET, body, "1700000124", sig, now=1_700_000_200)  # timestamp changed
    assert not verify_signature(SECRET, body, ts, None, now=1_700_000_200)
    assert not verify_signature(SECRET, body, "soon", sig, now=1_700_000_200)


def test_without_a_secret_the_post_is_unsigned(receivers, harness) -> None:
    rx = receivers()
    h = harness(secret=None)
    h.sender.submit(alert(1), rx.url)
    assert h.final(1)["state"] == "delivered"
    assert "x-manta-signature" not in {k.lower() for k in rx.requests[0]["headers"]}


def test_from_settings_signs_with_the_configured_secret(receivers, monkeypatch) -> None:
    monkeypatch.setenv("MANTA_WEBHOOK_SECRET", "from-the-env-secret")
    rx = receivers()
    done = threading.Event()
    sender = WebhookSender.from_settings(LOCAL.model_copy(update={"webhook_attempts": 2}),
                                         on_state=lambda a, s: s["state"] in FINAL and done.set())
    try:
        assert sender.attempts == 2 and sender.timeout_s == LOCAL.webhook_timeout_s
        assert "from-the-env" not in repr(sender)
        sender.submit(alert(3), rx.url)
        assert done.wait(10)
    finally:
        sender.close()
    req = rx.requests[0]
    h = {k.lower(): v for k, v in req["headers"].items()}
    assert verify_signature("from-the-env-secret", req["body"], h["x-manta-timestamp"], h["x-manta-signature"])


# -- retries ---------------------------------------------------------------------------------------

def test_two_503s_then_200_take_three_tries_with_backoff(receivers, harness) -> None:
    rx = receivers((503, 503, 200))
    h = harness()
    h.sender.submit(alert(9), rx.url)
    assert h.final(9) == {"state": "delivered", "attempts": 3, "last_error": None}
    assert len(rx.requests) == 3
    assert [(s["state"], s["attempts"], s["last_error"]) for s in h.of(9)] == [
        ("pending", 1, "HTTP 503"), ("pending", 2, "HTTP 503"), ("delivered", 3, None)]
    assert h.slept == [1.0, 2.0]
    assert all(verify_signature(SECRET, r["body"], r["headers"]["X-Manta-Timestamp"],
                                r["headers"]["X-Manta-Signature"]) for r in rx.requests)  # each try signed


@pytest.mark.parametrize("status", [408, 429, 500, 502])
def test_retried_statuses_give_up_after_the_configured_attempts(receivers, harness, status) -> None:
    rx = receivers((status,))
    h = harness(attempts=4)
    h.sender.submit(alert(2), rx.url)
    assert h.final(2) == {"state": "failed", "attempts": 4, "last_error": f"HTTP {status}"}
    assert len(rx.requests) == 4
    assert h.slept == [1.0, 2.0, 4.0]


def test_backoff_doubles_up_to_30_s_and_honours_a_longer_retry_after(receivers, harness) -> None:
    assert [backoff_s(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff_s(1, retry_after=5) == 5 and backoff_s(4, retry_after=5) == 8
    assert backoff_s(1, retry_after=3600) == 30
    rx = receivers((429, 200), headers={"Retry-After": "7"})
    h = harness()
    h.sender.submit(alert(4), rx.url)
    assert h.final(4)["attempts"] == 2
    assert h.slept == [7.0]


def test_connection_errors_are_retried(harness) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    h = harness(attempts=3)
    h.sender.submit(alert(5), f"http://127.0.0.1:{port}/hook")
    assert h.final(5) == {"state": "failed", "attempts": 3, "last_error": "connection refused"}
    assert h.slept == [1.0, 2.0]


def test_a_receiver_slower_than_the_timeout_is_a_retried_timeout(receivers, harness) -> None:
    gate = threading.Event()
    rx = receivers(gate=gate)
    h = harness(attempts=2, timeout_s=0.3)
    h.sender.submit(alert(6), rx.url)
    assert h.final(6) == {"state": "failed", "attempts": 2, "last_error": "timed out"}
    assert len(rx.requests) == 2


def test_a_400_fails_at_once(receivers, harness) -> None:
    rx = receivers((400, 200))
    h = harness()
    h.sender.submit(alert(8), rx.url)
    assert h.final(8) == {"state": "failed", "attempts": 1, "last_error": "HTTP 400"}
    time.sleep(0.2)
    assert len(rx.requests) == 1 and h.slept == []


def test_a_redirect_is_not_followed(receivers, harness) -> None:
    target = receivers()
    rx = receivers((302,), headers={"Location": target.url})
    h = harness()
    h.sender.submit(alert(10), rx.url)
    final = h.final(10)
    assert final["state"] == "failed" and final["attempts"] == 1
    assert "302" in final["last_error"] and "redirect" in final["last_error"]
    time.sleep(0.2)
    assert len(rx.requests) == 1 and target.requests == []


# -- the egress policy -----------------------------------------------------------------------------

@pytest.mark.parametrize("url, why", [
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://10.0.0.1/hook", "private"),
    ("https://192.168.1.20:8443/hook", "private"),
    ("http://[fe80::1]/hook", "link-local"),
    ("http://[::ffff:169.254.169.254]/hook", "link-local"),
    ("http://hooks.example/hook", "private"),  # a name that resolves to a private address
    ("ftp://93.184.216.34/hook", "only http://, https://"),
    ("file:///etc/passwd", "only http://, https://"),
    ("http:///no-host", "no host"),
])
def test_non_public_or_non_http_destinations_are_refused_without_connecting(harness, no_connections,
                                                                             url, why) -> None:
    for settings in (LOCAL, EXPOSED):
        h = harness(settings, resolver=lambda host: {"hooks.example": ["10.1.2.3"]}.get(host, [host]))
        h.sender.submit(alert(11), url)
        final = h.final(11)
        assert final["state"] == "failed" and final["attempts"] == 1
        assert why in final["last_error"] and final["last_error"].startswith("refused by the egress policy")
        assert h.slept == []  # refused at once, not retried
    assert no_connections == []


def test_the_policy_is_checked_again_before_every_try(receivers, harness) -> None:
    """A name that resolved to loopback for the first try and to the metadata address later is
    refused at the second try (and the connection goes only to the addresses that were checked)."""
    rx = receivers((503,))
    port = rx.server.server_address[1]
    answers = [["127.0.0.1"], ["169.254.169.254"]]
    h = harness(resolver=lambda host: answers.pop(0) if len(answers) > 1 else answers[0])
    h.sender.submit(alert(12), f"http://hooks.example:{port}/hook")
    final = h.final(12)
    assert final["state"] == "failed" and final["attempts"] == 2 and "link-local" in final["last_error"]
    assert len(rx.requests) == 1 and rx.requests[0]["headers"]["Host"] == f"hooks.example:{port}"


def test_loopback_is_allowed_only_while_the_policy_allows_it(receivers, harness) -> None:
    rx = receivers()
    local = harness(LOCAL)
    local.sender.submit(alert(13), rx.url)
    assert local.final(13)["state"] == "delivered"  # the API is loopback-only: so may webhooks be

    exposed = harness(EXPOSED)
    exposed.sender.submit(alert(14), rx.url)
    final = exposed.final(14)
    assert final["state"] == "failed" and "loopback" in final["last_error"]
    assert "source_allow" in final["last_error"]  # it says which setting allows it

    allowed = harness(EXPOSED.model_copy(update={"source_allow": ["127.0.0.0/8"]}))
    allowed.sender.submit(alert(15), rx.url)
    assert allowed.final(15)["state"] == "delivered"
    assert len(rx.requests) == 2


def test_check_url_returns_the_checked_addresses() -> None:
    p = SourcePolicy.from_settings(LOCAL, resolver=lambda h: {"cdn.example": ["93.184.216.34"]}.get(h, [h]))
    assert p.check_url("https://cdn.example/hook") == ["93.184.216.34"]
    assert p.check_url("http://127.0.0.1:9/x") == ["127.0.0.1"]
    for bad in ("http://127.0.0.1:notaport/", "rtsp://cdn.example/x", "cdn.example/hook"):
        with pytest.raises(SourceRefused):
            p.check_url(bad)


# -- secrets ---------------------------------------------------------------------------------------

def test_url_credentials_and_the_secret_never_show_in_states_or_logs(receivers, harness, caplog) -> None:
    rx = receivers((500,))
    port = rx.server.server_address[1]
    url = f"http://hookuser:pw-s3cr3t@127.0.0.1:{port}/hook?token=tok-s3cr3t&x=1"
    caplog.set_level(logging.DEBUG, logger=webhook.__name__)
    h = harness(attempts=2)
    h.sender.submit(alert(16), url)
    assert h.final(16)["state"] == "failed"
    # The receiver got its basic auth and query; only it sees them.
    assert rx.requests[0]["path"] == "/hook?token=tok-s3cr3t&x=1"
    assert rx.requests[0]["headers"]["Authorization"].startswith("Basic ")
    shown = json.dumps(h.states) + caplog.text
    assert "failed after 2 tries" in caplog.text and "127.0.0.1" in caplog.text
    for secret in ("pw-s3cr3t", "tok-s3cr3t", SECRET.decode()):
        assert secret not in shown


# -- the queue -------------------------------------------------------------------------------------

def test_a_full_queue_fails_the_alert_at_once_without_blocking(receivers, harness) -> None:
    gate = threading.Event()
    rx = receivers(gate=gate)
    h = harness(workers=1, queue_size=2)
    h.sender.submit(alert(20), rx.url)  # taken by the one worker, held by the receiver
    deadline = time.monotonic() + 5
    while not rx.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rx.requests
    assert h.sender.submit(alert(21), rx.url)["state"] == "pending"
    assert h.sender.submit(alert(22), rx.url)["state"] == "pending"
    assert h.sender.pending() == 2
    t0 = time.monotonic()
    full = h.sender.submit(alert(23), rx.url)
    assert time.monotonic() - t0 < 0.5  # ingest is never held up
    assert full["state"] == "failed" and full["attempts"] == 0 and "queue is full" in full["last_error"]
    assert h.of(23) == []  # submit answers for itself; on_state hears of tries only
    gate.set()
    assert [h.final(i)["state"] for i in (20, 21, 22)] == ["delivered"] * 3
    assert len(rx.requests) == 3


def test_close_ends_a_backoff_and_fails_what_is_left(receivers) -> None:
    rx = receivers((503,))
    states: dict[int, dict] = {}
    sender = WebhookSender(SourcePolicy.from_settings(LOCAL), attempts=5, workers=1,
                           on_state=lambda a, s: states.__setitem__(a, s))  # the real, 1 s backoff
    sender.submit(alert(30), rx.url)
    sender.submit(alert(31), rx.url)
    deadline = time.monotonic() + 5
    while not rx.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    t0 = time.monotonic()
    sender.close()
    assert time.monotonic() - t0 < 1.0
    assert states[30]["state"] == "failed" and "closed" in states[30]["last_error"]
    assert states[31] == {"state": "failed", "attempts": 0, "last_error": "not sent: the webhook sender closed"}
    assert sender.submit(alert(32), rx.url)["state"] == "failed"
    assert len(rx.requests) == 1


def test_signature_helper_matches_the_contract() -> None:
    assert sign(b"k", 5, b"{}") == "sha256=" + hmac.new(b"k", b"5.{}", hashlib.sha256).hexdigest()


def test_https_goes_through_tls(receivers, harness) -> None:
    """An https:// URL speaks TLS (here to a plain-HTTP receiver: a TLS error, retried like any
    connection error, and never sent as plain text)."""
    rx = receivers()
    h = harness(attempts=2)
    h.sender.submit(alert(40), rx.url.replace("http://", "https://"))
    final = h.final(40)
    assert final["state"] == "failed" and final["attempts"] == 2 and final["last_error"].startswith("TLS")
    assert rx.requests == []
