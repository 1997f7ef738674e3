"""One question, from request to grounded answer: plan → fan out to the streams → rerank → choose
the context under the answer model's token budget → generate → cite.

The steps run as one async generator of events (``evidence``, ``token``, ``done``) so that the
JSON answer, the SSE stream of ``/v1/query`` and the OpenAI-compatible endpoint share one path.
What is decided at each step lives in ``streaming.answer.decide``; this module carries it out:
the streams, the models, the tokens, the timings.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace

import numpy as np
import ray
from fastapi.concurrency import run_in_threadpool

from streaming.answer import grounding as g
from streaming.answer import decide
from streaming.answer.rerank import Candidate, Ranked, rerank
from streaming.search.retrieve import RetrievalPlan
from streaming.settings import Settings

from actors.directory import StreamDirectory, wait_ref

log = logging.getLogger("manta.query")


class UnknownStreams(KeyError):
    pass


@dataclass(frozen=True, slots=True)
class Ask:
    """A question as the engine takes it, from any endpoint."""

    question: str
    streams: list[str] | None = None
    start: float | None = None
    end: float | None = None
    wall_start: float | None = None
    wall_end: float | None = None
    k: int | None = None
    modality: str | None = None
    retrieval: str = "manta"  # or "baseline": fixed 30 s chunks, one level, dense top-k
    generate: bool = True


def _ms(t: float) -> float:
    return round((time.perf_counter() - t) * 1000, 1)


class QueryEngine:
    def __init__(self, settings: Settings, streams: StreamDirectory,
                 embed: Callable[[str], Awaitable[np.ndarray]], answerer=None, cross=None):
        self.settings = settings
        self.streams = streams
        self.embed = embed
        self.answerer = answerer
        self.cross = cross  # manta_models.answering.reranker.CrossEncoder when rerank_model is set
        self._model_info: dict | None = None

    async def model_info(self) -> dict:
        if self.answerer is None:
            return {"name": None, "context_tokens": 0, "error": "answer_model is off"}
        if self._model_info is None:
            self._model_info = await self.answerer.info.remote()
        return self._model_info

    async def stream_ids(self, streams: list[str] | None) -> list[str]:
        """The streams asked for (all when none are named); UnknownStreams names the missing."""
        known = await self.streams.ids()
        # A stream named twice is asked once (each name would otherwise cost a call to its actor).
        wanted = list(dict.fromkeys(streams)) if streams else known
        missing = [s for s in wanted if s not in known]
        if missing:
            raise UnknownStreams(f"unknown stream(s): {', '.join(missing)}")
        return wanted

    async def fan_out(self, wanted: list[str], call) -> tuple[list, list[str]]:
        """``call(handle)`` on every stream at once: what came back, and a warning for each stream
        that failed or timed out (the others still answer)."""
        handles = [await self.streams.resolve(s) for s in wanted]
        results = await asyncio.gather(
            *(asyncio.wait_for(wait_ref(call(h)), self.settings.query_timeout_s) for h in handles),
            return_exceptions=True)
        found, warnings = [], []
        for stream_id, result in zip(wanted, results):
            if isinstance(result, BaseException):
                warnings.append(self._unanswered(stream_id, result))
            else:
                found.append(result)
        return found, warnings

    def _unanswered(self, stream_id: str, exc: BaseException) -> str:
        """The warning a client gets: what happened, never Ray's text (tracebacks, pids, paths)."""
        if isinstance(exc, asyncio.TimeoutError):
            return f"stream {stream_id} did not answer within {self.settings.query_timeout_s:g} s"
        log.warning("stream %s did not answer: %s: %s", stream_id, type(exc).__name__, exc)
        if isinstance(exc, ray.exceptions.RayActorError):
            return f"stream {stream_id} did not answer: its actor is gone"
        return f"stream {stream_id} did not answer: {type(exc).__name__}"

    async def run(self, ask: Ask) -> AsyncIterator[tuple[str, object]]:
        """Events: ("evidence", dict) once, ("token", str) while generating, ("done", dict)."""
        t_start = time.perf_counter()
        wanted = await self.stream_ids(ask.streams)
        k = ask.k or self.settings.max_evidence
        timings = {"retrieval_ms": 0.0, "rerank_ms": 0.0, "selection_ms": 0.0, "generation_ms": 0.0}
        t = time.perf_counter()
        if ask.retrieval == "baseline":
            ranking = await self._baseline(ask, wanted)
        else:
            ranking = await self._manta(ask, wanted, k, timings)
        timings["retrieval_ms"] = _ms(t) - timings["rerank_ms"]
        warnings = list(ranking.warnings)
        t = time.perf_counter()
        info = await self.model_info()
        sel = decide.select(ranking, ask.question, k, self.settings.answer_context_tokens)
        timings["selection_ms"] = _ms(t)
        yield "evidence", {"evidence": [e.to_dict() for e in sel.evidence],
                           "context": [e.to_dict() for e in sel.chosen], "citations": sel.citations()}
        generated = ""
        t = time.perf_counter()
        # model_info() gives an error when there is no answer model too ("answer_model is off").
        decision = decide.answer_without_model(ask.question, ranking, sel, ask.generate,
                                               info.get("error") or None)
        if decision is None:
            messages = g.build_messages(ask.question, sel.lines, list(sel.background))
            pieces, linker = [], g.StreamLinker(list(sel.chosen))
            try:
                gen = self.answerer.options(stream=True).stream.remote(
                    messages, self.settings.answer_max_tokens)
                async for piece in gen:
                    cut = g.first_sentence_end("".join(pieces) + piece)
                    if cut is not None:  # one sentence was asked for: stop paying for more
                        piece = piece[:max(0, cut - len("".join(pieces)))]
                    pieces.append(piece)
                    shown = linker.push(piece)
                    if shown:
                        yield "token", shown
                    if cut is not None:
                        gen.cancel()
                        break
            except Exception as exc:  # noqa: BLE001 - the evidence still answers without a sentence
                # Its text may name internal URLs or paths (an OpenAI-compatible answer_model): logged only.
                log.warning("answer model failed: %s: %s", type(exc).__name__, exc)
                warnings.append(f"answer model failed ({type(exc).__name__}); the API's log says why")
            tail = linker.flush()
            if tail:
                yield "token", tail
            generated = "".join(pieces).strip()
            decision = decide.answer_after_generation(generated, linker.declined, sel)
        warnings += decision.warnings
        timings["generation_ms"] = _ms(t)
        timings["total_ms"] = _ms(t_start)
        result = {"answer": decision.answer, "found": decision.found, "generated": generated,
                  "citations": decision.citations(),
                  "evidence": [e.to_dict() for e in sel.evidence],
                  "context": [e.to_dict() for e in sel.chosen],
                  "warnings": warnings, "timings": timings, "model": info.get("name"),
                  "retrieval": ask.retrieval, "modalities": list(ranking.modalities),
                  # What the not-found gate decided on (the best candidate's two scores); None for a
                  # listing, which is not gated: for calibrating the gate (bench/not_found.py).
                  "gate": ({"dense": round(sel.best.dense, 4), "lexical": round(sel.best.lexical, 4)}
                           if sel.best is not None and not ranking.listing else None)}
        log.info("answered", extra={"fields": {"event": "query", "found": decision.found,
                                               "streams": len(wanted), "retrieval": ask.retrieval,
                                               **timings}})
        yield "done", result

    async def answer(self, ask: Ask) -> dict:
        result: dict = {}
        async for kind, payload in self.run(ask):
            if kind == "done":
                result = payload
        return result

    # -- retrieval ---------------------------------------------------------------------------------
    async def _manta(self, ask: Ask, wanted: list[str], k: int, timings: dict) -> decide.Ranking:
        q = decide.plan_question(ask.question, ask.modality)
        vector = await self.embed(q.query_text) if q.query_text is not None else None
        anchor = await self.embed(q.anchor_text) if q.anchor_text is not None else None
        plan = RetrievalPlan(vector, k, q.kinds, ask.start, ask.end, ask.wall_start, ask.wall_end,
                             q.time_words, anchor, q.content, q.overview, q.language, q.speakers, q.names)
        retrieved, warnings = await self.fan_out(wanted, lambda h: h.retrieve.remote(plan))
        t = time.perf_counter()
        ranked = [] if q.listing else await self._rerank(
            q.content, [c for r in retrieved for c in r.candidates], q.time_words.order)
        timings["rerank_ms"] = _ms(t)
        if decide.list_instead(q, ranked):
            q, plan = replace(q, listing=True), replace(plan, query=None)
            retrieved, more = await self.fan_out(wanted, lambda h: h.retrieve.remote(plan))
            warnings += more
        if q.listing:
            ranked = decide.rank_listing(retrieved, k, q.time_words)
        notes = [n for r in retrieved for n in r.notes]
        return decide.Ranking(tuple(ranked), q.listing, q.when, False, q.modalities,
                              tuple(warnings + notes))

    async def _rerank(self, query: str, candidates: list[Candidate], order: str | None) -> list[Ranked]:
        # In a thread, the cross-encoder and BM25 both: on the event loop they would stall every
        # other request this replica is serving.
        return await run_in_threadpool(self._rerank_sync, query, candidates, order)

    def _rerank_sync(self, query: str, candidates: list[Candidate], order: str | None) -> list[Ranked]:
        scores = None
        if self.cross is not None and candidates:
            scores = self.cross.score(query, [c.evidence.text for c in candidates])
        return rerank(query, candidates, order=order, cross_scores=scores)

    async def _baseline(self, ask: Ask, wanted: list[str]) -> decide.Ranking:
        vector = await self.embed(" ".join(ask.question.split()))
        found, warnings = await self.fan_out(
            wanted, lambda h: h.baseline.remote(vector, decide.BASELINE_K, ask.start, ask.end))
        return decide.rank_baseline(ask.question, found, warnings)
