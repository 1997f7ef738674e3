"""Segment index at scale: 1M micro segments over 10 streams, flat vs IVF, fan-out vs one index.

Vectors: a few thousand real sentences (test-media captions, transcript and README, Python
docstrings, installed packages' descriptions) embedded once with MiniLM; every micro segment is a
noisy mix of two of them (0.55-0.9 of one the stream "talks about", the rest of any other, plus
Gaussian noise of norm ~0.5, renormalised), so the data has the clumpy structure of real
embeddings rather than being uniform on the sphere. Questions are real sentences held out of the
mix (and the benchmark questions). Retrieval only (no question embedding), one FAISS thread, all
in this one process: a fan-out searches the 10 streams' indexes one after the other (the worst case
for 2 cores; stream actors search in parallel) and merges by score.
Goal: p50 <= 20 ms for retrieval at 1M segments, recall@10 >= 0.95 against exact search.
"""

from __future__ import annotations

import gc
import heapq
import importlib.metadata
import math
import re
import time

import faiss
import numpy as np

from streaming.memory import index as index_module
from streaming.memory.index import SegmentIndex
from streaming.records import MicroSegment

from .common import MEDIA, emit, parse_args, pct, section, table
from .corpus import QUESTIONS, sentences

KEY = "index-scale"
DIM = 384
STREAMS = 10
PER_STREAM = 100_000
SEG_S = 3.0  # a micro segment is about 3 s: 1200 an hour
PER_HOUR = 3600 / SEG_S
BLOCK = 10_000  # rows generated (and added) at a time
N_QUERIES = 200
K = 10
NOISE = 0.5
SWEEP = (8, 16, 32, 64)
FLAT_SIZES = (5_000, 10_000, 15_000, 20_000, 50_000, 100_000)


# -- data ----------------------------------------------------------------------------------------
def subtitle_lines() -> list[str]:
    out = []
    for path in sorted(MEDIA.glob("*.srt")) + sorted(MEDIA.glob("*.vtt")):
        for line in path.read_text(errors="ignore").splitlines():
            line = re.sub(r"<[^>]+>|\[[^\]]*\]", " ", line).strip()
            if line and "-->" not in line and not line.isdigit() and \
                    not line.startswith(("WEBVTT", "Kind:", "Language:")):
                out.append(line)
    return out


def package_sentences() -> list[str]:
    """Prose sentences from the long descriptions of the installed packages."""
    out = []
    for dist in sorted(importlib.metadata.distributions(), key=lambda d: d.metadata["Name"] or ""):
        text = dist.metadata.get_payload() or dist.metadata.get("Description") or ""
        for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())):
            if 6 <= len(s.split()) <= 40 and re.fullmatch(r"[A-Za-z0-9 ,.;:'’()!?-]+", s):
                out.append(s)
    return out


def real_texts() -> list[str]:
    seen, out = set(), []
    for s in sentences(100_000) + subtitle_lines() + package_sentences():
        if len(s.split()) >= 3 and s.lower() not in seen:
            seen.add(s.lower())
            out.append(s)
    return out


class Data:
    def __init__(self):
        from manta_models.perception.embed import TextEmbedder

        texts = real_texts()
        embedder = TextEmbedder("minilm", threads=2)
        t = time.perf_counter()
        vectors = embedder.encode(texts)
        self.embed_s = time.perf_counter() - t
        held = np.zeros(len(texts), dtype=bool)
        held[np.random.default_rng(0).choice(len(texts), N_QUERIES - len(QUESTIONS), replace=False)] = True
        self.base = vectors[~held]
        self.queries = np.vstack([embedder.encode(list(QUESTIONS)), vectors[held]])
        self.n_texts = len(texts)
        self.own = [np.random.default_rng(1000 + s).choice(len(self.base), len(self.base) // 2,
                                                           replace=False) for s in range(STREAMS)]
        self.segments = [[MicroSegment(f"s{s}", i, SEG_S * i, SEG_S * (i + 1), ())
                          for i in range(PER_STREAM)] for s in range(STREAMS)]

    def block(self, stream: int, lo: int) -> np.ndarray:
        """Rows [lo, lo + BLOCK) of a stream (the same every time: seeded by stream and block)."""
        rng = np.random.default_rng((stream, lo))
        own = self.own[stream]
        a = self.base[own[rng.integers(0, len(own), BLOCK)]]
        b = self.base[rng.integers(0, len(self.base), BLOCK)]
        w = rng.uniform(0.55, 0.9, (BLOCK, 1)).astype(np.float32)
        v = w * a + (1 - w) * b + rng.standard_normal((BLOCK, DIM), dtype=np.float32) * (NOISE / math.sqrt(DIM))
        return v / np.linalg.norm(v, axis=1, keepdims=True)


# -- measuring -----------------------------------------------------------------------------------
def fan_out(indexes: list[SegmentIndex], q: np.ndarray, start=None, end=None, per_stream=None):
    hits = []
    for index in indexes:
        found = index.search(q, K, start, end)
        hits += found
        if per_stream is not None:
            per_stream.append({s.seq for s, _ in found})
    return heapq.nlargest(K, hits, key=lambda h: h[1])


def run_queries(search, queries: np.ndarray) -> tuple[list[float], list[set]]:
    search(queries[0])  # warm-up
    times, found = [], []
    for q in queries:
        t = time.perf_counter()
        hits = search(q)
        times.append(time.perf_counter() - t)
        found.append({(s.stream_id, s.seq) for s, _ in hits})
    return times, found


def recall(found: list[set], truth: list[set]) -> float:
    return float(np.mean([len(f & t) / max(1, len(t)) for f, t in zip(found, truth)]))


def per_stream_queries(indexes: list[SegmentIndex], queries: np.ndarray) -> list[set]:
    """Each stream's own top k for every query (a question about one stream), untimed."""
    out: list[set] = []
    for q in queries:
        fan_out(indexes, q, per_stream=out)
    return out


def build(data: Data, stream: int | None, **kwargs) -> tuple[SegmentIndex, float, list]:
    """One stream's index (or, stream=None, all streams in one index, interleaved by time).
    Returns the index, the build time and [(segments, new kind, seconds)] for each add that
    (re)trained IVF."""
    index = SegmentIndex(DIM, background=False, **kwargs)
    total, switches = 0.0, []
    for lo in range(0, PER_STREAM, BLOCK):
        if stream is not None:
            batches = [(data.segments[stream][lo:lo + BLOCK], data.block(stream, lo))]
        else:
            blocks = [data.block(s, lo) for s in range(STREAMS)]
            vecs = np.stack(blocks, axis=1).reshape(-1, DIM)  # row i of every stream, then i + 1
            segs = [data.segments[s][i] for i in range(lo, lo + BLOCK) for s in range(STREAMS)]
            del blocks
            batches = [(segs[j:j + BLOCK], vecs[j:j + BLOCK]) for j in range(0, len(segs), BLOCK)]
        for segs, vecs in batches:
            for j in range(0, len(segs), 1_000):  # segments arrive in small batches
                kind = index.kind
                t = time.perf_counter()
                index.add(segs[j:j + 1_000], vecs[j:j + 1_000])
                dt = time.perf_counter() - t
                total += dt
                if index.kind != kind:
                    switches.append((len(index), index.kind, dt))
    return index, total, switches


def flat_vs_size(data: Data) -> list[list]:
    vecs = np.vstack([data.block(0, lo) for lo in range(0, PER_STREAM, BLOCK)])
    rows = []
    for n in [n for n in FLAT_SIZES if n <= PER_STREAM]:
        flat = faiss.IndexFlatIP(DIM)
        flat.add(vecs[:n])
        times = []
        for q in data.queries:
            t = time.perf_counter()
            flat.search(q[None], K)
            times.append(time.perf_counter() - t)
        rows.append([f"{n:,}", f"{n / PER_HOUR:.0f} h", f"{pct(times, 50) * 1e3:.2f} ms",
                     f"{pct(times, 50) * 1e3 * STREAMS:.1f} ms"])
    return rows


def run() -> dict:
    faiss.omp_set_num_threads(1)
    r: dict = {}
    t0 = time.perf_counter()
    data = Data()
    q = data.queries
    r["texts"], r["embed_s"] = data.n_texts, data.embed_s
    print(f"embedded {data.n_texts} sentences in {data.embed_s:.0f} s", flush=True)
    r["flat_sizes"] = flat_vs_size(data)

    # -- 10 per-stream indexes, fan-out ----------------------------------------------------------
    flats, ivfs, b = [], [], {"flat": [], "ivf": [], "switch": []}
    for s in range(STREAMS):
        flat, t_flat, _ = build(data, s, ivf_at=None)
        ivf, t_ivf, t_switch = build(data, s)
        flats.append(flat)
        ivfs.append(ivf)
        b["flat"].append(t_flat)
        b["ivf"].append(t_ivf)
        b["switch"].append(sum(dt for _, _, dt in t_switch))
        print(f"stream {s}: flat {t_flat:.1f} s, {ivf.kind} {t_ivf:.1f} s (switches {t_switch})",
              flush=True)
    r["build"] = b
    r["kind"] = ivfs[0].kind
    r["bytes"] = {"flat": flats[0].nbytes, "ivf": ivfs[0].nbytes}
    truth_t, truth = run_queries(lambda v: fan_out(flats, v), q)
    r["fan_flat"] = truth_t
    truth_one = per_stream_queries(flats, q)
    r["sweep"] = {}
    for nprobe in SWEEP:
        for ivf in ivfs:
            ivf.nprobe = nprobe
        times, found = run_queries(lambda v: fan_out(ivfs, v), q)
        r["sweep"][nprobe] = (times, recall(found, truth), recall(per_stream_queries(ivfs, q), truth_one))
    for ivf in ivfs:
        ivf.nprobe = index_module.NPROBE
    r["nprobe"] = index_module.NPROBE
    print(f"fan-out done ({time.perf_counter() - t0:.0f} s)", flush=True)

    windows = {"last hour": (SEG_S * (PER_STREAM - PER_HOUR), None),
               "one day, mid-stream": (SEG_S * 0.4 * PER_STREAM, SEG_S * (0.4 * PER_STREAM + 24 * PER_HOUR)),
               "first half": (0.0, SEG_S * PER_STREAM / 2)}
    r["filtered"] = {}
    for name, (start, end) in windows.items():
        ft, exact = run_queries(lambda v: fan_out(flats, v, start, end), q)
        it, found = run_queries(lambda v: fan_out(ivfs, v, start, end), q)
        r["filtered"][name] = (ft, it, recall(found, exact))

    # Retention: one stream drops its oldest 24 hours (flat and IVF).
    n_drop = int(24 * PER_HOUR)
    r["retention"] = {}
    for name, index in (("flat", flats[0]), ("ivf", ivfs[0])):
        t = time.perf_counter()
        removed = index.remove_before(SEG_S * (n_drop + 0.5))
        r["retention"][name] = (removed, time.perf_counter() - t)
    del flats, ivfs
    gc.collect()

    # -- one merged index over all streams ---------------------------------------------------------
    flat, t_flat, _ = build(data, None, ivf_at=None)
    merged_t, merged_truth = run_queries(lambda v: flat.search(v, K), q)
    r["merged_flat"] = (merged_t, t_flat, flat.nbytes, recall(merged_truth, truth))
    del flat
    gc.collect()
    print(f"merged flat done ({time.perf_counter() - t0:.0f} s)", flush=True)
    ivf, t_ivf, t_switch = build(data, None)
    print(f"merged {ivf.kind} {t_ivf:.1f} s (switches {t_switch})", flush=True)
    times, found = run_queries(lambda v: ivf.search(v, K), q)
    r["merged_ivf"] = (times, t_ivf, t_switch, ivf.nbytes, recall(found, merged_truth), ivf.kind)
    r["total_s"] = time.perf_counter() - t0
    return r


# -- report --------------------------------------------------------------------------------------
def mb(n: float) -> str:
    return f"{n / 2**20:,.1f} MB"


def report(r: dict) -> list[str]:
    n = STREAMS * PER_STREAM
    nprobe, kind = r["nprobe"], r["kind"]
    lat = lambda t: [f"{pct(t, 50) * 1e3:.1f} ms", f"{pct(t, 95) * 1e3:.1f} ms"]  # noqa: E731
    goal = lambda t: "met" if pct(t, 50) <= 0.020 else "MISSED"  # noqa: E731
    ivf_t, ivf_rec, one_rec = r["sweep"][nprobe]
    mf, mi = r["merged_flat"], r["merged_ivf"]
    rows = [
        [f"{STREAMS} per-stream indexes, fan-out one after another", "Flat (exact)", *lat(r["fan_flat"]),
         "1 (reference)", goal(r["fan_flat"])],
        [f"{STREAMS} per-stream indexes, fan-out one after another", f"{kind}, nprobe {nprobe}",
         *lat(ivf_t), f"**{ivf_rec:.3f}**", goal(ivf_t)],
        ["one index over all streams", "Flat (exact)", *lat(mf[0]), f"{mf[3]:.3f}", goal(mf[0])],
        ["one index over all streams", f"{mi[5]}, nprobe {nprobe}", *lat(mi[0]), f"{mi[4]:.3f}",
         goal(mi[0])],
    ]
    sweep = [[p, *lat(t), f"{rec:.3f}", f"{one:.3f}"] for p, (t, rec, one) in r["sweep"].items()]
    filtered = [[name, *lat(ft), *lat(it), f"{rec:.3f}"] for name, (ft, it, rec) in r["filtered"].items()]
    b = r["build"]
    hours = PER_STREAM / PER_HOUR
    one, merged = f"per stream ({PER_STREAM:,} segments)", f"one index ({n:,} segments)"
    memory = [
        [one, "Flat", f"{np.median(b['flat']):.1f} s", "-",
         mb(r["bytes"]["flat"]), mb(r["bytes"]["flat"] / hours)],
        [one, kind, f"{np.median(b['ivf']):.1f} s",
         f"at {index_module.IVF_AT:,}: {np.median(b['switch']):.1f} s (median of {STREAMS})",
         mb(r["bytes"]["ivf"]), mb(r["bytes"]["ivf"] / hours)],
        [merged, "Flat", f"{mf[1]:.1f} s", "-", mb(mf[2]), "-"],
        [merged, mi[5], f"{mi[1]:.1f} s",
         "; ".join(f"at {at:,}: {k} in {dt:.1f} s" for at, k, dt in mi[2]), mb(mi[3]), "-"],
    ]
    ret = r["retention"]
    return [
        f"{n:,} micro segments: {STREAMS} streams × {PER_STREAM:,} ({PER_STREAM / PER_HOUR:.0f} hours "
        f"each at one segment per {SEG_S:.0f} s), 384-d MiniLM-like vectors: {r['texts']:,} real "
        f"sentences (test-media captions, transcript and README, Python docstrings, installed "
        f"packages' descriptions) embedded once with MiniLM ({r['embed_s']:.0f} s), each segment a "
        f"noisy mix of two of them (0.55-0.9 of one of its stream's half of the sentences, the rest "
        f"of any, plus noise of norm ≈ {NOISE}, renormalised). {len(QUESTIONS)} benchmark "
        f"questions plus {N_QUERIES - len(QUESTIONS)} sentences held out of the mix are the "
        f"{N_QUERIES} queries. k = {K}; retrieval only (no question embedding); FAISS with **1 "
        "OpenMP thread** (as in a stream actor); everything in one process, so the fan-out searches "
        f"the {STREAMS} indexes one after another and merges by score (the worst case on 2 cores: "
        "stream actors search in parallel). Recall@10 is against exact (flat) search over the same "
        f"segments. `SegmentIndex` defaults: IVF from {index_module.IVF_AT:,} segments "
        f"(nlist = min(4·√n, n/39) at training, retrained with 4× the lists after 16× growth), "
        f"nprobe {nprobe}.",
        "",
        f"Retrieval latency per question at {n:,} segments (goal: p50 ≤ 20 ms):",
        "",
        *table(["layout", "index", "p50", "p95", "recall@10", "goal"], rows),
        "",
        f"nprobe (per-stream {kind} indexes; latency and recall of the fan-out over {STREAMS}, and "
        "recall of each stream's own top 10, i.e. a question about one stream, over all streams):",
        "",
        *table(["nprobe", "fan-out p50", "fan-out p95", "fan-out recall@10", "one-stream recall@10"],
               sweep),
        "",
        f"Time-filtered questions (fan-out over the {STREAMS} streams; the filter is a range of ids; a "
        "narrow range probes more lists, so it scans about as many vectors as an unfiltered one):",
        "",
        *table(["window (every stream)", "Flat p50", "Flat p95", "IVF p50", "IVF p95", "IVF recall@10"],
               filtered),
        "",
        "Build time (segments added 1,000 at a time; IVF trained inside the add that reaches the "
        "threshold, `background=False`, so its time is measured here) and memory (`nbytes`: "
        "vectors, ids and centroids):",
        "",
        *table(["index", "type", "build", "switch to IVF (train + fill)", "bytes", "bytes per stream-hour"],
               memory),
        "",
        f"A flat index's latency grows with its size (one stream, 1 thread; ×{STREAMS} is a "
        f"{STREAMS}-stream fan-out of flat indexes of that size, the case before any stream reaches "
        "the IVF threshold):",
        "",
        *table(["segments", "stream hours", "Flat p50", f"×{STREAMS} streams"], r["flat_sizes"]),
        "",
        f"Retention (`remove_before`, dropping the oldest 24 h = {ret['ivf'][0]:,} segments of "
        f"one {PER_STREAM:,}-segment stream, under the index lock): flat {ret['flat'][1] * 1e3:.0f} ms, "
        f"IVF {ret['ivf'][1] * 1e3:.0f} ms.",
        "",
        f"- Fan-out over {STREAMS} per-stream {kind} indexes: p50 {pct(ivf_t, 50) * 1e3:.1f} ms "
        f"(goal ≤ 20 ms: {goal(ivf_t)}), recall@10 {ivf_rec:.3f} (goal ≥ 0.95: "
        f"{'met' if ivf_rec >= 0.95 else 'MISSED'}); one stream's own top 10: {one_rec:.3f}.",
        f"- Whole run: {r['total_s'] / 60:.1f} min.",
    ]


def main() -> None:
    global STREAMS, PER_STREAM
    args = parse_args(__doc__, [("--streams", dict(type=int, default=STREAMS)),
                                ("--per-stream", dict(type=int, default=PER_STREAM,
                                                      help=f"a multiple of {BLOCK}"))])
    STREAMS, PER_STREAM = args.streams, args.per_stream
    r = run()
    emit(KEY, section(f"Segment index at {STREAMS * PER_STREAM:,} micro segments: flat vs IVF",
                      report(r)), args.write)


if __name__ == "__main__":
    main()
