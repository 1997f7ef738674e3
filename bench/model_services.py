"""Shared model services against per-actor models, side by side in one run: memory per stream,
how soon a new stream commits its first segment, and how soon a killed stream actor ingests again.

Manta runs for real in this process three times (Ray + Serve + stream actors): with
``shared_models=false`` (every stream actor loads its own Whisper, MiniLM, EfficientNet, RapidOCR and
stream model: the design before issue 15), with the ``models`` deployment that all stream actors share
but no spare processes (Ray starts a process per stream actor), and with both (the default: new and
restarted stream actors start in warm spare processes, actors/spares.py). Each run first ingests a short warm-up file (so the shared service is loaded,
as it is on a running box), then adds streams reading the narrated clip at real-time pace:
1 alone, then 4 together, then 3 more (8). Memory is the PSS and RSS summed over every process of
this run (this process, Ray's and all workers: Manta's API, models, stream actors), read from
/proc after each step once the new streams have committed a segment.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .common import MEDIA, emit, http_client, manta_server, parse_args, section, table, wait_state

KEY = "model-services"
CLIP = MEDIA / "manifesto_audiobook_titlecard.mp4"
WARM = MEDIA / "jfk_inaugural_1961.flac"


def _children(root: int) -> list[int]:
    parents = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += [p for p, pp in parents.items() if pp == pid]
    return out


def _idle_spare(pid: int) -> bool:
    """An idle spare stream worker (actors/spares.py): started for stream actors, holding none yet."""
    from actors.spares import STREAM_WORKER, WORKER_ENV

    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes()
        marker = f"{WORKER_ENV}={STREAM_WORKER}".encode()
        return title.startswith(b"ray::IDLE") and marker in Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False


def memory_mib() -> tuple[float, float, float]:
    """(PSS, RSS, PSS of the idle spare workers) in MiB summed over this process and everything it
    started. The spares are a fixed pool refilled in the background: the PSS columns leave them out,
    so the per-stream figures do not depend on how far a refill had got."""
    pss = rss = spare = 0
    for pid in _children(os.getpid()):
        try:
            p = r = 0
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    p = int(line.split()[1])
                elif line.startswith("Rss:"):
                    r = int(line.split()[1])
            if _idle_spare(pid):
                spare += p
            else:
                pss, rss = pss + p, rss + r
        except OSError:
            pass
    return pss / 1024, rss / 1024, spare / 1024


def add(http, names: list[str]) -> tuple[float, float]:
    """POST each stream at once; seconds until the slowest has committed its first segment, and
    the mean over the group."""
    t0 = time.time()
    for name in names:
        http.post("/v1/streams", json={"source": str(CLIP), "name": name, "pace": "realtime"}).raise_for_status()
    pending, firsts = set(names), {}
    while pending:
        listing = {st["id"]: st for st in http.get("/v1/streams").json()["streams"]}
        now = time.time()
        for name in list(pending):
            st = listing.get(name, {})
            if st.get("state") == "failed":
                raise RuntimeError(st)
            if st.get("segments", 0) >= 1:
                firsts[name] = now - t0
                pending.discard(name)
        if time.time() - t0 > 300:
            raise RuntimeError(f"no first segment within 300 s: {pending}")
        time.sleep(0.1)  # one listing call a tick: polling must not load the 2 cores it measures
    return max(firsts.values()), sum(firsts.values()) / len(firsts)


def actor_kill(http, namespace: str, name: str) -> float:
    import ray

    from actors.stream_actor import actor_name

    before = http.get(f"/v1/streams/{name}").json()
    kill = time.time()
    ray.kill(ray.get_actor(actor_name(name), namespace=namespace), no_restart=False)
    time.sleep(0.3)  # the old actor's status must not be mistaken for the new one's
    while True:
        st = http.get(f"/v1/streams/{name}").json()
        if st.get("state") == "ingesting" and st.get("media_seconds", 0) > before["committed_seconds"] + 0.5 \
                and "restarted after a crash" in st.get("notes", []):
            return time.time() - kill
        if time.time() - kill > 180:
            raise RuntimeError(f"{name} did not recover: {st}")
        time.sleep(0.05)


def service_stats() -> dict:
    from ray import serve

    from actors.model_service import DEPLOYMENT
    from actors.runtime import APP_NAME

    stats = serve.get_deployment_handle(DEPLOYMENT, APP_NAME).stats.remote().result()
    return {s["name"]: s for s in stats["services"]}


# (label, shared models, spare stream workers): the design before issue 15, shared services with a
# process started per stream actor, and shared services with warm spare processes (the default).
VARIANTS = [("per-actor models (before)", False, 0), ("shared `models` deployment, no spares", True, 0),
            ("shared deployment + 4 spare stream workers (now)", True, 4)]


def run(shared: bool, model: str, spares: int) -> dict:
    res: dict = {"memory": [], "stats": []}
    with manta_server(asr_model=model, shared_models=shared, spare_stream_workers=spares) as (settings, url), \
            http_client(url) as http:
        http.post("/v1/streams", json={"source": str(WARM), "name": "warmup"}).raise_for_status()
        wait_state(http, "warmup", ("finished",), timeout=300)
        http.delete("/v1/streams/warmup", params={"remove": "true"})
        time.sleep(2.0)
        res["memory"].append((0, *memory_mib()))
        steps = [["s1"], ["s2", "s3", "s4", "s5"], ["s6", "s7", "s8"]]
        running = 0
        for names in steps:
            res.setdefault("first", []).append((len(names), add(http, names)))
            running += len(names)
            time.sleep(3.0)
            res["memory"].append((running, *memory_mib()))
            if shared:
                res["stats"].append((running, service_stats()))
        try:  # the newest stream: it is still early in its clip
            res["kill"] = actor_kill(http, settings.namespace, "s8")
        except RuntimeError as exc:
            print("actor kill:", exc, flush=True)
            res["kill"] = float("nan")
    return res


def main() -> None:
    args = parse_args(__doc__, [("--model", dict(default="tiny.en", help="Whisper size"))])
    runs, label = {}, {}
    for name, shared, spares in VARIANTS:
        runs[name] = run(shared, args.model, spares)
        label[name] = name
        print(name, runs[name], flush=True)
    mem_rows = []
    for shared, r in runs.items():
        base_pss = r["memory"][0][1]
        for n, pss, rss, spare in r["memory"]:
            mem_rows.append([label[shared], n, f"{pss:.0f}", f"{rss:.0f}",
                             f"{(pss - base_pss) / n:.0f}" if n else "—", f"{spare:.0f}"])
    slope = {s: (r["memory"][-1][1] - r["memory"][1][1]) / (r["memory"][-1][0] - r["memory"][1][0])
             for s, r in runs.items()}
    latency_rows = [[label[s], *(f"{slow:.1f} s" + (f" ({mean:.1f} s)" if n > 1 else "")
                                 for n, (slow, mean) in r["first"]), f"{r['kill']:.1f} s"]
                    for s, r in runs.items()]
    stat_rows = []
    for n, stats in runs[VARIANTS[-1][0]]["stats"]:
        for name, st in stats.items():
            if st["items"]:
                stat_rows.append([n, name, st["items"], f"{st['mean_batch']:.2f}", st["max_batch_seen"],
                                  f"{st['wait_p50_s'] * 1000:.0f} ms", f"{st['wait_p95_s'] * 1000:.0f} ms",
                                  f"{st['busy_s']:.1f} s"])
    body = [
        f"Source: `{CLIP.name}` at real-time pace (H.264 + AAC: speech, frames at 1/s, EfficientNet, "
        f"RapidOCR, stream model), Whisper `{args.model}`, default settings otherwise. Three runs of the "
        "same script, one after the other. The clip's speech starts 1.6 s into it.",
        "",
        "Memory of every process of the run (PSS shares libraries fairly; RSS counts them in each process), "
        "idle spare stream workers apart (a fixed pool, refilled a while after streams are added):",
        "",
        *table(["models", "streams", "PSS MiB", "RSS MiB", "PSS per stream MiB", "idle spares' PSS MiB"],
               mem_rows),
        "",
        "Added PSS per additional stream (from 1 to 8 streams): " + ", ".join(
            f"{label[s]} **{v:.0f} MiB**" for s, v in slope.items()) + ".",
        "",
        "New streams (POST → first segment committed; for a group, the slowest of the group and, in "
        "brackets, its mean) and a "
        "stream actor killed with `ray.kill` (→ ingesting new media again, restored from its checkpoint):",
        "",
        *table(["models", "1 new stream", "4 started together", "3 more (to 8)", "actor kill → ingesting"],
               latency_rows),
        "",
        "Shared services (the last run), cumulative after each step (`ModelService.stats`, the same "
        "numbers as the `manta_model_*` Prometheus gauges):",
        "",
        *table(["streams", "service", "requests", "mean batch", "largest batch", "queue wait p50",
                "queue wait p95", "time in model"], stat_rows),
    ]
    emit(KEY, section("Shared model services against per-actor models (bench/model_services.py)", body),
         args.write)


if __name__ == "__main__":
    main()
