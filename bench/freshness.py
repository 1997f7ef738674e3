"""Freshness on a live source: how long after a moment of speech is sent it becomes answerable.

Manta runs for real in this process (Ray + Serve + a stream actor). A sender thread replays a real
speech recording as MPEG-TS over UDP on loopback at real-time pace, logging when each media second
left. Freshness of a micro segment = its ``ingested_wall`` (when it became searchable) minus the wall
time at which the audio up to its ``end`` was sent. Goal: p95 <= 5 s.
"""

from __future__ import annotations

import re
import socket
import threading
import time

from .common import MEDIA, emit, free_port, http_client, manta_server, parse_args, pct, section, \
    table, wait_state
from .ts_sender import start_sender

KEY = "freshness"
CLIP = MEDIA / "manifesto_audiobook_titlecard.mp4"
CLIP_S = 88.08
WARM_S = 15.0  # segments ending earlier include the stream actor's model loading
POLL_S = 0.25
QUIET_S = 20.0  # after the sender stops: give up once nothing changed for this long
CAPTION_DANISH_END = 84.87  # autocaptions.vtt: the word "danish" ends here (file time)


def run(loops: int, overrides: dict) -> dict:
    udp_port = free_port(socket.SOCK_DGRAM)
    stop = threading.Event()
    with manta_server(**overrides) as (settings, url), http_client(url) as http:
        t_post = time.time()
        r = http.post("/v1/streams", json={"source": f"udp://127.0.0.1:{udp_port}", "name": "live"})
        r.raise_for_status()
        status = wait_state(http, "live", ("connecting", "ingesting"), timeout=60)
        t_listen = time.time()
        time.sleep(1.0)
        log, sender = start_sender(CLIP, f"udp://127.0.0.1:{udp_port}?pkt_size=1316", loops, stop)
        seen: dict[int, dict] = {}
        progress, last_change, finishing = None, time.time(), False
        try:
            while not finishing:  # one more poll after the end condition, for the last segments
                segs = http.get("/v1/streams/live/segments", params={"limit": 10000}).json()["segments"]
                status = http.get("/v1/streams/live").json()
                now = time.time()
                for seg in segs:
                    if seg["seq"] not in seen:
                        seen[seg["seq"]] = dict(seg, seen_wall=now)
                if log.error:
                    raise RuntimeError(f"sender failed: {log.error}")
                if (len(seen), status.get("committed_seconds")) != progress:
                    progress, last_change = (len(seen), status.get("committed_seconds")), now
                if log.done.is_set():
                    caught_up = status.get("committed_seconds", 0) >= status.get("media_seconds", 0) - 0.5
                    quiet = now - max(last_change, log.walls[-1] if log.walls else 0) > QUIET_S
                    finishing = caught_up or quiet
                time.sleep(POLL_S)
        finally:
            stop.set()
            sender.join(timeout=5)
    return dict(log=log, segments=[seen[k] for k in sorted(seen)], status=status, settings=settings,
                t_post=t_post, t_listen=t_listen)


def measure(res: dict) -> dict:
    log = res["log"]
    rows = []
    for seg in res["segments"]:
        sent = log.sent_wall(seg["end"])
        if sent is None:
            continue  # not possible unless timestamps are misaligned; counted below
        rows.append(dict(end=seg["end"], fresh=seg["ingested_wall"] - sent, seen=seg["seen_wall"] - sent,
                         text=seg["text"]))
    danish = [w["end"] for s in res["segments"] for w in s["words"]
              if re.sub(r"\W", "", w["text"].lower()) == "danish"]
    return dict(rows=rows, danish=danish, unmatched=len(res["segments"]) - len(rows))


def report(res: dict, m: dict, loops: int) -> list[str]:
    log, st, s = res["log"], res["status"], res["settings"]
    rows = m["rows"]
    groups = [("all segments", rows), (f"segments ending after {WARM_S:g} s (models loaded)",
                                       [r for r in rows if r["end"] >= WARM_S])]
    stats = []
    for name, g in groups:
        f, seen = [r["fresh"] for r in g], [r["seen"] for r in g]
        stats.append([name, len(g), f"{pct(f, 50):.2f} s", f"**{pct(f, 95):.2f} s**",
                      f"{max(f):.2f} s" if f else "–", f"{pct(seen, 50):.2f} s", f"{pct(seen, 95):.2f} s"])
    p95 = pct([r["fresh"] for r in rows], 95)
    worst = sorted(rows, key=lambda r: -r["fresh"])[:3]
    media_sent = log.ends[-1] if log.ends else 0.0
    expected_danish = [CAPTION_DANISH_END + i * CLIP_S - (log.base or 0.0) for i in range(loops)]
    return [
        f"Source: `{CLIP.name}` ({CLIP_S:g} s of narrated speech, H.264 + AAC) sent {loops}× back to "
        f"back ({media_sent:.1f} s of media) as MPEG-TS over UDP to 127.0.0.1 at real-time pace by "
        f"a PyAV sender thread (codec copy, packets paced on dts), started 1 s after the stream "
        f"reported `connecting` ({res['t_listen'] - res['t_post']:.1f} s after "
        f"`POST /v1/streams`). Manta in this process with {describe(res['overrides'])} (Whisper "
        f"`{s.asr_model}`, live profile: max buffer {s.asr_live_max_buffer_s:g} s, min piece "
        f"{s.asr_live_min_piece_s:g} s), polled with `GET /v1/streams/live/segments` every "
        f"{POLL_S:g} s.",
        "",
        *table(["segments", "count", "freshness p50", "freshness p95", "max",
                "seen by poller p50", "seen by poller p95"], stats),
        "",
        "Freshness = `ingested_wall` (segment became searchable in the stream actor) − wall time "
        "the sender had sent the audio up to the segment's `end`. \"Seen by poller\" uses the "
        "time the poll first returned the segment instead (adds up to one poll interval and the "
        "HTTP round trip). Alignment: Manta's media time 0 is the earliest pts the sender sent; "
        f"check: Whisper put the end of \"Danish\" at "
        f"{', '.join(f'{d:.2f}' for d in m['danish']) or 'n/a'} s, the captions at "
        f"{', '.join(f'{d:.2f}' for d in expected_danish)} s (Whisper word times are ±0.3 s).",
        "",
        f"Stream at the end: state `{st.get('state')}`, {st.get('segments')} segments, "
        f"{st.get('words')} words, media {st.get('media_seconds', 0):.1f} s, committed "
        f"{st.get('committed_seconds', 0):.1f} s, pipeline RTF {st.get('rtf', 0):.2f}, "
        f"{len(st.get('gaps') or [])} gaps; {m['unmatched']} segments could not be matched to "
        f"the send log. Slowest: " + "; ".join(f"{r['fresh']:.1f} s at {r['end']:.1f} s "
                                               f"(\"{r['text'][:40]}\")" for r in worst) + ".",
        "",
        f"- Goal p95 ≤ 5 s: {'met' if p95 <= 5 else 'MISSED'} (p95 {p95:.2f} s over {len(rows)} "
        "segments).",
    ]


def describe(overrides: dict) -> str:
    if not overrides:
        return "default settings"
    return "default settings except " + ", ".join(f"`{k}={v}`" for k, v in overrides.items())


def main() -> None:
    args = parse_args(__doc__, [
        ("--loops", dict(type=int, default=2, help="times the clip is sent back to back")),
        ("--set", dict(action="append", default=[], metavar="FIELD=VALUE",
                       help="a Settings override, e.g. asr_model=tiny.en (repeatable)"))])
    overrides = dict(kv.split("=", 1) for kv in args.set)
    res = run(args.loops, overrides)
    res["overrides"] = overrides
    m = measure(res)
    for r in m["rows"]:
        print(f"  end {r['end']:6.1f} s  fresh {r['fresh']:5.2f} s  seen {r['seen']:5.2f} s  "
              f"{r['text'][:60]}")
    if not m["rows"]:
        raise SystemExit(f"no segments arrived; stream status: {res['status']}")
    key = KEY + ("" if not overrides else "[" + ",".join(args.set) + "]")
    title = "Freshness on a live UDP source" + (f" ({', '.join(args.set)})" if overrides else "")
    emit(key, section(title, report(res, m, args.loops)), args.write)


if __name__ == "__main__":
    main()
