"""A per-stream FAISS index over visual items whose spans may still grow.

On-screen text is searchable from the frame it was first read in, while it may stay on screen for
minutes: the span is updated in place (the vector never changes), so an item is never re-added.
Items arrive roughly, not strictly, in time order (a subtitle cue is complete only at its end), so
time filters select ids with numpy instead of the bisect the segment index uses. Items per stream
are few (one per distinct text, one label set per micro segment, one per sampled frame).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import faiss
import numpy as np

from streaming.memory.index import check_query


class TimedIndex:
    """Items with keys, spans and unit vectors; inner-product search with time and kind filters."""

    def __init__(self, dim: int):
        if dim <= 0:
            raise ValueError("dim must be positive")
        self.dim = dim
        self._index = faiss.IndexFlatIP(dim)
        self._rows: dict[int, int] = {}
        self._keys: list[int] = []
        self._items: list[Any] = []
        self._vectors: list[np.ndarray] = []
        self._t0: list[float] = []
        self._t1: list[float] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: int) -> bool:
        return key in self._rows

    def upsert(self, key: int, item: Any, t0: float, t1: float, vector: np.ndarray | None = None) -> None:
        """Add a new key (with its vector) or update an existing key's item and span."""
        if t1 < t0:
            raise ValueError(f"span ends before it starts: {t0}..{t1}")
        with self._lock:
            row = self._rows.get(key)
            if row is not None:
                self._items[row], self._t0[row], self._t1[row] = item, t0, t1
                return
            if vector is None:
                raise ValueError(f"a new item needs its vector (key {key})")
            vec = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
            if vec.shape[1] != self.dim:
                raise ValueError(f"vector must have {self.dim} dimensions")
            self._index.add(vec)
            self._rows[key] = len(self._items)
            self._keys.append(key)
            self._items.append(item)
            self._vectors.append(vec[0])
            self._t0.append(t0)
            self._t1.append(t1)

    def remove_before(self, t: float) -> int:
        """Retention: drop the items that ended before media time ``t``; returns how many."""
        with self._lock:
            keep = [r for r, t1 in enumerate(self._t1) if t1 >= t]
            gone = len(self._items) - len(keep)
            if not gone:
                return 0
            self._keys, self._items, self._vectors, self._t0, self._t1 = (
                [column[r] for r in keep]
                for column in (self._keys, self._items, self._vectors, self._t0, self._t1))
            self._rows = {key: row for row, key in enumerate(self._keys)}
            self._index = faiss.IndexFlatIP(self.dim)  # few items: rebuilding beats id bookkeeping
            if self._vectors:
                self._index.add(np.stack(self._vectors))
            return gone

    def _select(self, start: float | None, end: float | None,
                where: Callable[[Any], bool] | None) -> np.ndarray:
        ok = np.ones(len(self._items), dtype=bool)
        if start is not None:
            ok &= np.asarray(self._t1) >= start
        if end is not None:
            ok &= np.asarray(self._t0) <= end
        if where is not None:
            ok &= np.fromiter((where(it) for it in self._items), dtype=bool, count=len(self._items))
        return np.flatnonzero(ok)

    def search(self, query: np.ndarray, k: int, start: float | None = None, end: float | None = None,
               where: Callable[[Any], bool] | None = None) -> list[tuple[Any, float]]:
        """Best ``k`` items overlapping [start, end] that pass ``where``, best first."""
        query = check_query(query, k, self.dim)
        with self._lock:
            if not self._items:
                return []
            ids = self._select(start, end, where)
            if ids.size == 0:
                return []
            params = None
            if ids.size < len(self._items):
                params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(ids.astype(np.int64)))
            scores, rows = self._index.search(query, int(min(k, ids.size)), params=params)
            return [(self._items[r], float(s)) for r, s in zip(rows[0], scores[0]) if r >= 0]

    def items(self, start: float | None = None, end: float | None = None,
              where: Callable[[Any], bool] | None = None) -> list[Any]:
        """Items overlapping [start, end], in the order they were added."""
        with self._lock:
            return [self._items[r] for r in self._select(start, end, where)]

    def entries(self, start: float | None = None, end: float | None = None) -> list[tuple[int, Any]]:
        """(key, item) pairs overlapping [start, end]."""
        with self._lock:
            return [(self._keys[r], self._items[r]) for r in self._select(start, end, None)]

    def vectors(self, keys: list[int]) -> np.ndarray:
        with self._lock:
            rows = [self._rows[k] for k in keys if k in self._rows]
            if not rows:
                return np.zeros((0, self.dim), dtype=np.float32)
            return np.stack([self._vectors[r] for r in rows])
