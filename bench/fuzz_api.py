"""Property-based fuzz of the whole HTTP API against the real service, while two streams ingest.

Manta runs for real in this process (Ray + Serve on a loopback port, a private data_dir). Two streams
ingest throughout: a recorded file replayed at real-time pace, and a live MPEG-TS stream over UDP
(a looping sender, so it keeps growing however long the fuzz takes). Schemathesis reads the OpenAPI
schema FastAPI serves and generates requests for every operation, valid ones (positive) and ones
that break the schema (negative); for the operations with a stream id in the path, some cases aim at
the two real streams so the actors' own code sees odd arguments too. Checks: no response is a 5xx,
no request fails to get a response, the two streams keep their actors (same actor, no restart, never
failed or lost), the segments they had before the fuzz are identical afterwards and they grew.

The fuzz never stops or removes the two streams: a DELETE whose id names one of them is not sent.
A stream the fuzz manages to add (a generated source that happens to be valid) is removed at once,
so generated sources cannot pile up actors; how many were accepted is reported.

tests/service/test_fuzz.py runs a short version of the same (``fuzz`` and ``Watched`` below).
"""

from __future__ import annotations

import collections
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import unquote

from .common import MEDIA, emit, free_port, http_client, manta_server, parse_args, section, table, wait_state

KEY = "fuzz-api"
CLIP = MEDIA / "manifesto_audiobook_titlecard.mp4"  # narrated speech, 88 s
LIVE_ID, FILE_ID = "fuzz-live", "fuzz-file"
# Never-ending event streams: a fuzzed GET would hold its connection open for good (keepalives reset
# every read timeout). tests/service/test_alerts.py checks this route's parameters instead.
ENDLESS_PATHS = frozenset({"/v1/alerts/stream"})
REQUEST_TIMEOUT_S = 150.0  # above the API's own request_timeout_s (120 s): its 504 is what we want to see
BODY_CHARS = 500  # of a 5xx body, in the report


@dataclass
class FuzzReport:
    requests: int = 0
    seconds: float = 0.0
    statuses: collections.Counter = field(default_factory=collections.Counter)
    by_operation: dict[str, collections.Counter] = field(default_factory=dict)
    server_errors: list[dict] = field(default_factory=list)  # every response >= 500
    transport_errors: list[dict] = field(default_factory=list)  # no response at all
    schema_mismatches: collections.Counter = field(default_factory=collections.Counter)  # per operation
    accepted_streams: list[str] = field(default_factory=list)  # POST /v1/streams that got a 201
    skipped_deletes: int = 0  # generated DELETEs of a protected stream, not sent
    generation_notes: list[str] = field(default_factory=list)  # units schemathesis could not fill

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _names_protected(case, protect: set[str]) -> bool:
    """Whether any path parameter could resolve to a protected stream, however it is spelled."""
    return any(p in unquote(str(v)).lower() for v in (case.path_parameters or {}).values() for p in protect)


class _Caller:
    """Sends one case and records what came back; never raises (Hypothesis must keep generating)."""

    def __init__(self, base_url: str, protect: set[str], report: FuzzReport):
        import requests

        self.base_url, self.protect, self.report = base_url, protect, report
        self.session = requests.Session()
        self.session.trust_env = False  # the environment sets proxies: loopback must not use them

    def __call__(self, case) -> None:
        import requests

        op = case.operation
        if case.method.upper() == "DELETE" and _names_protected(case, self.protect):
            self.report.skipped_deletes += 1  # would stop or remove a watched stream
            return
        self.report.requests += 1
        counts = self.report.by_operation.setdefault(op.label, collections.Counter())
        try:
            response = case.call(base_url=self.base_url, session=self.session, timeout=REQUEST_TIMEOUT_S)
        except requests.RequestException as exc:
            self.report.transport_errors.append({"request": f"{case.method} {case.formatted_path}",
                                                 "error": f"{type(exc).__name__}: {exc}"[:BODY_CHARS]})
            counts["no response"] += 1
            return
        status = response.status_code
        self.report.statuses[status] += 1
        counts[status] += 1
        if status >= 500:
            self.report.server_errors.append({
                "request": f"{case.method} {response.request.url}", "status": status,
                "body": (response.request.body or b"")[:BODY_CHARS] if response.request.body else None,
                "response": response.text[:BODY_CHARS]})
        if op.label == "POST /v1/streams" and status == 201:
            sid = response.json()["id"]
            self.report.accepted_streams.append(sid)
            # At once: a generated source must not keep an actor (and its CPU share) for the run.
            self.session.delete(f"{self.base_url}/v1/streams/{sid}", params={"remove": "true"},
                                timeout=REQUEST_TIMEOUT_S)
        try:  # reported, not failed on: FastAPI's schema says little about the error bodies
            if not op.is_valid_response(response):
                self.report.schema_mismatches[op.label] += 1
        except Exception:  # noqa: BLE001 - a checker problem is not the service's
            self.report.schema_mismatches[op.label + " (not checkable)"] += 1


def _units(schema, protect: set[str]):
    """(label, strategy) per operation and generation mode, plus cases aimed at the real streams."""
    import hypothesis.strategies as st
    from schemathesis import GenerationMode

    for result in schema.get_all_operations():
        op = result.ok()
        if op.path in ENDLESS_PATHS:
            continue
        has_id = "{stream_id}" in op.path
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = op.as_strategy(generation_mode=mode)
            if op.method.upper() == "DELETE":  # drawn again rather than skipped, where possible
                strategy = strategy.filter(lambda c: not _names_protected(c, protect))
            yield f"{op.label} [{mode.value}]", strategy
        if has_id and op.method.upper() != "DELETE":
            real = st.one_of(*[op.as_strategy(path_parameters={"stream_id": sid}) for sid in sorted(protect)])
            yield f"{op.label} [real stream]", real


def _run_unit(strategy, n: int, seed: int, send) -> int:
    """Up to ``n`` cases from ``strategy``; returns how many were sent (fewer: the space ran out)."""
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import seed as with_seed

    sent = 0

    @with_seed(seed)
    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet)
    @given(case=strategy)
    def one(case):
        nonlocal sent
        if sent < n:
            sent += 1
            send(case)

    one()
    return sent


def fuzz(base_url: str, total: int, protect: set[str], seed: int = 0, budget_s: float | None = None,
         progress=None) -> FuzzReport:
    """About ``total`` requests spread evenly over every operation and mode; a unit whose cases run
    out hands its share to the others. Stops early after ``budget_s``."""
    import schemathesis

    report = FuzzReport()
    with http_client(base_url) as http:  # not schemathesis's own fetch: it would honour the proxies
        schema = schemathesis.openapi.from_dict(http.get("/openapi.json").raise_for_status().json())
    send = _Caller(base_url, {p.lower() for p in protect}, report)
    active = list(_units(schema, protect))
    t0, rnd = time.monotonic(), 0
    while active and report.requests < total and (budget_s is None or time.monotonic() - t0 < budget_s):
        share = max(1, (total - report.requests) // len(active))
        still = []
        for label, strategy in active:
            if report.requests >= total or (budget_s is not None and time.monotonic() - t0 >= budget_s):
                break
            try:
                done = _run_unit(strategy, min(share, total - report.requests), seed + rnd, send)
            except Exception as exc:  # noqa: BLE001 - e.g. a negative mode with nothing to break
                report.generation_notes.append(f"{label} ({type(exc).__name__})")
                continue
            if done >= share:
                still.append((label, strategy))
            if progress:
                report.seconds = time.monotonic() - t0
                progress(report)
        active, rnd = still, rnd + 1
    report.seconds = time.monotonic() - t0
    send.session.close()
    return report


# -- the two streams that must not notice ---------------------------------------------------------
def _identity(actor) -> tuple:
    import os

    import ray

    return os.getpid(), ray.get_runtime_context().was_current_actor_reconstructed


def _key(seg: dict) -> tuple:
    return seg["seq"], seg["start"], seg["end"], seg["text"]


class Watched:
    """Streams whose actors and segments the fuzz must leave alone: identity and segments before,
    every state seen while it runs (polled each second), and the same afterwards."""

    def __init__(self, http, ids: list[str], namespace: str):
        self.http, self.ids, self.namespace = http, ids, namespace
        self.before: dict[str, list[tuple]] = {}
        self.actors: dict[str, tuple] = {}
        self.states: dict[str, collections.Counter] = {sid: collections.Counter() for sid in ids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True, name="fuzz-watch")

    def actor(self, sid: str) -> tuple:
        """(actor id, worker pid, restarted by Ray) of the stream's actor; a restart changes the pid.
        Asked of the actor itself: Ray's state API needs the dashboard, which Manta leaves off."""
        import ray

        from actors.stream_actor import actor_name

        try:
            handle = ray.get_actor(actor_name(sid), namespace=self.namespace)
            pid, restarted = ray.get(handle.__ray_call__.remote(_identity), timeout=60)
        except Exception as exc:  # noqa: BLE001 - gone or not answering: a finding, reported
            return None, None, f"{type(exc).__name__}"
        return handle._actor_id.hex(), pid, restarted

    def segments(self, sid: str) -> list[tuple]:
        r = self.http.get(f"/v1/streams/{sid}/segments", params={"limit": 10000})
        r.raise_for_status()
        return [_key(s) for s in r.json()["segments"]]

    def start(self, min_segments: int = 2, timeout: float = 240.0) -> None:
        """Once each stream has committed ``min_segments``: what must survive the fuzz."""
        deadline = time.monotonic() + timeout
        for sid in self.ids:
            while len(segs := self.segments(sid)) < min_segments:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{sid} committed {len(segs)} segments in {timeout:g} s: "
                                       f"{self.http.get(f'/v1/streams/{sid}').json()}")
                time.sleep(1.0)
            self.before[sid] = segs
            self.actors[sid] = self.actor(sid)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(1.0):
            for sid in self.ids:
                try:
                    self.states[sid][self.http.get(f"/v1/streams/{sid}").json().get("state")] += 1
                except Exception as exc:  # noqa: BLE001 - counted: a status that did not come is a finding
                    self.states[sid][f"no status: {type(exc).__name__}"] += 1

    def verdict(self) -> dict[str, dict]:
        self._stop.set()
        self._thread.join(timeout=10)
        out = {}
        for sid in self.ids:
            after, actor = self.segments(sid), self.actor(sid)
            before = self.before[sid]
            kept = after[:len(before)] == before
            changed = [b for b, a in zip(before, after) if a != b][:3]
            out[sid] = dict(before=len(before), after=len(after), kept=kept, changed=changed,
                            grew=len(after) > len(before), actor_before=self.actors[sid], actor_after=actor,
                            same_actor=actor == self.actors[sid] and actor[0] is not None and not actor[2],
                            states=dict(self.states[sid]),
                            never_failed=not any(s in ("failed", "lost") or str(s).startswith("no status")
                                                 for s in self.states[sid]))
            out[sid]["ok"] = all(out[sid][k] for k in ("kept", "grew", "same_actor", "never_failed"))
        return out


def start_streams(http, loops: int, stop: threading.Event) -> tuple[list[str], list]:
    """The two watched streams: a live UDP one fed by a looping sender, and a file at real-time pace."""
    from .ts_sender import start_sender

    port = free_port(socket.SOCK_DGRAM)
    r = http.post("/v1/streams", json={"source": f"udp://127.0.0.1:{port}", "name": LIVE_ID})
    assert r.status_code == 201, r.text
    # A live UDP stream fails if nothing arrives within open_timeout_s: send once it listens.
    wait_state(http, LIVE_ID, ("connecting", "ingesting"), timeout=120)
    sender = start_sender(CLIP, f"udp://127.0.0.1:{port}?pkt_size=1316", loops, stop)
    r = http.post("/v1/streams", json={"source": str(CLIP), "name": FILE_ID, "pace": "realtime"})
    assert r.status_code == 201, r.text
    return [LIVE_ID, FILE_ID], [sender]


# -- the benchmark ----------------------------------------------------------------------------------
def main() -> None:
    args = parse_args(__doc__, [("--requests", dict(type=int, default=10_000, help="requests in all")),
                                ("--seed", dict(type=int, default=0))])
    light = dict(asr_model="tiny.en", answer_model="off")
    stop = threading.Event()
    with manta_server(**light) as (settings, url), http_client(url) as http:
        # A looping sender that outlasts the fuzz (about 10 requests/s on two shared cores).
        ids, senders = start_streams(http, loops=max(2, args.requests // 500), stop=stop)
        try:
            watched = Watched(http, ids, settings.namespace)
            watched.start()
            last = [0.0]

            def progress(rep: FuzzReport) -> None:
                if time.monotonic() - last[0] > 15:
                    last[0] = time.monotonic()
                    print(f"{rep.requests} requests, {rep.rate:.1f}/s, {dict(rep.statuses)}", flush=True)

            report = fuzz(url, args.requests, set(ids), seed=args.seed, progress=progress)
            verdict = watched.verdict()
        finally:
            stop.set()
            for _, thread in senders:
                thread.join(timeout=5)
    emit(KEY, section("HTTP API fuzz (bench/fuzz_api.py)", body(report, verdict, light)), args.write)
    if report.server_errors or report.transport_errors or not all(v["ok"] for v in verdict.values()):
        raise SystemExit("the fuzz found a problem: see above")


def body(report: FuzzReport, verdict: dict, light: dict) -> list[str]:
    hist = ", ".join(f"{code}: {n}" for code, n in sorted(report.statuses.items()))
    ops = [[f"`{label}`", sum(c.values()), ", ".join(f"{k}: {v}" for k, v in sorted(c.items(), key=str)),
            report.schema_mismatches.get(label, 0)] for label, c in sorted(report.by_operation.items())]
    streams = [[f"`{sid}`", v["before"], v["after"], "yes" if v["kept"] else f"**no** {v['changed']}",
                "yes" if v["same_actor"] else f"**no** {v['actor_before']} -> {v['actor_after']}",
                ", ".join(f"{k}: {n}" for k, n in v["states"].items())] for sid, v in verdict.items()]
    errors = [f"- `{e['request']}` -> {e['status']}: body {e['body']!r}, response {e['response']!r}"
              for e in report.server_errors] + [f"- `{e['request']}`: {e['error']}" for e in report.transport_errors]
    return [
        f"Manta for real on 127.0.0.1 ({', '.join(f'{k}={v}' for k, v in light.items())}, other settings "
        f"default, no API token: loopback). Schemathesis {_version('schemathesis')} generated the requests "
        "from `/openapi.json`, valid and schema-breaking ones for every operation, and for the routes with a "
        f"stream id some aimed at the two watched streams; one client, one request at a time. Meanwhile "
        f"`{LIVE_ID}` (live MPEG-TS over UDP, `{CLIP.name}` looped at real-time pace) and `{FILE_ID}` (the "
        "same file, `pace: realtime`) ingested.",
        "",
        f"- Requests: **{report.requests}** in {report.seconds:.0f} s (**{report.rate:.1f} requests/s**)",
        f"- Status codes: {hist}",
        f"- Responses >= 500: **{len(report.server_errors)}**; requests with no response: "
        f"**{len(report.transport_errors)}**",
        f"- Streams the fuzz added (a generated source that was valid; each removed at once): "
        f"{len(report.accepted_streams)}; generated DELETEs naming a watched stream, not sent: "
        f"{report.skipped_deletes}",
        f"- Responses not matching the schema (reported, not a failure): "
        f"{sum(report.schema_mismatches.values())}",
        *([f"- Nothing to generate (no parameter or body to break): {', '.join(report.generation_notes)}"]
          if report.generation_notes else []),
        "", *errors, *([""] if errors else []),
        *table(["operation", "requests", "status codes", "schema mismatches"], ops),
        "",
        "Watched streams (segments compared by seq, start, end, text; states polled each second):",
        "",
        *table(["stream", "segments before", "after", "before kept", "same actor and pid, no restart",
                "states seen"], streams),
    ]


def _version(pkg: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(pkg)


if __name__ == "__main__":
    main()
