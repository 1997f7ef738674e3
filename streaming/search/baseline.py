"""The single-level baseline most video RAG systems use: fixed 30 s chunks, one index, dense top-k.

It exists to measure what the hierarchy buys (``manta eval`` runs both in one harness). It sees the
same transcript and the same on-screen text as Manta (each chunk's words plus the text shown
during it) and uses the same embedder and answer model; only the structure differs: no levels, no
segment boundaries, no reranking, no context selection. A chunk is indexed once it is complete, and
the still-open last chunk is searchable too, as a live system would do.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from streaming.records import Evidence, MicroSegment, ShownText

CHUNK_S = 30.0


@dataclass(frozen=True, slots=True)
class Chunk:
    t0: float
    t1: float
    text: str


def chunk_text(segments: list[MicroSegment], shown: list[ShownText], t0: float, t1: float) -> str:
    """Words said in [t0, t1) in time order, then the text shown during it."""
    words = [w.text for s in segments for w in s.words if t0 <= w.start < t1]
    said = "".join(words).strip()
    on_screen = [it.text for it in shown if it.t0 < t1 and it.t1 >= t0]
    return " ".join([said, *on_screen]).strip()


class FixedChunks:
    """A stream's 30 s chunks and their vectors, extended as the stream grows."""

    def __init__(self, embed: Callable[[list[str]], np.ndarray], chunk_s: float = CHUNK_S):
        if chunk_s <= 0:
            raise ValueError("chunk_s must be positive")
        self.embed = embed
        self.chunk_s = chunk_s
        self.chunks: list[Chunk] = []  # complete chunks only
        self.vectors: list[np.ndarray] = []
        self._lock = threading.Lock()

    def update(self, segments: list[MicroSegment], shown: list[ShownText],
               committed: float) -> list[tuple[Chunk, np.ndarray]]:
        """Index the chunks completed up to ``committed``; returns every chunk with its vector,
        the open one last."""
        with self._lock:
            first = len(self.chunks)
            done = int(committed // self.chunk_s)
            fresh = [Chunk(i * self.chunk_s, (i + 1) * self.chunk_s,
                           chunk_text(segments, shown, i * self.chunk_s, (i + 1) * self.chunk_s))
                     for i in range(first, done)]
            tail_t0 = done * self.chunk_s
            tail = Chunk(tail_t0, committed, chunk_text(segments, shown, tail_t0, committed + 1e-6)) \
                if committed > tail_t0 else None
            texts = [c.text for c in fresh] + ([tail.text] if tail is not None else [])
            vecs = self.embed(texts) if texts else np.zeros((0, 1), np.float32)
            self.chunks += fresh
            self.vectors += [vecs[i] for i in range(len(fresh))]
            out = list(zip(self.chunks, self.vectors))
            if tail is not None:
                out.append((tail, vecs[len(fresh)]))
            return out

    def search(self, query: np.ndarray, k: int, segments: list[MicroSegment], shown: list[ShownText],
               committed: float, stream: str, start: float | None = None,
               end: float | None = None) -> list[Evidence]:
        """Top-``k`` chunks by cosine, as evidence (kind ``chunk``)."""
        if k < 1:
            raise ValueError("k must be at least 1")
        scored = []
        q = np.asarray(query, dtype=np.float32).ravel()
        for chunk, vec in self.update(segments, shown, committed):
            if not chunk.text or (start is not None and chunk.t1 < start) or (end is not None and chunk.t0 > end):
                continue
            scored.append(Evidence(stream, chunk.t0, chunk.t1, chunk.text, float(np.dot(q, vec)),
                                   "said", "chunk"))
        scored.sort(key=lambda e: (-e.score, e.start))
        return scored[:k]
