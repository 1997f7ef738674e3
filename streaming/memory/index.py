"""A per-stream FAISS index over micro segments: one writer, concurrent readers, time filters.

FAISS indexes are not safe for an add racing a search (it can crash the process), so adds, removals
and searches take one lock; a search holds it for a few milliseconds, so readers barely wait.
Segments are added in time order, which lets a media-time filter become an id range (no
post-filtering): every segment gets a serial id (0, 1, 2, ... for the stream's life), and the
segments still held are the serials ``[base, base + len)``.

Small indexes are exact (``IndexFlatIP``; ids are row positions, i.e. ``serial - base``). Once an
index holds ``ivf_at`` segments it switches to ``IndexIVFFlat`` (inner product, ``nlist`` about
``4 * sqrt(n)``, ids are the serials), trained on a copy of the vectors outside the lock (in a
background thread by default) while searches and adds go on against the flat index; the new index
then catches up with the segments that arrived meanwhile and is swapped in under the lock. It is
retrained (``nlist`` grows 4x) when it has grown 16x since it was trained.

IVF keeps each inverted list sorted by id (ids only ever grow; retention trims each list's head
in place rather than FAISS's swap-with-last ``remove_ids``), so a time range is an
``IDSelectorRange(assume_sorted=True)``: each probed list is cut to the range by binary search. A
narrow range probes more lists (the same number of scanned vectors as an unfiltered search), and
one covering at most ``nprobe/nlist`` of the index probes all lists, i.e. is exact. IVFFlat
stores the vectors themselves, so scores are exact inner products either way (comparable across
streams when a question fans out and the results are merged by score).

With ``gpu=True`` and a GPU visible to faiss (faiss-gpu), a copy of the index is kept on the GPU(s)
and serves unfiltered searches; GPU indexes ignore ``IDSelector``s, so filtered searches, adds and
removals stay on the CPU index, which remains the one the copy is made from. Without a GPU
(faiss-cpu) the flag does nothing.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading

import faiss
import numpy as np

from streaming.memory.ivf_lists import list_ids, list_vectors, move_id, trim_ivf
from streaming.records import MicroSegment

log = logging.getLogger("manta.index")

IVF_AT = 15_000  # flat until this many segments (12.5 hours of one stream at ~3 s a segment)
NPROBE = 32  # lists probed by an unfiltered IVF search (bench/index_scale.py: recall@10 vs nprobe)
REGROW = 16  # retrain (4x the lists) once the index holds this many times what it was trained on
NITER = 10  # k-means iterations when training (FAISS's default for IVF)
TRAIN_PER_LIST = 64  # k-means samples at most this many vectors per list (FAISS's minimum is 39)
GPU_MAX_K = 2_048  # faiss-gpu's largest k; larger searches stay on the CPU
CHUNK = 32_768  # rows copied per lock hold when snapshotting, and the catch-up left for the swap


def nlist_for(n: int) -> int:
    """About 4 * sqrt(n) inverted lists, but never fewer than 39 training points per list (FAISS's
    own minimum for k-means; below it centroids are poor and FAISS warns)."""
    return max(1, min(round(4 * math.sqrt(n)), n // 39))


def set_search_threads(n: int) -> None:
    """FAISS's OpenMP pool is per process; a stream actor shares its cores with others, so keep it
    small on purpose (measured: 1 thread beat 2 at 100k vectors on a busy 2-core machine)."""
    if n < 1:
        raise ValueError("n must be at least 1")
    faiss.omp_set_num_threads(n)


def check_query(query: np.ndarray, k: int, dim: int) -> np.ndarray:
    """A search's query as a (1, dim) float32 row; ValueError for a bad k or width."""
    if k <= 0:
        raise ValueError("k must be positive")
    query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
    if query.shape[1] != dim:
        raise ValueError(f"query must have {dim} dimensions")
    return query


class SegmentIndex:
    def __init__(self, dim: int, *, ivf_at: int | None = IVF_AT, nprobe: int = NPROBE,
                 gpu: bool = False, background: bool = True):
        """``ivf_at``: switch to IVF at this many segments (None: stay exact). ``nprobe``: lists an
        unfiltered IVF search probes. ``gpu``: keep a search copy on the GPU when faiss sees one.
        ``background``: train IVF in a thread of its own (else in the ``add`` call that crosses
        the threshold; searches and other adds go on meanwhile either way)."""
        if dim <= 0:
            raise ValueError("dim must be positive")
        if ivf_at is not None and ivf_at < 1_000:
            raise ValueError("ivf_at must be at least 1000 (or None for an exact index)")
        if nprobe < 1:
            raise ValueError("nprobe must be at least 1")
        self.dim = dim
        self.ivf_at = ivf_at
        self.nprobe = nprobe
        self.background = background
        self._index: faiss.Index = faiss.IndexFlatIP(dim)
        self._nlist = 0  # 0 while flat
        self._trained_at = 0
        self._segments: list[MicroSegment] = []
        self._t0: list[float] = []
        self._t1: list[float] = []
        self._base = 0  # serial id of self._segments[0]
        self._lock = threading.Lock()
        self._rebuilding = False
        self._promoted: dict[int, np.ndarray] = {}  # serial -> vector set while a rebuild ran
        self._failed = False  # a rebuild raised: stay with the index in use
        self._thread: threading.Thread | None = None
        self._gpu_index = None
        self.gpu = bool(gpu) and faiss.get_num_gpus() > 0
        if self.gpu:
            self._mirror_locked()
        elif gpu:
            log.info("gpu=True but faiss sees no GPU (faiss-cpu or no device): searching on the CPU")

    def __len__(self) -> int:
        return len(self._segments)

    @property
    def end(self) -> float:
        """Where the newest indexed segment ends (its last word, if that runs past it); 0 when empty."""
        with self._lock:
            if not self._segments:
                return 0.0
            last = self._segments[-1]
            return max(last.t1, last.words[-1].end) if last.words else last.t1

    @property
    def kind(self) -> str:
        """The FAISS index in use, in index-factory notation: ``Flat`` or ``IVF<nlist>,Flat``."""
        return f"IVF{self._nlist},Flat" if self._nlist else "Flat"

    @property
    def nbytes(self) -> int:
        """Host memory of the FAISS index: vectors, ids and centroids (FAISS's vectors may hold some
        spare capacity beyond this after removals, which later adds reuse)."""
        with self._lock:
            n = self._index.ntotal
            if not self._nlist:
                return n * self.dim * 4
            return n * (self.dim * 4 + 8) + self._nlist * self.dim * 4

    def add_timeline(self, segments: list[MicroSegment], vectors) -> None:
        """Index segments in time order, keeping the timeline whole: a quiet one (vector None) or a
        merged repeat gets a zero vector, which search skips."""
        zero = np.zeros(self.dim, dtype=np.float32)
        self.add(segments, np.stack([zero if v is None or s.merged_into is not None else v
                                     for s, v in zip(segments, vectors)]))

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
            self._add_locked(self._index, self._gpu_index, vectors, self._base + len(self._segments))
            self._segments.extend(segments)
            self._t0.extend(s.t0 for s in segments)
            self._t1.extend(s.t1 for s in segments)
            start = self._rebuild_due_locked()
        if start:
            self._start_rebuild()

    def remove_before(self, t: float) -> int:
        """Retention: drop the segments that end before media time ``t``; returns how many."""
        with self._lock:
            m = bisect.bisect_left(self._t1, t)
            if not m:
                return 0
            if self._nlist:
                trim_ivf(self._index, self._base + m)
            else:
                self._index.remove_ids(faiss.IDSelectorRange(0, m))
            del self._segments[:m], self._t0[:m], self._t1[:m]
            self._base += m
            if self.gpu:
                self._mirror_locked()
            return m

    def promote(self, segment: MicroSegment, vector: np.ndarray) -> bool:
        """Give a held segment its own vector: a merged repeat (indexed as zeros) whose
        representative retention dropped now stands for itself. False if it is not held."""
        vec = check_query(vector, 1, self.dim)
        with self._lock:
            i = self._find_locked(segment)
            if i is None:
                return False
            self._segments[i] = segment
            self._set_vector_locked(self._index, self._base + i, vec)
            if self._rebuilding:  # the new index may have copied the old vector: set it there too
                self._promoted[self._base + i] = vec
            if self.gpu:
                self._mirror_locked()
            return True

    def update(self, segment: MicroSegment) -> bool:
        """Replace a held segment's record (same seq and times), not its vector."""
        with self._lock:
            i = self._find_locked(segment)
            if i is not None:
                self._segments[i] = segment
            return i is not None

    def _find_locked(self, segment: MicroSegment) -> int | None:
        i = bisect.bisect_left(self._t0, segment.t0)
        while i < len(self._segments) and self._t0[i] == segment.t0:
            if self._segments[i].seq == segment.seq:
                return i
            i += 1
        return None

    def _set_vector_locked(self, index: faiss.Index, serial: int, vec: np.ndarray) -> None:
        if isinstance(index, faiss.IndexIVF):
            move_id(index, serial, vec)
        else:
            n = index.ntotal
            faiss.rev_swig_ptr(index.get_xb(), n * self.dim).reshape(n, self.dim)[serial - self._base] = vec[0]

    def search(self, query: np.ndarray, k: int, start: float | None = None,
               end: float | None = None) -> list[tuple[MicroSegment, float]]:
        """Best ``k`` segments overlapping [start, end] (either bound optional), best first."""
        query = check_query(query, k, self.dim)
        with self._lock:
            n = len(self._segments)
            lo = bisect.bisect_left(self._t1, start) if start is not None else 0
            hi = bisect.bisect_right(self._t0, end) if end is not None else n
            if hi <= lo:
                return []
            k = min(k, hi - lo)
            off = self._base if self._nlist else 0  # FAISS id of self._segments[0]
            if self._gpu_index is not None and lo == 0 and hi == n and k <= GPU_MAX_K:
                scores, ids = self._gpu_index.search(query, k)
            elif not self._nlist:
                params = None
                if lo > 0 or hi < n:
                    params = faiss.SearchParameters(sel=faiss.IDSelectorRange(lo, hi))
                scores, ids = self._index.search(query, k, params=params)
            else:
                scores, ids = self._search_ivf(query, k, off + lo, off + hi, hi - lo < n)
            return [(self._segments[i - off], float(s)) for i, s in zip(ids[0], scores[0])
                    if i >= 0 and 0 <= i - off < n]

    def segments(self, start: float | None = None, end: float | None = None) -> list[MicroSegment]:
        with self._lock:
            lo = bisect.bisect_left(self._t1, start) if start is not None else 0
            hi = bisect.bisect_right(self._t0, end) if end is not None else len(self._segments)
            return self._segments[lo:hi]

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background switch to IVF (or retraining) to finish; False on timeout."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    # -- internals (callers hold self._lock unless the name says otherwise) ------------------------

    def _search_ivf(self, query: np.ndarray, k: int, lo: int, hi: int, filtered: bool):
        """IVF search over ids [lo, hi). A range holding a fraction f of the index probes
        nprobe / f lists (so about as many vectors are scanned as unfiltered), and at least enough
        lists to expect 4k candidates; if fewer than k come back, every list is probed (exact)."""
        nlist, n = self._nlist, self._index.ntotal
        want = max(self.nprobe * n / (hi - lo), nlist * 4 * k / (hi - lo))
        nprobe = min(nlist, max(self.nprobe, math.ceil(want)))
        sel = faiss.IDSelectorRange(lo, hi, True) if filtered else None  # lists are sorted by id
        while True:
            params = faiss.SearchParametersIVF(sel=sel, nprobe=nprobe) if sel is not None else \
                faiss.SearchParametersIVF(nprobe=nprobe)
            scores, ids = self._index.search(query, k, params=params)
            if nprobe == nlist or ids[0, -1] >= 0:
                return scores, ids
            nprobe = nlist

    @staticmethod
    def _add_locked(index, gpu_index, vectors: np.ndarray, serial0: int) -> None:
        if isinstance(index, faiss.IndexIVF):
            ids = np.arange(serial0, serial0 + len(vectors), dtype=np.int64)
            index.add_with_ids(vectors, ids)
            if gpu_index is not None:
                gpu_index.add_with_ids(vectors, ids)
        else:
            index.add(vectors)
            if gpu_index is not None:
                gpu_index.add(vectors)

    def _export_locked(self, a: int, b: int, out: np.ndarray) -> None:
        """Copy the vectors of serials [a, b) (all held: base <= a) into ``out`` (b - a rows)."""
        if not self._nlist:
            n = self._index.ntotal
            rows = faiss.rev_swig_ptr(self._index.get_xb(), n * self.dim).reshape(n, self.dim)
            out[:] = rows[a - self._base:b - self._base]
            return
        for lst in range(self._nlist):
            ids = list_ids(self._index, lst)
            i0, i1 = np.searchsorted(ids, (a, b))
            if i1 > i0:
                out[ids[i0:i1] - a] = list_vectors(self._index, lst)[i0:i1]

    def _blocks(self, a: int, b: int):
        """Yield (first serial, vectors) for serials [a, b), copied CHUNK rows per lock hold (the
        lock is not held between blocks). Rows dropped by retention meanwhile are skipped."""
        for c in range(a, b, CHUNK):
            with self._lock:
                lo, hi = max(c, self._base), min(c + CHUNK, b)
                if lo >= hi:
                    continue
                out = np.empty((hi - lo, self.dim), dtype=np.float32)
                self._export_locked(lo, hi, out)
            yield lo, out

    def _rebuild_due_locked(self) -> bool:
        if self._rebuilding or self._failed:
            return False
        n = len(self._segments)
        due = (self.ivf_at is not None and n >= self.ivf_at) if not self._nlist else \
            n >= REGROW * self._trained_at and nlist_for(n) > self._nlist
        self._rebuilding = due
        return due

    def _start_rebuild(self) -> None:
        if not self.background:
            self._rebuild(None)
            return
        threads = faiss.omp_get_max_threads()  # OpenMP settings are per thread: pass them on
        self._thread = threading.Thread(target=self._rebuild, args=(threads,), daemon=True,
                                        name="segment-index-ivf")
        self._thread.start()

    def _rebuild(self, threads: int | None) -> None:
        """Train a new IVF index on a sample of the vectors, fill it, swap it in (all but the swap
        not holding the lock; at most CHUNK rows are copied per lock hold)."""
        try:
            if threads is not None:
                faiss.omp_set_num_threads(threads)
            with self._lock:
                a, b = self._base, self._base + len(self._segments)
            nlist = nlist_for(b - a)
            keep = min(1.0, TRAIN_PER_LIST * nlist / (b - a))
            rng = np.random.default_rng(b)
            sample = [v if keep == 1.0 else v[rng.random(len(v)) < keep] for _, v in self._blocks(a, b)]
            sample = np.concatenate(sample) if sample else np.zeros((0, self.dim), np.float32)
            if len(sample) < 39 * nlist:  # retention emptied it meanwhile: try on a later add
                return
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dim), self.dim, nlist,
                                       faiss.METRIC_INNER_PRODUCT)
            index.cp.niter = NITER
            index.cp.max_points_per_centroid = TRAIN_PER_LIST
            index.train(sample)
            del sample
            while True:  # fill, then catch up with adds made meanwhile; the last few under the lock
                for first, vectors in self._blocks(a, b):
                    index.add_with_ids(vectors, np.arange(first, first + len(vectors), dtype=np.int64))
                with self._lock:
                    a, b = b, self._base + len(self._segments)
                    if b - a > CHUNK:
                        continue
                    if b > max(a, self._base):
                        first = max(a, self._base)
                        vectors = np.empty((b - first, self.dim), dtype=np.float32)
                        self._export_locked(first, b, vectors)
                        index.add_with_ids(vectors, np.arange(first, b, dtype=np.int64))
                    trim_ivf(index, self._base)  # what retention dropped meanwhile
                    for serial, vec in self._promoted.items():
                        if serial >= self._base:
                            move_id(index, serial, vec)
                    self._index, self._nlist = index, nlist
                    self._trained_at = len(self._segments)
                    if self.gpu:
                        self._mirror_locked()
                    break
            log.info("segment index switched to %s at %d segments", self.kind, self._trained_at)
        except Exception:  # noqa: BLE001 - keep serving from the current index
            log.exception("building the IVF segment index failed; staying with %s", self.kind)
            self._failed = True
        finally:
            with self._lock:
                self._rebuilding = False
                self._promoted.clear()

    def _mirror_locked(self) -> None:
        """(Re)make the GPU copy of the CPU index."""
        try:
            self._gpu_index = faiss.index_cpu_to_all_gpus(self._index)
            if self._nlist:
                faiss.GpuParameterSpace().set_index_parameter(self._gpu_index, "nprobe", self.nprobe)
        except Exception:  # noqa: BLE001 - e.g. out of GPU memory: the CPU index still answers
            log.exception("copying the segment index to the GPU failed; searching on the CPU")
            self._gpu_index = None
            self.gpu = False
