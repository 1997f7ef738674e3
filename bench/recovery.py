"""Time to recover from each fault, on the real service (Ray + Serve + stream actors, Whisper tiny.en).

- sender stall: a live UDP sender pauses for less than ``read_timeout_s``, then goes on;
- sender outage: it dies, and a new sender comes back after longer than ``read_timeout_s`` (the
  stream reconnects with backoff and records a gap);
- stream actor killed: Ray restarts it, and it resumes from its checkpoint;
- Serve app restarted: the API is deleted and deployed again over running streams.

Recovery = from the moment the fault ends (sender back, kill, redeploy call) until the stream is
ingesting new media again (media time advancing past where it was), or the API answers a question.
"""

from __future__ import annotations

import socket
import threading
import time

from .common import MEDIA, emit, free_port, http_client, manta_server, parse_args, section, table, wait_state
from .ts_sender import start_sender

KEY = "recovery"
CLIP = MEDIA / "manifesto_audiobook_titlecard.mp4"


def _advancing(http, sid: str, past: float, timeout: float = 120.0) -> float:
    """Wall time at which the stream's decoded media first exceeds ``past`` while ingesting."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = http.get(f"/v1/streams/{sid}").json()
        if st.get("state") == "ingesting" and st.get("media_seconds", 0) > past:
            return time.time()
        time.sleep(0.05)
    raise RuntimeError(f"{sid} did not recover: {st}")


def sender_fault(http, pause_s: float) -> dict:
    port = free_port(socket.SOCK_DGRAM)
    sid = f"pause{int(pause_s)}"
    http.post("/v1/streams", json={"source": f"udp://127.0.0.1:{port}", "name": sid}).raise_for_status()
    wait_state(http, sid, ("connecting",), timeout=60)
    stop = threading.Event()
    _, thread = start_sender(CLIP, f"udp://127.0.0.1:{port}?pkt_size=1316", 1, stop)
    wait_state(http, sid, ("ingesting",), timeout=60)
    time.sleep(15.0)
    stop.set()
    thread.join(5)
    before = http.get(f"/v1/streams/{sid}").json()
    time.sleep(pause_s)
    again = threading.Event()
    back = time.time()
    _, thread = start_sender(CLIP, f"udp://127.0.0.1:{port}?pkt_size=1316", 1, again)
    try:
        ok = _advancing(http, sid, before["media_seconds"] + 0.5)
    finally:
        again.set()
        thread.join(5)
    st = http.get(f"/v1/streams/{sid}").json()
    http.delete(f"/v1/streams/{sid}")
    return dict(recovery=ok - back, reconnects=st["reconnects"], gaps=len(st["gaps"]),
                note=f"media {before['media_seconds']:.1f} → {st['media_seconds']:.1f} s")


def actor_kill(http, namespace: str) -> dict:
    import ray

    from actors.stream_actor import actor_name

    r = http.post("/v1/streams", json={"source": str(CLIP), "name": "killed", "pace": "realtime"})
    r.raise_for_status()
    wait_state(http, "killed", ("ingesting",), timeout=60)
    while http.get("/v1/streams/killed").json().get("segments", 0) < 3:
        time.sleep(0.1)
    before = http.get("/v1/streams/killed").json()
    kill = time.time()
    ray.kill(ray.get_actor(actor_name("killed"), namespace=namespace), no_restart=False)
    # Two moments: the new actor's first "ingesting" (after "lost" while Ray restarts it, then
    # "restoring": its source is open again at the checkpoint), and its first media past the
    # checkpoint (the recovery figure). The old actor may answer once more right after the kill,
    # so "ingesting" counts only after a status that was not.
    down, back, ok = False, None, None
    past = before["committed_seconds"] + 0.5
    while ok is None and time.time() - kill < 120:
        st = http.get("/v1/streams/killed").json()
        now, state = time.time(), st.get("state")
        down = down or state != "ingesting"
        if down and state == "ingesting" and back is None:
            back = now
        if down and state == "ingesting" and st.get("media_seconds", 0) > past:
            ok = now
        time.sleep(0.05)
    if ok is None:
        raise RuntimeError(f"killed did not recover: {st}")
    st = http.get("/v1/streams/killed").json()
    http.delete("/v1/streams/killed")
    return dict(recovery=ok - kill, reconnects=0, gaps=0,
                note=f"state `ingesting` again after {(back or float('nan')) - kill:.2f} s; resumed from its "
                     f"checkpoint at {before['committed_seconds']:.1f} s; "
                     + ("restarted after a crash" if "restarted after a crash" in st["notes"] else str(st["notes"])))


def app_restart(http, settings) -> dict:
    from ray import serve

    from actors import runtime

    serve.delete(runtime.APP_NAME)
    t0 = time.time()
    runtime.deploy(settings)
    healthy = answered = None
    while answered is None and time.time() - t0 < 180:
        try:
            if healthy is None and http.get("/healthz", timeout=5).status_code == 200:
                healthy = time.time()
            if healthy is not None and http.post("/v1/query", json={"question": "spectre haunting Europe",
                                                                     "generate": False}).status_code == 200:
                answered = time.time()
        except Exception:  # noqa: BLE001 - not listening yet
            pass
        time.sleep(0.1)
    return dict(recovery=(answered or float("nan")) - t0, reconnects=0, gaps=0,
                note=f"healthy after {(healthy or float('nan')) - t0:.1f} s, first answer after "
                     f"{(answered or float('nan')) - t0:.1f} s (includes deploy)")


def main() -> None:
    args = parse_args(__doc__)
    rows = []
    with manta_server(asr_model="tiny.en", read_timeout_s=3.0, reconnect_initial_s=0.5) as (settings, url), \
            http_client(url) as http:
        for name, run in [("sender stall 1.5 s (< read timeout 3 s)", lambda: sender_fault(http, 1.5)),
                          ("sender dies, back after 8 s", lambda: sender_fault(http, 8.0)),
                          ("stream actor killed", lambda: actor_kill(http, settings.namespace)),
                          ("Serve app deleted and redeployed", lambda: app_restart(http, settings))]:
            res = run()
            print(name, res, flush=True)
            rows.append([name, f"**{res['recovery']:.2f} s**", res["reconnects"], res["gaps"], res["note"]])
    body = [
        f"Source for the sender faults: `{CLIP.name}` as MPEG-TS over UDP on 127.0.0.1 (PyAV, codec copy, "
        "real-time pace; the sender that comes back starts the clip again, so its timestamps jump back). "
        "Manta in this process with Whisper `tiny.en`, `read_timeout_s=3`, `reconnect_initial_s=0.5`; "
        "the actor kill uses the same clip read at real-time pace. One run each.",
        "",
        *table(["fault", "recovery", "reconnects", "gaps recorded", "notes"], rows),
        "",
        "Recovery is measured from the end of the fault (sender back, `ray.kill`, redeploy call) to the "
        "stream decoding new media again, polled every 50 ms (for the app: to the first answered query).",
    ]
    emit(KEY, section("Recovery from faults (bench/recovery.py)", body), args.write)


if __name__ == "__main__":
    main()
