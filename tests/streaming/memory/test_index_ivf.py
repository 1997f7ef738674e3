"""SegmentIndex past its IVF threshold: the switch, time filters, recall, retention, threads, GPU.

Synthetic unit vectors with cluster structure (uniform random vectors in 384 dimensions have no
neighbours worth the name, so no IVF can find them), plus planted exact matches.
"""

from __future__ import annotations

import threading
import time

import faiss
import numpy as np
import pytest

from streaming.memory import index as index_module
from streaming.memory.index import NPROBE, SegmentIndex, nlist_for
from streaming.memory.ivf_lists import list_ids
from streaming.records import MicroSegment

from tests.support.helpers import run_threads

DIM = 384


def clustered(n: int, seed: int, centers: int = 300, spread: float = 0.6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = np.random.default_rng(12345).standard_normal((centers, DIM)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    x = c[rng.integers(0, centers, n)] + rng.standard_normal((n, DIM), dtype=np.float32) * (spread / np.sqrt(DIM))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def segs(lo: int, hi: int) -> list[MicroSegment]:
    """Segment i spans [3i, 3i + 2.5] media seconds."""
    return [MicroSegment("s", i, 3.0 * i, 3.0 * i + 2.5, ()) for i in range(lo, hi)]


def overlaps(seg: MicroSegment, start, end) -> bool:
    return (start is None or seg.t1 >= start) and (end is None or seg.t0 <= end)


def fill(index: SegmentIndex, vectors: np.ndarray, lo: int = 0, batch: int = 1000) -> None:
    for a in range(lo, len(vectors), batch):
        b = min(a + batch, len(vectors))
        index.add(segs(a, b), vectors[a:b])


def exact(vectors: np.ndarray, q: np.ndarray, k: int, lo: int = 0, hi: int | None = None) -> list[int]:
    return exact_many(vectors, q[None], k, lo, hi)[0]


def exact_many(vectors: np.ndarray, queries: np.ndarray, k: int, lo: int = 0,
               hi: int | None = None) -> list[list[int]]:
    hi = len(vectors) if hi is None else hi
    scores = queries @ vectors[lo:hi].T
    top = np.argpartition(-scores, min(k, hi - lo) - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable")
    return (lo + np.take_along_axis(top, order, 1)).tolist()


def lists_sorted(index: SegmentIndex) -> bool:
    ivf = index._index
    return all(np.all(np.diff(list_ids(ivf, lst)) > 0) for lst in range(ivf.nlist))


N = 12_000
AT = 8_000


@pytest.fixture(scope="module", autouse=True)
def one_faiss_thread():
    """As in a stream actor (and faster here: 2 OpenMP threads spin on a busy 2-core machine)."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    x = clustered(N, 0)
    planted = [17, 4_321, 7_999, 8_000, 11_111]
    rng = np.random.default_rng(7)
    for i in planted:  # far from every cluster: only an exact match scores near 1
        v = rng.standard_normal(DIM).astype(np.float32)
        x[i] = v / np.linalg.norm(v)
    return x


@pytest.fixture(scope="module")
def ivf(data) -> SegmentIndex:
    index = SegmentIndex(DIM, ivf_at=AT, background=False)
    fill(index, data)
    assert index.kind == f"IVF{nlist_for(AT)},Flat"
    return index


def test_switch_happens_at_the_threshold(data) -> None:
    index = SegmentIndex(DIM, ivf_at=AT, background=False)
    fill(index, data[:AT - 1])
    assert index.kind == "Flat" and index.nbytes == (AT - 1) * DIM * 4
    index.add(segs(AT - 1, AT), data[AT - 1:AT])  # the add that reaches it trains, in this call
    nlist = nlist_for(AT)
    assert index.kind == f"IVF{nlist},Flat" and len(index) == AT
    assert index.nbytes == AT * (DIM * 4 + 8) + nlist * DIM * 4
    assert lists_sorted(index)


def test_background_switch_keeps_answering(data) -> None:
    index = SegmentIndex(DIM, ivf_at=AT)  # background=True: add returns at once
    fill(index, data[:AT])
    q = data[17]
    assert index.search(q, 1)[0][0].seq == 17  # flat or IVF, whichever is in place right now
    assert index.wait(30)
    assert index.kind.startswith("IVF")
    fill(index, data, lo=AT)
    assert len(index) == N and index._index.ntotal == N
    assert [s.seq for s, _ in index.search(data[11_111], 1)] == [11_111]


@pytest.fixture(scope="module")
def flat(data) -> SegmentIndex:
    index = SegmentIndex(DIM, ivf_at=None)
    fill(index, data)
    return index


@pytest.mark.parametrize("seq", [17, 4_321, 7_999, 8_000, 11_111])
def test_planted_matches_agree_before_and_after_the_switch(data, flat, ivf, seq) -> None:
    noisy = data[seq] + np.random.default_rng(seq).standard_normal(DIM).astype(np.float32) * 0.01
    before, after = flat.search(noisy, 5), ivf.search(noisy, 5)
    assert before[0][0].seq == after[0][0].seq == seq
    assert after[0][1] == pytest.approx(before[0][1], abs=1e-5) and after[0][1] > 0.98


@pytest.mark.parametrize("start, end", [
    (None, 300.0), (30_000.0, None), (3_000.0, 3_030.0), (7.5, 8.4), (8.6, 8.9), (2.5, 3.0),
    (35_990.0, 50_000.0), (-5.0, -1.0), (40_000.0, 50_000.0), (20.0, 10.0), (1_000.0, 19_000.0),
])
def test_time_filters_on_ivf(data, ivf, start, end) -> None:
    """Only overlapping segments; and a narrow window is searched exactly (all lists probed)."""
    q = clustered(1, 99)[0]
    hits = ivf.search(q, 50, start=start, end=end)
    inside = [s.seq for s in segs(0, N) if overlaps(s, start, end)]
    assert all(overlaps(s, start, end) for s, _ in hits)
    assert [s.seq for s in ivf.segments(start, end)] == inside
    assert len(hits) == min(50, len(inside))
    scores = [score for _, score in hits]
    assert scores == sorted(scores, reverse=True)
    for seg, score in hits:
        assert score == pytest.approx(float(data[seg.seq] @ q), abs=1e-5)
    if inside and len(inside) * ivf._nlist <= N * NPROBE:  # narrow: exhaustive over the window
        assert [s.seq for s, _ in hits] == exact(data, q, 50, inside[0], inside[-1] + 1)


def test_k_larger_than_the_window_returns_all_of_it(ivf) -> None:
    hits = ivf.search(clustered(1, 5)[0], 5_000, start=3_000.0, end=6_000.0)
    assert sorted(s.seq for s, _ in hits) == list(range(1_000, 2_001))


def test_recall_at_10_vs_flat(data, ivf) -> None:
    queries = clustered(200, 42)
    truth = exact_many(data, queries, 10)
    recall = np.mean([len({s.seq for s, _ in ivf.search(q, 10)} & set(t)) / 10
                      for q, t in zip(queries, truth)])
    assert recall >= 0.95, recall
    # A filtered search (a third of the stream) probes more lists: at least as good.
    truth = exact_many(data, queries, 10, 3_000, 7_001)
    recall_f = np.mean([len({s.seq for s, _ in ivf.search(q, 10, start=9_000.0, end=21_000.0)}
                            & set(t)) / 10 for q, t in zip(queries, truth)])
    assert recall_f >= 0.95, recall_f


@pytest.mark.parametrize("ivf_at", [None, AT])
def test_remove_before_drops_earlier_segments_only(data, ivf_at) -> None:
    index = SegmentIndex(DIM, ivf_at=ivf_at, background=False)
    fill(index, data)
    before = index.nbytes
    assert index.remove_before(-1.0) == 0
    assert index.remove_before(3.0 * 5_000 + 2.0) == 5_000  # 4999 ends at 14999.5 < 15002
    assert index.remove_before(3.0 * 5_000 + 2.0) == 0
    assert len(index) == N - 5_000 and index.nbytes < before
    assert [s.seq for s in index.segments()] == list(range(5_000, N))
    assert index.search(data[4_321], 1)[0][0].seq != 4_321
    for seq in (7_999, 8_000, 11_111):
        assert index.search(data[seq], 1)[0][0].seq == seq
    q = clustered(1, 3)[0]
    assert all(s.seq >= 5_000 for s, _ in index.search(q, 100))
    hits = index.search(q, 10, start=0.0, end=3.0 * 5_100)
    assert [s.seq for s, _ in hits] == exact(data, q, 10, 5_000, 5_101)
    if ivf_at:
        assert lists_sorted(index)
    # Adding after a removal keeps ids straight.
    extra = clustered(500, 11)
    index.add(segs(N, N + 500), extra)
    assert index.search(extra[123], 1)[0][0].seq == N + 123
    assert index.remove_before(1e9) == len(extra) + N - 5_000 and len(index) == 0
    assert index.search(q, 5) == [] and index.nbytes <= nlist_for(AT) * DIM * 4


@pytest.mark.parametrize("ivf_at", [None, AT])
def test_a_promoted_repeat_is_found_by_its_own_vector(data, ivf_at) -> None:
    """A merged repeat is indexed as zeros; when retention drops its representative it gets its own
    vector in place (flat row, or moved between IVF lists in id order) and search finds it."""
    from dataclasses import replace

    vectors = data.copy()
    vectors[9_500] = 0.0  # merged into 9_000
    index = SegmentIndex(DIM, ivf_at=ivf_at, background=False)
    fill(index, vectors)
    index.remove_before(3.0 * 9_200)
    assert index.search(data[9_500], 1)[0][0].seq != 9_500
    seg = replace(index.segments(3.0 * 9_500, 3.0 * 9_500 + 1)[0], merged_into=None)
    assert seg.seq == 9_500 and index.promote(seg, data[9_500])
    hit, score = index.search(data[9_500], 1)[0]
    assert hit.seq == 9_500 and hit.merged_into is None and score == pytest.approx(1.0, abs=1e-5)
    assert index.search(data[9_500], 1, start=3.0 * 9_400, end=3.0 * 9_600)[0][0].seq == 9_500
    assert not index.promote(replace(seg, seq=1, t0=3.0), data[1])  # retention dropped it
    if ivf_at:
        assert lists_sorted(index)
    assert index.remove_before(3.0 * 9_501) == 9_501 - 9_200 and index.search(data[9_500], 1)[0][0].seq != 9_500


def test_retention_before_the_switch_keeps_serial_ids(data) -> None:
    index = SegmentIndex(DIM, ivf_at=4_000, background=False)
    fill(index, data[:3_000])
    index.remove_before(3.0 * 1_000)  # segments 0-999 go; flat ids shift, serials do not
    fill(index, data[:6_000], lo=3_000)  # 5000 held: switches at 4000 held, i.e. serial 5000
    assert index.kind.startswith("IVF") and len(index) == 5_000
    assert lists_sorted(index)
    for seq in (1_000, 4_321, 5_999):
        assert index.search(data[seq], 1)[0][0].seq == seq
    assert {s.seq for s, _ in index.search(data[17], 50)}.isdisjoint(range(1_000))


def test_concurrent_add_search_switch_and_retention(monkeypatch) -> None:
    """A writer crosses the threshold (background training), a janitor applies retention, and
    readers search with time filters: no crash, no result outside its filter, exact scores."""
    monkeypatch.setattr(index_module, "CHUNK", 300)  # many lock holds while copying and catching up
    total, batch = 16_000, 250
    vectors = clustered(total, 5)
    segments = segs(0, total)
    index = SegmentIndex(DIM, ivf_at=4_000)
    errors: list[BaseException] = []
    done = threading.Event()
    counts = {"search": 0, "while_ivf": 0, "removed": 0}

    def writer():
        try:
            for lo in range(0, total, batch):
                index.add(segments[lo:lo + batch], vectors[lo:lo + batch])
                time.sleep(0.001)
                if lo == total // 2:  # by now the switch started (at 4000): let it land, go on
                    assert index.wait(30)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            done.set()

    def janitor():
        try:
            while not done.is_set():
                held = index.segments()
                if len(held) > 6_000:  # keep the newest ~6000 (retention by media time)
                    counts["removed"] += index.remove_before(held[-6_000].t0)
                time.sleep(0.01)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def reader(n: int):
        r = np.random.default_rng(100 + n)
        try:
            while not done.is_set() or counts["search"] < 40:
                q = clustered(1, int(r.integers(1 << 30)))[0]
                start = float(r.uniform(0, 3 * total)) if r.random() < 0.7 else None
                end = (start or 0.0) + float(r.uniform(0, 9_000)) if r.random() < 0.7 else None
                ivf_now = index.kind != "Flat"
                hits = index.search(q, 10, start=start, end=end)
                scores = [s for _, s in hits]
                assert scores == sorted(scores, reverse=True)
                for seg, score in hits:
                    assert overlaps(seg, start, end)
                    assert score == pytest.approx(float(vectors[seg.seq] @ q), abs=1e-4)
                counts["search"] += 1
                counts["while_ivf"] += ivf_now
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=janitor)]
    threads += [threading.Thread(target=reader, args=(n,)) for n in range(3)]
    run_threads(threads, errors)
    assert index.wait(30)
    assert index.kind.startswith("IVF") and counts["while_ivf"] > 0 and counts["removed"] > 0
    held = index.segments()
    assert len(index) == len(held) == total - counts["removed"] and index._index.ntotal == len(held)
    assert [s.seq for s in held] == list(range(counts["removed"], total))
    assert lists_sorted(index)
    assert index.search(vectors[total - 7], 1)[0][0].seq == total - 7


def test_validation() -> None:
    with pytest.raises(ValueError, match="dim"):
        SegmentIndex(0)
    with pytest.raises(ValueError, match="ivf_at"):
        SegmentIndex(DIM, ivf_at=999)
    with pytest.raises(ValueError, match="nprobe"):
        SegmentIndex(DIM, nprobe=0)
    index = SegmentIndex(DIM, ivf_at=None)
    assert index.remove_before(10.0) == 0 and index.nbytes == 0 and index.wait() is True
    assert nlist_for(1_000) == 25 and nlist_for(15_000) == 384 and nlist_for(100_000) == 1265


def test_gpu_flag_is_a_no_op_without_a_gpu(data) -> None:
    if faiss.get_num_gpus() > 0:
        pytest.skip("a GPU is visible: the flag is not a no-op here")
    index = SegmentIndex(DIM, ivf_at=AT, gpu=True, background=False)
    assert index.gpu is False
    fill(index, data[:AT + 100])
    assert index.kind.startswith("IVF") and index._gpu_index is None
    assert index.search(data[4_321], 1)[0][0].seq == 4_321


class FakeGpuIndex:
    """Stands in for a faiss-gpu index: a CPU clone that, like GPU indexes, ignores IDSelectors."""

    searches = 0

    def __init__(self, index):
        self.index = faiss.clone_index(index)

    def add(self, x):
        self.index.add(x)

    def add_with_ids(self, x, ids):
        self.index.add_with_ids(x, ids)

    def search(self, x, k, params=None):
        FakeGpuIndex.searches += 1
        return self.index.search(x, k)


def test_gpu_copy_serves_unfiltered_searches_only(data, monkeypatch) -> None:
    class Space:
        def set_index_parameter(self, index, name, value):
            faiss.extract_index_ivf(index.index).nprobe = value

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", FakeGpuIndex, raising=False)
    monkeypatch.setattr(faiss, "GpuParameterSpace", Space, raising=False)
    index = SegmentIndex(DIM, ivf_at=AT, gpu=True, background=False)
    assert index.gpu is True
    fill(index, data)
    assert index.kind.startswith("IVF") and index._gpu_index.index.ntotal == N
    FakeGpuIndex.searches = 0
    assert index.search(data[11_111], 1)[0][0].seq == 11_111
    assert FakeGpuIndex.searches == 1
    hits = index.search(data[11_111], 10, start=0.0, end=3_000.0)
    assert FakeGpuIndex.searches == 1 and all(s.t0 <= 3_000.0 for s, _ in hits)
    index.remove_before(3.0 * 6_000)
    assert index._gpu_index.index.ntotal == N - 6_000
    assert index.search(data[11_111], 1)[0][0].seq == 11_111 and FakeGpuIndex.searches == 2
    assert all(s.seq >= 6_000 for s, _ in index.search(data[4_321], 20))
