"""Query latency over HTTP at 10k and 100k micro segments vs a no-op Serve endpoint, same run.

Manta runs in this process; a trivial FastAPI Serve app (`/noop`) is deployed beside it in the
same Serve instance, so both pay the same proxy and HTTP costs. One stream's index is filled through
the stream actor's ``import_segments``. Requests rotate among a never-asked question, a repeated
question (the API caches question vectors) and the no-op, on one persistent client.
The split (MiniLM question embedding, FAISS search, Ray actor call) is measured in-process.
Goal: p50(query) <= 2.5 × p50(no-op).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
from fastapi import FastAPI
from ray import serve

from .common import emit, http_client, manta_server, ms, parse_args, pct, section, table, \
    wait_state, write_wav
from .corpus import QUESTIONS, sentences

KEY = "query_latency"
DIM = 384
SIZES = (10_000, 100_000)
BATCH = 10_000
N = 200
WARMUP = 20

noop_api = FastAPI()


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress(noop_api)
class NoOp:
    @noop_api.post("/")
    async def ok(self) -> dict:
        return {"ok": True}


class Corpus:
    """Segments in time order: real MiniLM vectors for real sentences, random unit vectors else."""

    def __init__(self, embedder, n_real: int = 400, seed: int = 0):
        self.texts = sentences(n_real)
        self.real = embedder.encode(self.texts)
        self.stride = SIZES[0] // len(self.texts)  # real ones spread over the first 10k
        self.rng = np.random.default_rng(seed)

    def batch(self, lo: int, hi: int):
        from streaming.records import MicroSegment, Word

        vecs = self.rng.standard_normal((hi - lo, DIM)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        segs = []
        for i in range(lo, hi):
            j = i // self.stride if i % self.stride == 0 else None
            real = j is not None and j < len(self.texts)
            text = self.texts[j] if real else f"filler segment {i}"
            if real:
                vecs[i - lo] = self.real[j]
            segs.append(MicroSegment("bulk", i, 3.0 * i, 3.0 * i + 3.0, (Word(text, 3.0 * i, 3.0 * i + 3.0),)))
        return segs, vecs


def timed(fn, n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t)
    return out


def http_round(http, tag: str) -> tuple[dict, str]:
    """Interleaved: a repeated question (the API caches question vectors), a never-seen one (a
    cache miss: MiniLM runs in the request), and the no-op; order rotates every round."""
    def query(question: str) -> dict:
        r = http.post("/v1/query", json={"question": question})
        r.raise_for_status()
        return r.json()

    calls = {"repeat": lambda i: query(QUESTIONS[i % len(QUESTIONS)]),
             "unique": lambda i: query(f"{QUESTIONS[i % len(QUESTIONS)]} ({tag}-{i})"),
             "noop": lambda i: http.post("/noop/").raise_for_status()}
    for i in range(WARMUP):
        for fn in calls.values():
            fn(-1 - i)
    times = {name: [] for name in calls}
    names = list(calls)
    for i in range(N):
        for name in names[i % 3:] + names[:i % 3]:
            t = time.perf_counter()
            calls[name](i)
            times[name].append(time.perf_counter() - t)
    return times, query(QUESTIONS[0])["answer"]


def split(embedder, index, handle, questions: np.ndarray) -> dict:
    """In-process costs of the query path's parts. FAISS runs with the stream actor's OpenMP thread
    count, and again with one thread per core (a process that never capped OpenMP)."""
    import faiss
    import ray

    actor_threads = ray.get(handle.__ray_call__.remote(lambda _: faiss.omp_get_max_threads()))
    embed = timed(lambda i: embedder.encode([QUESTIONS[i % len(QUESTIONS)]]), N)
    search = {}
    for threads in (actor_threads, os.cpu_count()):
        faiss.omp_set_num_threads(threads)
        search[threads] = timed(lambda i: index.search(questions[i % len(questions)], 5), N)
    actor = timed(lambda i: ray.get(handle.search.remote(questions[i % len(questions)], 5, None, None)), N)
    return dict(embed=embed, faiss=search[actor_threads], faiss_all=search[os.cpu_count()],
                actor=actor, actor_threads=actor_threads)


def run() -> list[dict]:
    import ray

    from manta_models.perception.embed import TextEmbedder
    from streaming.memory.index import SegmentIndex
    from streaming.settings import Settings

    results = []
    with manta_server() as (settings, url), http_client(url) as http, \
            tempfile.TemporaryDirectory(prefix="manta-bench-query-") as tmp:
        serve.run(NoOp.bind(), name="noop", route_prefix="/noop", blocking=False)
        wav = write_wav(Path(tmp) / "silence.wav", np.zeros(16_000, dtype=np.float32))
        http.post("/v1/streams", json={"source": str(wav), "name": "bulk"}).raise_for_status()
        wait_state(http, "bulk", ("finished",), timeout=120)
        while http.post("/noop/").status_code != 200:
            time.sleep(0.25)
        handle = ray.get_actor("manta-stream:bulk", namespace=settings.namespace)
        embedder = TextEmbedder(settings.embed_model, threads=Settings().torch_threads)
        corpus = Corpus(embedder)
        questions = embedder.encode(list(QUESTIONS))
        local = SegmentIndex(DIM)
        filled = 0
        for size in SIZES:
            t = time.perf_counter()
            for lo in range(filled, size, BATCH):
                segs, vecs = corpus.batch(lo, min(size, lo + BATCH))
                filled = ray.get(handle.import_segments.remote(segs, vecs))
                local.add(segs, vecs)
            print(f"filled to {filled} segments in {time.perf_counter() - t:.1f} s", flush=True)
            status = http.get("/v1/streams/bulk").json()
            times, answer = http_round(http, str(size))
            parts = split(embedder, local, handle, questions)
            results.append(dict(size=size, segments=status["segments"], answer=answer, **times, **parts))
            print(f"  {size}: " + ", ".join(f"{k} p50 {ms(pct(v, 50))}" for k, v in times.items()),
                  flush=True)
    return results


def report(results: list[dict]) -> list[str]:
    rows, parts, verdicts = [], [], []
    for r in results:
        noop = pct(r["noop"], 50)
        for kind, label in (("unique", "new question (embedded)"), ("repeat", "repeated question (cached)")):
            ratio = pct(r[kind], 50) / noop
            rows.append([f"{r['segments']:,}", label, ms(pct(r[kind], 50)), ms(pct(r[kind], 99)),
                         ms(noop), ms(pct(r["noop"], 99)), f"**{ratio:.2f}×**"])
            verdicts.append(f"- {r['segments']:,} segments, {label}: p50 ratio {ratio:.2f}× (goal ≤ "
                            f"2.5×: {'met' if ratio <= 2.5 else 'MISSED'}).")
        parts.append([f"{r['segments']:,}", *(f"{ms(pct(r[k], 50))} / {ms(pct(r[k], 99))}"
                                             for k in ("embed", "faiss", "faiss_all", "actor"))])
        rest = pct(r["unique"], 50) - noop - pct(r["embed"], 50) - pct(r["actor"], 50)
        verdicts.append(f"  New-question p50 − no-op − embedding − actor call = {ms(rest)}: the API "
                        "handler's own share (thread-pool hop, stream directory, validation, JSON).")
    return [
        f"One stream holding N micro segments (3 s each, in time order), imported through the stream "
        f"actor: {len(sentences())} real sentences (test-media README, captions and transcript, "
        "plus Python stdlib docstrings) with real MiniLM vectors spread over the first 10k, and "
        "random unit vectors for all the rest. Flat inner-product FAISS index (Manta's default). "
        f"Per size, {N} rounds on one persistent httpx client, each round one `POST /v1/query` with "
        f"a question never asked before (one of {len(QUESTIONS)} questions plus a unique suffix, so "
        f"the API's question-vector cache misses), one with one of the {len(QUESTIONS)} questions "
        "verbatim (cache hits after warm-up), and one `POST /noop/` (a FastAPI Serve deployment "
        "returning `{\"ok\": true}` in the same Serve instance), in rotating order; after "
        f"{WARMUP} untimed rounds. k = 5 (the default).",
        "",
        *table(["segments", "query", "query p50", "query p99", "no-op p50", "no-op p99",
                "p50 query / no-op"], rows),
        "",
        f"Where a query's time goes, measured in the benchmark process (p50 / p99 over {N} calls; "
        "MiniLM with the same 1 torch thread the API replica uses; FAISS (k=5) on an identical local "
        "index, with the OpenMP thread count found in the stream actor and with one per core; "
        "the actor call is `StreamActor.search` via Ray from the driver, i.e. Ray RPC + FAISS + "
        "building evidence):",
        "",
        *table(["segments", "MiniLM question embedding",
                f"FAISS search, {results[0]['actor_threads']} OpenMP thread(s) (as in the actor)",
                f"FAISS search, {os.cpu_count()} OpenMP threads", "Ray actor search call"], parts),
        "",
        f"Sample answer at {results[-1]['segments']:,} segments to \"{QUESTIONS[0]}\": "
        f"{results[-1]['answer']}",
        "",
        *verdicts,
    ]


def main() -> None:
    args = parse_args(__doc__)
    results = run()
    emit(KEY, section("Query latency vs a no-op endpoint", report(results)), args.write)


if __name__ == "__main__":
    main()
