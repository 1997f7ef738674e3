"""Freshness on a live source: how long after a moment of speech is sent it becomes answerable.

Manta runs for real in this process (Ray + Serve + a stream actor). A sender thread replays a real
speech recording as MPEG-TS over UDP on loopback at real-time pace, logging when each media second
left. Freshness = when a word became searchable (its final segment's ``ingested_wall``, or the
``wall`` of the first provisional text that held it) minus the wall time at which the audio up to
its end was sent, for 1 or ``--streams`` N live streams at once. Goal (issue 18): provisional p95
<= 3 s for one stream, <= 5 s for three, on 2 cores; final no worse than before.
"""

from __future__ import annotations

import re
import threading
import time

from .common import MEDIA, add_udp_streams, emit, http_client, manta_server, parse_args, pct, section, table
from .ts_sender import start_sender

KEY = "freshness"
CLIP = MEDIA / "manifesto_audiobook_titlecard.mp4"
CLIP_S = 88.08
WARM_S = 15.0  # segments ending earlier include the stream actor's model loading
POLL_S = 0.25
QUIET_S = 20.0  # after the sender stops: give up once nothing changed for this long
CAPTIONS = MEDIA / "manifesto_audiobook_titlecard.autocaptions.srt"
CAPTION_DANISH_END = 84.87  # autocaptions.vtt: the word "danish" ends here (file time)


def run(loops: int, overrides: dict, n: int = 1) -> dict:
    stop = threading.Event()
    with manta_server(**overrides) as (settings, url), http_client(url) as http:
        t_post = time.time()
        names, ports = add_udp_streams(http, "live", n)
        t_listen = time.time()
        time.sleep(1.0)
        senders = {name: start_sender(CLIP, f"udp://127.0.0.1:{port}?pkt_size=1316", loops, stop)
                   for name, port in zip(names, ports)}
        seen: dict[str, dict[int, dict]] = {name: {} for name in names}
        heard: dict[str, list[dict]] = {name: [] for name in names}  # provisional texts as published
        status: dict[str, dict] = {}
        progress, last_change, finishing = None, time.time(), False
        try:
            while not finishing:  # one more poll after the end condition, for the last segments
                status = {st["id"]: st for st in http.get("/v1/streams").json()["streams"] if st["id"] in seen}
                now = time.time()
                for name in names:
                    p = status.get(name, {}).get("provisional")
                    if p and (not heard[name] or heard[name][-1]["wall"] != p["wall"]):
                        heard[name].append(dict(p, seen_wall=now))
                    segs = http.get(f"/v1/streams/{name}/segments", params={"limit": 10000}).json()["segments"]
                    for seg in segs:
                        if seg["seq"] not in seen[name]:
                            seen[name][seg["seq"]] = dict(seg, seen_wall=now)
                errors = [log.error for log, _ in senders.values() if log.error]
                if errors:
                    raise RuntimeError(f"sender failed: {errors[0]}")
                now_progress = (sum(len(v) for v in seen.values()),
                                tuple(st.get("committed_seconds") for st in status.values()))
                if now_progress != progress:
                    progress, last_change = now_progress, now
                if all(log.done.is_set() for log, _ in senders.values()):
                    caught_up = all(st.get("committed_seconds", 0) >= st.get("media_seconds", 0) - 0.5
                                    for st in status.values())
                    last_sent = max((log.walls[-1] for log, _ in senders.values() if log.walls), default=0)
                    quiet = now - max(last_change, last_sent) > QUIET_S
                    finishing = caught_up or quiet
                time.sleep(POLL_S)
        finally:
            stop.set()
            for _, sender in senders.values():
                sender.join(timeout=5)
    return dict(logs={name: log for name, (log, _) in senders.items()},
                segments={name: [seen[name][k] for k in sorted(seen[name])] for name in names},
                heard=heard, status=status, settings=settings, t_post=t_post, t_listen=t_listen, n=n)


def _norm(text: str) -> str:
    return re.sub(r"[^\w']", "", text.lower())


def measure_stream(log, segments: list[dict], heard: list[dict]) -> dict:
    """Per segment (final, as before) and per word: when it was first searchable, provisional or
    final, after the sender had sent it."""
    rows, words = [], []
    for seg in segments:
        sent = log.sent_wall(seg["end"])
        if sent is None:
            continue  # not possible unless timestamps are misaligned; counted below
        rows.append(dict(end=seg["end"], fresh=seg["ingested_wall"] - sent, seen=seg["seen_wall"] - sent,
                         text=seg["text"]))
        for w in seg["words"]:
            sent_w = log.sent_wall(w["end"])
            if sent_w is None:
                continue
            key = _norm(w["text"])
            first = next((h["wall"] for h in heard for hw in h["words"]
                          if _norm(hw["text"]) == key and abs(hw["start"] - w["start"]) < 1.0), None)
            final = seg["ingested_wall"] - sent_w
            words.append(dict(end=w["end"], final=final, heard=None if first is None else first - sent_w,
                              first=final if first is None else min(final, first - sent_w)))
    danish = [w["end"] for s in segments for w in s["words"] if _norm(w["text"]) == "danish"]
    # Precision: of the distinct words ever shown provisionally, how many the final text confirmed.
    final_words = [(_norm(w["text"]), w["start"]) for s in segments for w in s["words"]]
    shown = {(_norm(hw["text"]), round(hw["start"], 1)) for h in heard for hw in h["words"]}
    confirmed = sum(1 for text, t in shown if any(f == text and abs(ft - t) < 1.0 for f, ft in final_words))
    return dict(rows=rows, words=words, danish=danish, unmatched=len(segments) - len(rows),
                shown=len(shown), confirmed=confirmed)


def wer(reference: list[str], hypothesis: list[str]) -> float:
    """Word error rate: (substitutions + deletions + insertions) / reference words."""
    prev = list(range(len(hypothesis) + 1))
    for i, r in enumerate(reference, 1):
        cur = [i] + [0] * len(hypothesis)
        for j, h in enumerate(hypothesis, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / max(1, len(reference))


def caption_words() -> list[str]:
    """The clip's captions (machine captions from the source repository, not a human transcript)."""
    text = CAPTIONS.read_text()
    lines = [ln for ln in text.splitlines() if ln.strip() and "-->" not in ln and not ln.strip().isdigit()]
    return [w for w in (_norm(x) for ln in lines for x in ln.split()) if w]


def first_loop_words(segments: list[dict], base: float) -> list[str]:
    """The final transcript of the first time the clip was sent, normalised."""
    end = CLIP_S - base
    return [w for w in (_norm(x["text"]) for s in segments for x in s["words"] if x["end"] <= end + 0.5) if w]


def measure(res: dict) -> dict:
    return {name: measure_stream(res["logs"][name], res["segments"][name], res["heard"][name])
            for name in res["segments"]}


def _stats(values: list[float]) -> list[str]:
    return [str(len(values)), f"{pct(values, 50):.2f} s", f"**{pct(values, 95):.2f} s**",
            f"{max(values):.2f} s" if values else "–"]


def report(res: dict, m: dict, loops: int) -> list[str]:
    s, n = res["settings"], res["n"]
    warm = lambda rows: [r for r in rows if r["end"] >= WARM_S]  # noqa: E731
    seg_final = [r["fresh"] for st in m.values() for r in warm(st["rows"])]
    words = [w for st in m.values() for w in warm(st["words"])]
    first = [w["first"] for w in words]
    heard = [w["heard"] for w in words if w["heard"] is not None]
    final_w = [w["final"] for w in words]
    early = sum(1 for w in words if w["heard"] is not None and w["heard"] < w["final"])
    stats = [["final segments (as before)", *_stats(seg_final)],
             ["final words", *_stats(final_w)],
             ["words, provisional or final, whichever first", *_stats(first)],
             ["words heard provisionally (those that were)", *_stats(heard)]]
    p95 = pct(first, 95)
    goal = 3.0 if n == 1 else 5.0
    lines = [
        f"Source: `{CLIP.name}` ({CLIP_S:g} s of narrated speech, H.264 + AAC) sent {loops}× back to "
        f"back to each of {n} live stream{'s' if n > 1 else ''} as MPEG-TS over UDP to 127.0.0.1 at real-time "
        f"pace by PyAV sender threads (codec copy, packets paced on dts), started 1 s after every stream "
        f"listened ({res['t_listen'] - res['t_post']:.1f} s after the first `POST /v1/streams`). Manta in this "
        f"process with {describe(res['overrides'])} (Whisper `{s.asr_model}` final, "
        f"`{s.asr_provisional_model}` provisional every {s.provisional_every_s:g} s with LocalAgreement-"
        f"{s.provisional_agreement}; frames {s.frame_fps:g}/s, OCR `{s.ocr}`, live profile: max buffer "
        f"{s.asr_live_max_buffer_s:g} s), polled every {POLL_S:g} s. Only speech ending after {WARM_S:g} s "
        "(models loaded) counts.",
        "",
        *table(["what is searchable", "count", "freshness p50", "freshness p95", "max"], stats),
        "",
        "Freshness = when it became searchable in the stream actor (`ingested_wall` of its final segment, "
        "or `wall` of the first provisional text holding the same word within 1 s) − wall time the sender "
        f"had sent the audio up to its end. {early} of {len(words)} final words "
        f"({100 * early / max(1, len(words)):.0f} %) were searchable as provisional text first; "
        f"{len(heard)} ({100 * len(heard) / max(1, len(words)):.0f} %) appeared provisionally at all with "
        "the same spelling (the rest: a different word from the fast model, or final first). "
        f"Of the {sum(st['shown'] for st in m.values())} distinct words ever shown provisionally, "
        f"{100 * sum(st['confirmed'] for st in m.values()) / max(1, sum(st['shown'] for st in m.values())):.0f} % "
        "were confirmed by the final transcript (same word within 1 s).",
        "",
    ]
    ref = caption_words()
    errors = [wer(ref, first_loop_words(res["segments"][name], res["logs"][name].base or 0.0))
              for name in sorted(res["segments"])]
    lines += [f"Final transcript of the first loop against the clip's captions (machine captions: no human "
              f"transcript exists for this clip): WER {', '.join(f'{100 * e:.1f} %' for e in errors)} "
              "(per stream). The committed path does not read provisional text, so any difference from a "
              "run with `asr_provisional_model=off` is CPU contention moving the governor, not the text.", ""]
    for name, st in sorted(res["status"].items()):
        stats_p = st.get("provisional_stats") or {}
        base = res["logs"][name].base or 0.0
        captions = ", ".join(f"{CAPTION_DANISH_END + i * CLIP_S - base:.2f}" for i in range(loops))
        lines.append(f"- `{name}` at the end: state `{st.get('state')}`, {st.get('segments')} segments, "
                     f"media {st.get('media_seconds', 0):.1f} s, committed {st.get('committed_seconds', 0):.1f} s, "
                     f"RTF {st.get('rtf', 0):.2f}, quality level {st.get('degraded')}, provisional passes "
                     f"{stats_p.get('passes')}, shed {stats_p.get('shed')}; \"Danish\" ended at "
                     f"{', '.join(f'{d:.2f}' for d in m[name]['danish']) or 'n/a'} s (captions "
                     f"{captions} s).")
    lines += ["", f"- Goal provisional-or-final p95 ≤ {goal:g} s for {n} stream{'s' if n > 1 else ''}: "
              f"{'met' if p95 <= goal else 'MISSED'} (p95 {p95:.2f} s over {len(first)} words)."]
    return lines


def describe(overrides: dict) -> str:
    if not overrides:
        return "default settings"
    return "default settings except " + ", ".join(f"`{k}={v}`" for k, v in overrides.items())


def main() -> None:
    args = parse_args(__doc__, [
        ("--loops", dict(type=int, default=2, help="times the clip is sent back to back")),
        ("--streams", dict(type=int, default=1, help="live streams at once, each sent the clip")),
        ("--set", dict(action="append", default=[], metavar="FIELD=VALUE",
                       help="a Settings override, e.g. asr_model=tiny.en (repeatable)"))])
    overrides = dict(kv.split("=", 1) for kv in args.set)
    res = run(args.loops, overrides, args.streams)
    res["overrides"] = overrides
    m = measure(res)
    for name, st in m.items():
        for r in st["rows"]:
            print(f"  {name} end {r['end']:6.1f} s  fresh {r['fresh']:5.2f} s  {r['text'][:60]}")
    if not any(st["rows"] for st in m.values()):
        raise SystemExit(f"no segments arrived; stream status: {res['status']}")
    tags = ([f"streams={args.streams}"] if args.streams > 1 else []) + args.set
    key = KEY + ("" if not tags else "[" + ",".join(tags) + "]")
    title = "Freshness on live UDP sources" + (f" ({', '.join(tags)})" if tags else "")
    emit(key, section(title, report(res, m, args.loops)), args.write)


if __name__ == "__main__":
    main()
