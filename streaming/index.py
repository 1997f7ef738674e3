"""A per-stream FAISS index over micro segments: one writer, concurrent readers, time filters.

FAISS indexes are not safe for an add racing a search (it can crash the process), so both take one
lock; a flat search over 100k vectors takes a few milliseconds, so readers barely wait. Segments are
added in time order, which lets a media-time filter become an id range (no post-filtering).
"""

from __future__ import annotations

import bisect
import threading

import faiss
import numpy as np

from .records import MicroSegment


def set_search_threads(n: int) -> None:
    """FAISS's OpenMP pool is per process; a stream actor shares its cores with others, so keep it
    small on purpose (measured: 1 thread beat 2 at 100k vectors on a busy 2-core machine)."""
    if n < 1:
        raise ValueError("n must be at least 1")
    faiss.omp_set_num_threads(n)


class SegmentIndex:
    def __init__(self, dim: int):
        if dim <= 0:
            raise ValueError("dim must be positive")
        self.dim = dim
        self._index = faiss.IndexFlatIP(dim)
        self._segments: list[MicroSegment] = []
        self._t0: list[float] = []
        self._t1: list[float] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._segments)

    def add(self, segments: list[MicroSegment], vectors: np.ndarray) -> None:
        if len(segments) != len(vectors):
            raise ValueError("one vector per segment")
        if not segments:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"vectors must have shape (n, {self.dim})")
        with self._lock:
            last = self._t0[-1] if self._t0 else float("-inf")
            if any(s.t0 < last for s in segments) or any(
                    b.t0 < a.t0 for a, b in zip(segments, segments[1:])):
                raise ValueError("segments must be added in time order")
            self._index.add(vectors)
            self._segments.extend(segments)
            self._t0.extend(s.t0 for s in segments)
            self._t1.extend(s.t1 for s in segments)

    def search(self, query: np.ndarray, k: int, start: float | None = None,
               end: float | None = None) -> list[tuple[MicroSegment, float]]:
        """Best ``k`` segments overlapping [start, end] (either bound optional), best first."""
        if k <= 0:
            raise ValueError("k must be positive")
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        if query.shape[1] != self.dim:
            raise ValueError(f"query must have {self.dim} dimensions")
        with self._lock:
            n = len(self._segments)
            lo = bisect.bisect_left(self._t1, start) if start is not None else 0
            hi = bisect.bisect_right(self._t0, end) if end is not None else n
            if hi <= lo:
                return []
            params = None
            if lo > 0 or hi < n:
                params = faiss.SearchParameters(sel=faiss.IDSelectorRange(lo, hi))
            scores, ids = self._index.search(query, min(k, hi - lo), params=params)
            return [(self._segments[i], float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    def segments(self, start: float | None = None, end: float | None = None) -> list[MicroSegment]:
        with self._lock:
            lo = bisect.bisect_left(self._t1, start) if start is not None else 0
            hi = bisect.bisect_right(self._t0, end) if end is not None else len(self._segments)
            return self._segments[lo:hi]
