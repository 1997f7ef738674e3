"""One question, from request to grounded answer: plan → fan out to the streams → rerank → choose
the context under the answer model's token budget → generate → cite.

The steps run as one async generator of events (``evidence``, ``token``, ``done``) so that the
JSON answer, the SSE stream of ``/v1/query`` and the OpenAI-compatible endpoint share one path.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace

import numpy as np
from fastapi.concurrency import run_in_threadpool

from streaming.answer import grounding as g
from streaming.answer.extractive import extractive_answer, quote
from streaming.answer.context import evidence_line, select_context
from streaming.question.intent import parse_question
from streaming.records import Evidence
from streaming.answer.rerank import Candidate, Ranked, rerank
from streaming.search.retrieve import RetrievalPlan
from streaming.settings import Settings
from streaming.question.timewords import parse_time_words

from actors.directory import StreamDirectory, wait_ref

log = logging.getLogger("manta.query")

BASELINE_K = 3  # chunks the baseline gives its answer model (30 s each: ~300 tokens)
CONTEXT_MIN_RELEVANCE = 0.7  # of the best: weaker evidence only distracts a small answer model


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


def approx_tokens(text: str) -> int:
    # Chosen before the model sees it; English runs ~4 characters a token for these tokenizers,
    # and 3.5 keeps the estimate on the safe side of the budget.
    return max(1, math.ceil(len(text) / 3.5))


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

    async def targets(self, ask: Ask) -> list[str]:
        known = await self.streams.ids()
        wanted = ask.streams if ask.streams else known
        missing = [s for s in wanted if s not in known]
        if missing:
            raise UnknownStreams(f"unknown stream(s): {', '.join(missing)}")
        return wanted

    async def fan_out(self, wanted: list[str], call) -> tuple[list, list[str]]:
        handles = [await self.streams.resolve(s) for s in wanted]
        results = await asyncio.gather(
            *(asyncio.wait_for(wait_ref(call(h)), self.settings.query_timeout_s) for h in handles),
            return_exceptions=True)
        found, warnings = [], []
        for stream_id, result in zip(wanted, results):
            if isinstance(result, BaseException):
                warnings.append(f"stream {stream_id} did not answer: {type(result).__name__}")
            else:
                found.append(result)
        return found, warnings

    async def run(self, ask: Ask) -> AsyncIterator[tuple[str, object]]:
        """Events: ("evidence", dict) once, ("token", str) while generating, ("done", dict)."""
        t_start = time.perf_counter()
        wanted = await self.targets(ask)
        k = ask.k or self.settings.max_evidence
        timings = {"retrieval_ms": 0.0, "rerank_ms": 0.0, "selection_ms": 0.0, "generation_ms": 0.0}
        t = time.perf_counter()
        if ask.retrieval == "baseline":
            ranked, warnings, notes, listing, when = await self._baseline(ask, wanted)
            modalities = ("said", "shown")
        else:
            ranked, warnings, notes, listing, when, modalities, timings["rerank_ms"] = \
                await self._manta(ask, wanted, k)
        timings["retrieval_ms"] = _ms(t) - timings["rerank_ms"]
        warnings += notes
        t = time.perf_counter()
        best = ranked[0] if ranked else None
        if best is None:
            found = False
        elif ask.retrieval == "baseline":  # dense only: the weaker bar, and its model decides
            found = best.dense >= g.WEAK_DENSE
        else:
            found = listing or g.retrieval_found(best.dense, best.lexical)
        info = await self.model_info()
        budget = self.settings.answer_context_tokens
        background: list[str] = []
        if ask.retrieval == "baseline":
            picked = ranked[:BASELINE_K]
        elif found and not listing:
            context = select_context(ranked, budget, approx_tokens,
                                     min_relevance=CONTEXT_MIN_RELEVANCE * best.relevance)
            # Best first in the prompt: a small model leans on what it reads first.
            picked = sorted((it.ranked for it in context.items), key=lambda r: -r.relevance)
            background = list(dict.fromkeys(it.ranked.candidate.parent for it in context.items
                                            if it.parent_included and it.ranked.candidate.parent))
        else:
            picked = []
        chosen = [r.candidate.evidence for r in picked]
        lines = [evidence_line(r, n) for n, r in enumerate(picked, 1)]
        timings["selection_ms"] = _ms(t)
        main = best.candidate.evidence if best else None
        span = self._main_span(best, ask.question, when and ask.retrieval != "baseline") if best else None
        # Best first by the reranked relevance, and shown with it: a list sorted by one number and
        # labelled with another would look wrong. (``dense`` stays what "found" is decided on.)
        evidence = [replace(r.candidate.evidence, score=round(r.relevance, 4)) for r in ranked[:k]]
        yield "evidence", {"evidence": [e.to_dict() for e in evidence],
                           "context": [e.to_dict() for e in chosen],
                           "citations": [span.to_dict()] if span and found else []}
        generated = ""
        t = time.perf_counter()
        if not found:
            answer = g.NOT_FOUND_ANSWER
        elif listing:
            answer = extractive_answer(ask.question, evidence, listing=True).answer
        elif when:
            answer = g.when_answer(main, span)
        elif not ask.generate or self.answerer is None or info.get("error"):
            if ask.generate and info.get("error"):
                warnings.append(f"no answer model: {info['error']}")
            answer = quote(main)
        else:
            messages = g.build_messages(ask.question, lines, background)
            pieces, linker = [], g.StreamLinker(chosen)
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
                warnings.append(f"answer model failed: {type(exc).__name__}: {exc}")
            tail = linker.flush()
            if tail:
                yield "token", tail
            generated = "".join(pieces).strip()
            if generated and linker.declined:
                if best.dense < g.STRONG_DENSE:
                    found, answer, span = False, g.NOT_FOUND_ANSWER, None
                else:  # the retrieval is sure: show the quote rather than nothing
                    answer = quote(main)
            else:
                text, _ = g.link_citations(generated, chosen)
                used = g.answer_span(best.candidate.words, generated) if best.candidate.words else None
                if used is not None:
                    span = g.Citation(main.stream, *used)
                answer = g.compose(text, main, span)
        timings["generation_ms"] = _ms(t)
        timings["total_ms"] = _ms(t_start)
        result = {"answer": answer, "found": found, "generated": generated,
                  "citations": [span.to_dict()] if span and found else [],
                  "evidence": [e.to_dict() for e in evidence], "context": [e.to_dict() for e in chosen],
                  "warnings": warnings, "timings": timings, "model": info.get("name"),
                  "retrieval": ask.retrieval, "modalities": list(modalities)}
        log.info("answered", extra={"fields": {"event": "query", "found": found, "streams": len(wanted),
                                               "retrieval": ask.retrieval, **timings}})
        yield "done", result

    async def answer(self, ask: Ask) -> dict:
        result: dict = {}
        async for kind, payload in self.run(ask):
            if kind == "done":
                result = payload
        return result

    # -- retrieval ---------------------------------------------------------------------------------
    async def _manta(self, ask: Ask, wanted: list[str], k: int):
        time_words = parse_time_words(ask.question)
        content = time_words.content or ask.question
        intent = parse_question(content, ask.modality)
        # Nothing left to match ("what is said in the last 10 seconds?"): list the window.
        listing = intent.listing or not intent.content
        when = g.is_when(ask.question)
        vector = anchor = None
        if not listing:
            # Speech questions embed whole (measured best); visual ones only their content words,
            # so "when is an aircraft shown" matches the label "airliner", not the word "shown".
            text = content if "said" in intent.modalities else intent.content
            vector = await self.embed(" ".join(text.split()))
        if time_words.after or time_words.before:
            anchor = await self.embed(time_words.after or time_words.before)
        plan = RetrievalPlan(vector, k, frozenset(intent.kinds), ask.start, ask.end, ask.wall_start,
                             ask.wall_end, time_words, anchor, intent.content or content)
        retrieved, warnings = await self.fan_out(wanted, lambda h: h.retrieve.remote(plan))
        t = time.perf_counter()
        ranked = [] if listing else await self._rerank(intent.content or content,
                                                       [c for r in retrieved for c in r.candidates],
                                                       time_words.order)
        rerank_ms = _ms(t)
        if not listing and intent.modalities == ("shown",) and not self._found(ranked):
            # "What book title is written on the screen?": such words describe the text, they are
            # not in it. What was shown in the window answers better than "not found". (Searching
            # speech first was tried: on the eval set it answered two shown questions with speech.)
            listing, plan = True, replace(plan, query=None)
            retrieved, more = await self.fan_out(wanted, lambda h: h.retrieve.remote(plan))
            warnings += more
        notes = [n for r in retrieved for n in r.notes]
        if listing:
            ordered = sorted((c for r in retrieved for c in r.candidates),
                             key=lambda c: (c.evidence.start, c.evidence.stream))
            ranked = [Ranked(c, c.evidence.score, c.evidence.score, 0.0) for c in ordered][:k]
        return ranked, warnings, notes, listing, when, intent.modalities, rerank_ms

    async def _rerank(self, query: str, candidates: list[Candidate], order: str | None) -> list[Ranked]:
        scores = None
        if self.cross is not None and candidates:
            scores = await run_in_threadpool(self.cross.score, query, [c.evidence.text for c in candidates])
        return rerank(query, candidates, order=order, cross_scores=scores)

    @staticmethod
    def _found(ranked: list[Ranked]) -> bool:
        return bool(ranked) and g.retrieval_found(ranked[0].dense, ranked[0].lexical)

    async def _baseline(self, ask: Ask, wanted: list[str]):
        vector = await self.embed(" ".join(ask.question.split()))
        found, warnings = await self.fan_out(
            wanted, lambda h: h.baseline.remote(vector, BASELINE_K, ask.start, ask.end))
        evidence = sorted((e for r in found for e in r), key=lambda e: (-e.score, e.stream, e.start))
        # One level, dense only: its relevance is the cosine, and no word is matched lexically.
        ranked = [Ranked(Candidate(e, level="direct"), e.score, e.score, 0.0) for e in evidence]
        return ranked, warnings, [], False, g.is_when(ask.question)

    @staticmethod
    def _main_span(best: Ranked, question: str, refine: bool) -> g.Citation:
        e: Evidence = best.candidate.evidence
        if refine and best.candidate.words:
            span = g.refine_span(best.candidate.words, question)
            if span is not None:
                return g.Citation(e.stream, *span)
        return g.Citation(e.stream, e.start, e.end)
