"""One stream's levels above micro segments: density per segment, dedup, meso and macro parents
with their FAISS indexes (open parents included), all derived from committed micro segments.

Parents are not stored: they are a pure function of the committed segments (their densities and
dedup links are stored with them), so a restarted stream rebuilds exactly the same levels by
replaying its segments, and nothing on disk can disagree with them.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np

from streaming.memory.density import DensityScorer, DensityWeights
from streaming.memory.hierarchy import Child, Deduper, Hierarchy
from streaming.memory.item_index import TimedIndex
from streaming.records import MicroSegment, Parent, Promotion, RetentionCut
from streaming.settings import Settings

LEVELS = ("meso", "macro")


def child_text(seg: MicroSegment) -> str:
    """What a summary may quote from a segment: its words, else the text it showed."""
    return seg.text or " ".join(dict.fromkeys(s.text for s in seg.shown))


class StreamLevels:
    def __init__(self, settings: Settings, dim: int):
        s = settings
        self.scorer = DensityScorer(DensityWeights(s.density_novelty, s.density_entropy, s.density_coherence,
                                                   s.density_redundancy))
        self.deduper = Deduper(s.dedup_threshold)
        self.hierarchy = Hierarchy((s.meso_min_s, s.meso_target_s, s.meso_max_s),
                                   (s.macro_min_s, s.macro_target_s, s.macro_max_s))
        self.dim = dim
        self.indexes = {level: TimedIndex(dim) for level in LEVELS}
        self._occurrences: dict[int, list[tuple[int, float, float]]] = {}  # rep -> (seq, t0, t1)
        self.received = self.kept = 0
        self._lock = threading.Lock()  # the worker grows the open parents while queries read them

    def score(self, seg: MicroSegment, vector: np.ndarray | None) -> MicroSegment:
        """Density, and whether this segment repeats an earlier one (then it is not indexed itself)."""
        density = self.scorer.score(seg, vector).value
        rep = self.deduper.match(seg.text, vector) if seg.words else None
        if seg.words and rep is None:  # at once: the next segment of the same batch may repeat it
            self.deduper.add(seg.seq, seg.text, vector)
        return replace(seg, density=density, merged_into=rep)

    def add(self, segments: list[MicroSegment], vectors: list[np.ndarray | None],
            restoring: bool = False) -> None:
        """Committed segments (already scored), in time order."""
        for seg, vec in zip(segments, vectors):
            if seg.words:
                self.received += 1
                if seg.merged_into is None:
                    self.kept += 1
                    if restoring:
                        self.deduper.add(seg.seq, seg.text, vec)
                else:
                    self._occurrences.setdefault(seg.merged_into, []).append((seg.seq, seg.t0, seg.t1))
            child = Child(seg.seq, seg.t0, seg.t1, child_text(seg), vec,
                          seg.density if seg.density is not None else 0.0, seg.boundary)
            with self._lock:
                closed = self.hierarchy.add(child)
            self._index(closed)

    def restore(self, segments: list[MicroSegment], vectors: list[np.ndarray | None],
                first_ids: tuple[int, int] = (0, 0)) -> None:
        """Replay stored segments; ``first_ids``: the meso and macro ids retention left first."""
        self.hierarchy.meso.next_id, self.hierarchy.macro.next_id = first_ids
        self.scorer.prime(vectors[-8:])
        self.add(segments, vectors, restoring=True)

    def flush(self) -> None:
        with self._lock:
            closed = self.hierarchy.flush()
        self._index(closed)

    def _open(self) -> list[tuple[Parent, np.ndarray | None]]:
        with self._lock:
            return self.hierarchy.open()

    def _index(self, closed: list[tuple[Parent, np.ndarray | None]]) -> None:
        for parent, vec in closed:
            vector = vec if vec is not None else np.zeros(self.dim, dtype=np.float32)
            self.indexes[parent.level].upsert(parent.id, parent, parent.t0, parent.t1, vector)

    # -- retention -------------------------------------------------------------------------------
    def cut_before(self, t: float) -> RetentionCut | None:
        """Where retention may cut to drop what ended before ``t``: the start of the first macro
        that does not (whole macros go, so a replay of what is left rebuilds the same parents)."""
        closed = self.indexes["macro"].items()
        first = next((m for m in closed if m.t1 > t), None)
        if first is None:
            first = next((p for p, _ in self._open() if p.level == "macro"), None)
        if first is None or first.id == 0:
            return None
        mesos = {m.id: m for m in self.indexes["meso"].items()}
        mesos.update({p.id: p for p, _ in self._open() if p.level == "meso"})
        meso = mesos.get(first.children[0]) if first.children else None
        if meso is None:
            return None
        return RetentionCut(meso.children[0], meso.t0, meso.id, first.id)

    def remove_before(self, cut: RetentionCut) -> list[Promotion]:
        """Drop parents before the cut; a repeat whose representative goes becomes one itself."""
        for level in LEVELS:
            self.indexes[level].remove_before(cut.t)
        promoted = []
        for rep in [r for r in self._occurrences if r < cut.seq]:
            left = [o for o in self._occurrences.pop(rep) if o[0] >= cut.seq]
            if not left:
                continue
            (seq, t0, _), others = left[0], tuple(left[1:])
            if others:
                self._occurrences[seq] = list(others)
            promoted.append(Promotion(seq, t0, others, self.deduper.rehome(rep, seq)))
            self.kept += 1
        return promoted

    # -- queries ---------------------------------------------------------------------------------
    def occurrences(self, seq: int) -> list[tuple[float, float]]:
        """Other spans where the same thing was said again (merged repeats)."""
        return [(t0, t1) for _, t0, t1 in self._occurrences.get(seq, [])]

    def parents(self, level: str, start: float | None = None, end: float | None = None) -> list[Parent]:
        """Closed parents overlapping [start, end], then the open one."""
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}")
        out = self.indexes[level].items(start, end)
        for parent, _ in self._open():
            if parent.level == level and _overlaps(parent, start, end):
                out.append(parent)
        return out

    def search(self, query: np.ndarray, k: int, level: str, start: float | None = None,
               end: float | None = None) -> list[tuple[Parent, float]]:
        """Best ``k`` parents of a level, the still-open one competing with the closed ones."""
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}")
        found = [(p, s) for p, s in self.indexes[level].search(query, k, start, end)]
        for parent, vec in self._open():
            if parent.level == level and vec is not None and _overlaps(parent, start, end):
                found.append((parent, float(np.dot(np.asarray(query, dtype=np.float32).ravel(), vec))))
        found.sort(key=lambda x: -x[1])
        return found[:k]


def _overlaps(p: Parent, start: float | None, end: float | None) -> bool:
    return (start is None or p.t1 >= start) and (end is None or p.t0 <= end)
