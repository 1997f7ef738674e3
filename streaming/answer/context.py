"""Choosing what the answer model reads, under a token budget: MANTA's greedy knapsack.

The best twelve candidates by relevance are often one moment found five times (a segment, its
repeat, the meso around it). Each step therefore takes the candidate with the most NEW value per
token: relevance, a little more for dense segments, less for resembling what is already chosen,
divided by what it costs, its line plus its meso summary the first time that summary appears (two
segments of one meso pay for it once). The best-ranked candidate always goes first when it fits at
all: a long but right answer must never lose to two cheap near-misses.

The prompt lists the chosen evidence by stream and in time order, so the model reads a story, not
a ranking.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from streaming.answer.extractive import SOURCE_NAMES, clock
from streaming.answer.rerank import Ranked, density_squash

DENSITY_BONUS = 0.2  # a segment of top density is worth up to 20 % more than a flat one
# Kinds answer.SOURCE_NAMES does not name, as a reader would call them.
_MORE_NAMES = {"meso": "Summary", "macro": "Summary", "caption": "Seen", "frame": "Seen"}
AGAIN_LISTED = 3  # repeats named on a line: enough to say "it came back", cheap in tokens


@dataclass(frozen=True, slots=True)
class ContextItem:
    ranked: Ranked
    tokens: int  # its line, plus its parent summary line when that is printed under it
    parent_included: bool


@dataclass(frozen=True, slots=True)
class Context:
    items: tuple[ContextItem, ...]  # in prompt order: by stream (best stream first), then time
    tokens: int  # what prompt_lines() costs in all
    budget: int
    dropped: int  # candidates given that are not in the context (budget, redundancy, relevance)

    def prompt_lines(self) -> list[str]:
        """Numbered evidence lines; a parent summary indented under the first of its segments."""
        lines = []
        for n, item in enumerate(self.items, 1):
            lines.append(evidence_line(item.ranked, n))
            if item.parent_included:
                lines.append(_parent_line(item.ranked))
        return lines


def evidence_line(r: Ranked, n: int) -> str:
    e = r.candidate.evidence
    name = SOURCE_NAMES.get(e.kind) or _MORE_NAMES.get(e.kind, e.kind)
    name += " (provisional, not final yet)" if e.provisional else ""
    text = f"[{n}] ({e.stream} {clock(e.start)}–{clock(e.end)}) {name}: “{' '.join(e.text.split())}”"
    if e.also:
        times = [clock(t0) for t0, _ in sorted(e.also)]
        more = f" and {len(times) - AGAIN_LISTED} more" if len(times) > AGAIN_LISTED else ""
        text += f", again at {', '.join(times[:AGAIN_LISTED])}{more}"
    return text


def _parent_line(r: Ranked) -> str:
    return f"    context: {' '.join(r.candidate.parent.split())}"


def _similarity(a: Ranked, b: Ranked) -> float:
    """Cosine of the embeddings when both have one, else the Jaccard overlap of their words."""
    va, vb = a.candidate.vector, b.candidate.vector
    if va is not None and vb is not None and len(va) == len(vb):
        na, nb = float(np.linalg.norm(va)), float(np.linalg.norm(vb))
        if na > 0 and nb > 0:
            return max(0.0, float(np.dot(va, vb)) / (na * nb))
    wa = set(re.findall(r"[0-9a-z']+", a.candidate.evidence.text.lower()))
    wb = set(re.findall(r"[0-9a-z']+", b.candidate.evidence.text.lower()))
    return len(wa & wb) / len(wa | wb) if wa | wb else 1.0


def _bonus(r: Ranked) -> float:
    return DENSITY_BONUS * density_squash(r.candidate.density)


def select_context(ranked: Sequence[Ranked], budget_tokens: int, count_tokens: Callable[[str], int],
                   redundancy: float = 0.5, min_relevance: float = 0.0, max_items: int = 12) -> Context:
    """The evidence the answer model reads: the most new value per token that fits the budget."""
    if isinstance(budget_tokens, bool) or not isinstance(budget_tokens, int) or budget_tokens < 0:
        raise ValueError(f"budget_tokens must be an integer >= 0, not {budget_tokens!r}")
    if not callable(count_tokens):
        raise ValueError("count_tokens must be a function of a string")
    if not math.isfinite(redundancy) or redundancy < 0:
        raise ValueError(f"redundancy must be a finite number >= 0, not {redundancy}")
    if not math.isfinite(min_relevance):
        raise ValueError(f"min_relevance must be finite, not {min_relevance}")
    if isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1:
        raise ValueError(f"max_items must be an integer >= 1, not {max_items!r}")
    ranked = list(ranked)
    if any(not isinstance(r, Ranked) for r in ranked):
        raise ValueError("ranked must hold Ranked records (streaming.answer.rerank)")

    def count(text: str) -> int:
        n = count_tokens(text)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"count_tokens must return an integer >= 0, not {n!r}")
        return int(n)

    pool = [r for r in ranked if r.relevance >= min_relevance]
    # Costs with the widest number a line can get; the exact prompt is checked at the end.
    line_cost = [count(evidence_line(r, max_items)) for r in pool]
    parent_cost = [count(_parent_line(r)) if r.candidate.parent.strip() else 0 for r in pool]
    chosen: list[tuple[int, bool]] = []  # (pool index, pays for its parent), in the order picked
    paid: set[tuple[str, str]] = set()  # (stream, parent summary) already in the context
    used = 0

    def cost(i: int) -> tuple[int, bool] | None:
        """Tokens to add pool[i], with its parent when that fits; None if it does not fit."""
        key = (pool[i].candidate.evidence.stream, pool[i].candidate.parent)
        if parent_cost[i] and key not in paid and used + line_cost[i] + parent_cost[i] <= budget_tokens:
            return line_cost[i] + parent_cost[i], True
        return (line_cost[i], False) if used + line_cost[i] <= budget_tokens else None

    def take(i: int, with_parent: bool, tokens: int) -> None:
        nonlocal used
        chosen.append((i, with_parent))
        used += tokens
        if with_parent:
            paid.add((pool[i].candidate.evidence.stream, pool[i].candidate.parent))

    if pool and (first := cost(0)) is not None:
        take(0, first[1], first[0])
    left = set(range(1, len(pool))) if chosen else set(range(len(pool)))
    while left and len(chosen) < max_items:
        best, best_ratio = None, 0.0
        for i in sorted(left):
            fit = cost(i)
            if fit is None:
                continue
            overlap = max((_similarity(pool[i], pool[j]) for j, _ in chosen), default=0.0)
            value = pool[i].relevance * (1.0 + _bonus(pool[i])) - redundancy * overlap
            ratio = value / max(fit[0], 1)
            if value > 0 and (best is None or ratio > best_ratio):
                best, best_ratio = (i, *fit), ratio
        if best is None:
            break  # nothing left fits or adds anything new
        left.discard(best[0])
        take(best[0], best[2], best[1])
    context = _assemble(pool, chosen, budget_tokens, count, len(ranked))
    while context.tokens > budget_tokens and chosen:  # a tokenizer that counts "[3]" unlike "[12]"
        chosen.pop()
        context = _assemble(pool, chosen, budget_tokens, count, len(ranked))
    return context


def _assemble(pool: list[Ranked], chosen: list[tuple[int, bool]], budget: int,
              count: Callable[[str], int], given: int) -> Context:
    """Prompt order (streams in the order of their best item, then time); each paid parent is
    printed under the earliest chosen segment that shares it."""
    stream_rank: dict[str, int] = {}
    for i in sorted(i for i, _ in chosen):  # pool is best first
        stream_rank.setdefault(pool[i].candidate.evidence.stream, len(stream_rank))
    order = sorted((i for i, _ in chosen), key=lambda i: (
        stream_rank[pool[i].candidate.evidence.stream], pool[i].candidate.evidence.start,
        pool[i].candidate.evidence.end, i))
    paid = {(pool[i].candidate.evidence.stream, pool[i].candidate.parent) for i, p in chosen if p}
    items = []
    for n, i in enumerate(order, 1):
        r = pool[i]
        key = (r.candidate.evidence.stream, r.candidate.parent)
        with_parent = key in paid
        paid.discard(key)
        tokens = count(evidence_line(r, n)) + (count(_parent_line(r)) if with_parent else 0)
        items.append(ContextItem(r, tokens, with_parent))
    return Context(tuple(items), sum(i.tokens for i in items), budget, given - len(items))
