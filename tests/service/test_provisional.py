"""Live freshness as a monitoring user meets it (issue 18): the manifesto is sent live over UDP and
"spectre haunting Europe" is asked every 0.5 s. Real Ray, Serve, PyAV, Whisper (base final, tiny.en
provisional), MiniLM, FAISS; the sender is this process, on loopback."""

from __future__ import annotations

import threading
import time

import pytest

from tests.support.helpers import free_port, media, normalise

pytestmark = pytest.mark.slow
MANIFESTO = "manifesto_audiobook_titlecard.mp4"
SAID_AT = (19.0, 23.0)  # "preamble a spectre is haunting europe" in the captions


def test_what_was_just_said_is_answerable_at_once_then_final_and_never_twice(service):
    from streaming.tools.replay import ReplayLog, replay

    port = free_port(kind=2)
    sid = service.add(f"udp://127.0.0.1:{port}", name="provisional-live")
    service.wait(sid, states=("connecting", "waiting"), timeout=90)
    time.sleep(2.0)
    stop, log = threading.Event(), ReplayLog()
    sender = threading.Thread(target=replay, daemon=True, args=(media(MANIFESTO), f"udp://127.0.0.1:{port}"),
                              kwargs=dict(stop=stop, log=log, max_seconds=40))
    sender.start()
    first = {}  # "provisional" / "final": (wall, evidence) when each first answered the phrase
    twice = []
    try:
        deadline = time.monotonic() + 120
        while "final" not in first and time.monotonic() < deadline:
            answer = service.ask("spectre haunting Europe", streams=[sid], k=5, generate=False)
            now = time.time()
            hits = [e for e in answer["evidence"] if e["stream"] == sid and "haunting europe" in normalise(e["text"])
                    and e["start"] <= SAID_AT[1] + 1 and e["end"] >= SAID_AT[0] - 1]
            kinds = {"provisional" if e["provisional"] else "final" for e in hits}
            if len(kinds) == 2:
                twice.append(hits)
            for kind in kinds:
                first.setdefault(kind, (now, next(e for e in hits if e["provisional"] == (kind == "provisional"))))
            time.sleep(0.5)
    finally:
        stop.set()
        sender.join(10)
    sent = log.wall_at(SAID_AT[1])
    assert sent is not None, "the sender never reached the phrase"
    report = {kind: round(wall - sent, 2) for kind, (wall, _) in first.items()}
    print(f"\n'spectre haunting Europe' first answerable after the words were sent: {report}")
    assert "provisional" in first, f"never answered from provisional text: {report}"
    assert "final" in first, f"the final transcript never answered it: {report}"
    assert first["provisional"][0] < first["final"][0], report
    assert not twice, f"answered from provisional and final text at once: {twice[:1]}"
    status = service.get(f"/v1/streams/{sid}").json()
    assert status["provisional_stats"]["passes"] > 0 and status["provisional_stats"]["errors"] == 0, status
