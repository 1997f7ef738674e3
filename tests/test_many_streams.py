"""Several live streams at once, one actor each, sharing two cores fairly; totals visible to the user."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from bench.ts_sender import start_sender
from conftest import free_port, media, normalise

pytestmark = pytest.mark.slow

N = 3
SEND_S = 30.0


def test_three_live_streams_each_get_an_actor_and_a_fair_share(service):
    import ray

    from actors.stream_actor import actor_name

    ports = [free_port(socket.SOCK_DGRAM) for _ in range(N)]
    stop, ids, senders = threading.Event(), [], []
    for i, port in enumerate(ports):
        # A live UDP stream listens from the moment it is added; it fails if nothing arrives within
        # open_timeout_s, so each sender starts as soon as its stream listens.
        ids.append(service.add(f"udp://127.0.0.1:{port}", name=f"many{i}"))
        service.wait(ids[-1], states=("connecting", "ingesting"), timeout=60)
        senders.append(start_sender(media("manifesto_audiobook_titlecard.mp4"),
                                    f"udp://127.0.0.1:{port}?pkt_size=1316", 1, stop))
    # One actor per stream, each in its own worker process.
    pids = {ray.get(ray.get_actor(actor_name(sid), namespace=service.settings.namespace)
                    .__ray_call__.remote(lambda self: os.getpid())) for sid in ids}
    assert len(pids) == N
    totals = []
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < SEND_S:
            listing = service.get("/v1/streams").json()
            ours = [st for st in listing["streams"] if st["id"] in ids]
            # (the session's service holds other tests' streams too: count ours)
            totals.append(dict(listing["total"], ours_ingesting=sum(st["state"] == "ingesting" for st in ours)))
            time.sleep(1.0)
    finally:
        stop.set()
        for _, thread in senders:
            thread.join(timeout=5)
    statuses = {sid: service.get(f"/v1/streams/{sid}").json() for sid in ids}
    # The user sees the whole service: all N ingesting at once, their summed RTF and the worst lag.
    assert max(t["ours_ingesting"] for t in totals) == N and min(t["ingesting"] for t in totals[-5:]) >= N, [service.get(f"/v1/streams/{sid}").json() for sid in ids]
    assert all(t["rtf"] > 0 for t in totals[-5:]) and totals[-1]["max_lag_s"] >= 0
    # Fair: every stream got about the same work done in the same time, none starved.
    committed = [st["committed_seconds"] for st in statuses.values()]
    print(f"\ncommitted media per stream after {SEND_S:g} s of sending: {committed}; "
          f"lag {[round(st['lag_s'], 1) for st in statuses.values()]}; "
          f"levels {[st['degraded'] for st in statuses.values()]}")
    assert min(committed) >= 0.6 * max(committed) and min(committed) > 5, statuses
    # Overloaded or not, nothing sent is lost: once the senders stop, each stream catches up on
    # what it received (a live socket keeps what the worker has not taken yet) and has the speech.
    deadline = time.monotonic() + 150
    for sid in ids:
        while True:
            st = service.get(f"/v1/streams/{sid}").json()
            if st["media_seconds"] >= SEND_S - 2 and st["committed_seconds"] >= st["media_seconds"] - 8:
                break
            assert time.monotonic() < deadline, st
            time.sleep(1.0)
    for sid in ids:
        segs = service.get(f"/v1/streams/{sid}/segments").json()["segments"]
        assert "haunting europe" in normalise(" ".join(s["text"] for s in segs)), (sid, segs[-3:])
    for sid in ids:
        assert service.delete(f"/v1/streams/{sid}").json()["state"] == "stopped"
