"""Meso (≈30 s) and macro (≈180 s) levels, grown online as their children close, and dedup.

A level closes its open parent when it reaches ``target_s``; earlier — but not before ``min_s`` — when
a child starts at a boundary (a surprise peak or a shot cut); and never lets a parent pass ``max_s``.
So parents are ordered, never overlap, and cover exactly their children. The open parent is
searchable while it grows: "what happened in the last minute" has an answer before a meso closes.

Dedup merges a micro segment into a recent representative only when it says nothing new: cosine
≥ ``threshold`` AND every content word of it is already in the representative. A segment with a
word the representative lacks (another day, another name, another number) is never merged away.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from streaming.records import Parent

STOPWORDS = frozenset("a an the and or but of to in on at for with by from is are was were be been it "
                      "this that these those as so than then there here".split())


@dataclass(frozen=True, slots=True)
class Child:
    key: int  # micro seq or meso id
    t0: float
    t1: float
    text: str
    vector: np.ndarray | None
    density: float
    boundary: bool = False


def summarise(children: list[Child], budget_words: int) -> str:
    """The densest children's texts that fit ``budget_words``, in time order."""
    chosen, used = [], 0
    for c in sorted((c for c in children if c.text.strip()), key=lambda c: (-c.density, c.t0)):
        n = len(c.text.split())
        if used and used + n > budget_words:
            continue
        chosen.append(c)
        used += n
        if used >= budget_words:
            break
    return " … ".join(c.text.strip() for c in sorted(chosen, key=lambda c: c.t0))


def pooled(children: list[Child]) -> np.ndarray | None:
    """Density-weighted mean of the children's vectors, unit length (None without any vector)."""
    rows = [(c.vector, 1.0 + max(0.0, c.density)) for c in children if c.vector is not None]
    if not rows:
        return None
    v = np.average(np.stack([r for r, _ in rows]), axis=0, weights=[w for _, w in rows])
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 0 else None


@dataclass
class LevelBuilder:
    level: str
    target_s: float
    min_s: float
    max_s: float
    summary_words: int
    next_id: int = 0
    _children: list[Child] = field(default_factory=list)

    def __post_init__(self):
        if not 0 < self.min_s <= self.target_s <= self.max_s:
            raise ValueError(f"{self.level}: need 0 < min_s <= target_s <= max_s, got "
                             f"{self.min_s}, {self.target_s}, {self.max_s}")
        if self.summary_words < 1:
            raise ValueError("summary_words must be at least 1")

    def add(self, child: Child) -> list[tuple[Parent, np.ndarray | None]]:
        """Add the next child (in time order); returns the parents this closed (zero or one)."""
        if self._children and child.t0 < self._children[-1].t0:
            raise ValueError(f"{self.level}: children must arrive in time order")
        closed = []
        if self._children:
            start = self._children[0].t0
            if (child.boundary and child.t0 - start >= self.min_s) or child.t1 - start > self.max_s:
                closed.append(self._close())
        self._children.append(child)
        if child.t1 - self._children[0].t0 >= self.target_s:
            closed.append(self._close())
        return closed

    def open(self, extra: Child | None = None) -> tuple[Parent, np.ndarray | None] | None:
        """The parent still growing, as it stands now (with ``extra``: a child still growing too)."""
        kids = self._children + ([extra] if extra is not None else [])
        return self._parent(kids, closed=False) if kids else None

    def flush(self) -> list[tuple[Parent, np.ndarray | None]]:
        """Close what is open (the stream ended)."""
        return [self._close()] if self._children else []

    def _parent(self, cs: list[Child], closed: bool) -> tuple[Parent, np.ndarray | None]:
        parent = Parent(self.level, self.next_id, cs[0].t0, max(c.t1 for c in cs),
                        tuple(c.key for c in cs), summarise(cs, self.summary_words),
                        round(float(np.mean([c.density for c in cs])), 6), closed)
        return parent, pooled(cs)

    def _close(self) -> tuple[Parent, np.ndarray | None]:
        out = self._parent(self._children, closed=True)
        self._children = []
        self.next_id += 1
        return out

    def restore(self, children: list[Child], next_id: int) -> None:
        """Continue a stream: the open parent's children and the next id, from the store."""
        self._children = list(children)
        self.next_id = next_id


class Hierarchy:
    """micro → meso → macro for one stream. ``add`` returns every parent that closed."""

    def __init__(self, meso_s=(10.0, 30.0, 30.0), macro_s=(60.0, 180.0, 300.0),
                 meso_words: int = 60, macro_words: int = 150):
        self.meso = LevelBuilder("meso", meso_s[1], meso_s[0], meso_s[2], meso_words)
        self.macro = LevelBuilder("macro", macro_s[1], macro_s[0], macro_s[2], macro_words)
        self._meso_boundary: dict[int, bool] = {}

    def add(self, child: Child) -> list[tuple[Parent, np.ndarray | None]]:
        if not self.meso._children:
            self._meso_boundary[self.meso.next_id] = child.boundary
        closed = self.meso.add(child)
        if closed and self.meso._children == [child]:  # the child opened the next meso
            self._meso_boundary[self.meso.next_id] = child.boundary
        return self._up(closed)

    def flush(self) -> list[tuple[Parent, np.ndarray | None]]:
        return self._up(self.meso.flush()) + self.macro.flush()

    def _up(self, closed: list[tuple[Parent, np.ndarray | None]]) -> list[tuple[Parent, np.ndarray | None]]:
        """Closed mesos become children of the macro level (a meso that began at a boundary may
        close a macro early)."""
        for meso, vec in list(closed):
            boundary = self._meso_boundary.pop(meso.id, False)
            closed += self.macro.add(Child(meso.id, meso.t0, meso.t1, meso.summary, vec, meso.density,
                                           boundary))
        return closed

    def open(self) -> list[tuple[Parent, np.ndarray | None]]:
        """The open meso, and the open macro including that meso as it stands."""
        meso = self.meso.open()
        growing = None
        if meso is not None:
            m, vec = meso
            growing = Child(m.id, m.t0, m.t1, m.summary, vec, m.density)
        return [p for p in (meso, self.macro.open(growing)) if p is not None]


def content_words(text: str) -> frozenset[str]:
    return frozenset(w for w in re.findall(r"[0-9a-z']+", text.lower()) if w not in STOPWORDS)


class Deduper:
    """Recent representatives (key, words, vector); ``match`` finds the one a repeat merges into."""

    def __init__(self, threshold: float = 0.85, window: int = 256):
        if not 0 < threshold <= 1:
            raise ValueError("threshold must be within (0, 1]")
        if window < 1:
            raise ValueError("window must be at least 1")
        self.threshold = threshold
        self.window = window
        self._reps: deque[tuple[int, frozenset[str], np.ndarray]] = deque(maxlen=window)

    def match(self, text: str, vector: np.ndarray | None) -> int | None:
        """The representative this repeats, or None (then it becomes a representative itself)."""
        if vector is None:
            return None
        words = content_words(text)
        v = np.asarray(vector, dtype=np.float32)
        best, best_sim = None, self.threshold
        for key, rep_words, rep_vec in self._reps:
            sim = float(np.dot(rep_vec, v))
            # Nothing new: every content word already said by the representative.
            if sim >= best_sim and words and words <= rep_words:
                best, best_sim = key, sim
        return best

    def rehome(self, old: int, new: int) -> np.ndarray | None:
        """The representative ``old`` is gone (retention): repeats now merge into ``new``.
        Returns the old one's vector (None if it left the window)."""
        vector = next((v for k, _, v in self._reps if k == old), None)
        self._reps = deque((((new if k == old else k), w, v) for k, w, v in self._reps), maxlen=self.window)
        return vector

    def add(self, key: int, text: str, vector: np.ndarray | None) -> None:
        if vector is not None:
            self._reps.append((key, content_words(text), np.asarray(vector, dtype=np.float32)))
