"""MicroSegmenter on word lists built here, and SegmentIndex on real MiniLM vectors and real FAISS."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manta_models.perception.embed import TextEmbedder
from streaming.memory.index import SegmentIndex
from streaming.records import MicroSegment, Word
from streaming.ingest.segmenter import MicroSegmenter

from tests.support.helpers import run_threads


def words_from(spec: list[tuple[str, float, float]]) -> list[Word]:
    return [Word(" " + text, start, end) for text, start, end in spec]


def even_words(texts: list[str], start: float = 0.0, step: float = 0.4, dur: float = 0.35) -> list[Word]:
    return [Word(" " + t, start + i * step, start + i * step + dur) for i, t in enumerate(texts)]


def check_partition(segments: list[MicroSegment], words: list[Word], stream_id: str = "s") -> None:
    """Every word in exactly one segment, in order; segment bounds and numbering consistent."""
    assert [w for s in segments for w in s.words] == words
    assert [s.seq for s in segments] == list(range(len(segments)))
    for s in segments:
        assert s.stream_id == stream_id and s.words
        assert (s.t0, s.t1) == (s.words[0].start, s.words[-1].end)
    for a, b in zip(segments, segments[1:]):
        assert a.t1 <= b.t0


# -- MicroSegmenter --------------------------------------------------------------------------------

def test_segmenter_rejects_non_positive_target() -> None:
    with pytest.raises(ValueError):
        MicroSegmenter("s", target_s=0)


def test_sentence_end_closes_segment_at_once() -> None:
    seg = MicroSegmenter("s", target_s=3.0)
    words = even_words(["the", "ferry", "leaves", "at", "seven."]) + even_words(["it", "is"], start=2.2)
    out = seg.push(words, committed_until=words[-1].end)
    assert [s.text for s in out] == ["the ferry leaves at seven."]
    assert seg.pending_start == pytest.approx(2.2)
    rest = seg.flush()
    assert [s.text for s in rest] == ["it is"] and rest[0].seq == 1
    assert seg.flush() == [] and seg.pending_start is None


def test_very_short_sentence_waits_for_more_words() -> None:
    """'Yes.' alone (0.35 s, under 0.4 x target) is no useful segment: it joins what follows."""
    seg = MicroSegmenter("s", target_s=3.0)
    out = seg.push(even_words(["Yes.", "we", "sailed", "north", "at", "dawn."]), committed_until=0.0)
    assert [s.text for s in out] == ["Yes. we sailed north at dawn."]


def test_clause_end_closes_only_after_target() -> None:
    seg = MicroSegmenter("s", target_s=3.0)
    early = even_words(["well,", "then"])  # comma at 0.35 s: too early to cut
    late = even_words(["we", "walked", "along", "the", "river", "bank,", "and", "then"], start=0.8)
    out = seg.push(early + late, committed_until=0.0)
    assert [s.text for s in out] == ["well, then we walked along the river bank,"]
    assert out[0].t1 - out[0].t0 >= 3.0


def test_pause_closes_segment() -> None:
    seg = MicroSegmenter("s", target_s=3.0, pause_s=0.8)
    first = even_words(["good", "morning"])
    second = even_words(["weather", "now"], start=first[-1].end + 0.8)
    out = seg.push(first + second, committed_until=0.0)
    assert [s.text for s in out] == ["good morning"]
    assert seg.pending_start == pytest.approx(second[0].start)


def test_committed_silence_releases_short_utterance() -> None:
    seg = MicroSegmenter("s", target_s=3.0, pause_s=0.8)
    words = even_words(["hello", "there"])
    end = words[-1].end
    assert seg.push(words, committed_until=end + 0.3) == []  # might still continue
    assert seg.push([], committed_until=end + 0.5) == []
    out = seg.push([], committed_until=end + 0.8)  # silence confirmed: searchable now
    assert [s.text for s in out] == ["hello there"]
    assert seg.pending_start is None


def test_long_unpunctuated_run_stays_under_max() -> None:
    seg = MicroSegmenter("s", target_s=3.0)  # max_s = 6
    words = even_words([f"w{i}" for i in range(60)], step=0.3, dur=0.25)  # 18 s, no pauses
    out = seg.push(words, committed_until=0.0) + seg.flush()
    check_partition(out, words)
    assert len(out) >= 3
    for s in out:
        assert s.t1 - s.t0 <= 6.0


def test_overflow_cuts_at_the_largest_pause() -> None:
    seg = MicroSegmenter("s", target_s=3.0, pause_s=0.8)
    a = even_words([f"a{i}" for i in range(7)], step=0.4, dur=0.35)  # ends at 2.75
    b = even_words([f"b{i}" for i in range(12)], start=a[-1].end + 0.6, step=0.4, dur=0.35)
    out = seg.push(a + b, committed_until=0.0)
    assert out, "a 7.5 s run must be cut before it ends"
    assert out[0].words == tuple(a)  # the 0.6 s pause, not the 6 s mark


def test_overflow_cuts_before_a_stretched_word() -> None:
    """Whisper hides a pause inside a word by stretching it: that is the place to cut."""
    seg = MicroSegmenter("s", target_s=3.0)
    a = even_words([f"a{i}" for i in range(6)], step=0.4, dur=0.35)  # ends at 2.35
    stretched = Word(" so", a[-1].end + 0.05, a[-1].end + 1.6)
    b = even_words([f"b{i}" for i in range(8)], start=stretched.end + 0.05)
    words = a + [stretched] + b
    out = seg.push(words, committed_until=0.0) + seg.flush()
    check_partition(out, words)
    assert out[0].words == tuple(a)
    assert out[1].words[0] == stretched


def test_single_long_word_becomes_its_own_segment() -> None:
    seg = MicroSegmenter("s", target_s=1.0)  # max_s = 2
    words = [Word(" mmmmmmmm", 0.0, 3.5), Word(" ok", 3.6, 3.8)]
    out = seg.push(words, committed_until=0.0) + seg.flush()
    check_partition(out, words)
    assert out[0].words == (words[0],)


def test_punctuated_word_does_not_stretch_segment_past_max() -> None:
    """The module promises: a segment that would run past max_s is cut at an earlier point.

    Twelve plain words (0-5.95 s) then one ending in '.' (6.0-6.45 s): max_s is 6.0 s, so the
    sentence end must not pull the whole 6.45 s run into one segment.
    """
    seg = MicroSegmenter("s", target_s=3.0)  # max_s = 6
    words = even_words([f"w{i}" for i in range(12)], step=0.5, dur=0.4) + [Word(" end.", 6.0, 6.45)]
    out = seg.push(words, committed_until=0.0) + seg.flush()
    check_partition(out, words)
    for s in out:
        assert s.t1 - s.t0 <= seg.max, (s.t0, s.t1, s.text)


TOKENS = ["the", "ship", "sailed", "north,", "and", "then;", "it", "stopped.", "why?", "yes!", "so"]


@st.composite
def word_streams(draw):
    n = draw(st.integers(1, 80))
    t = draw(st.floats(0, 100))
    words = []
    for _ in range(n):
        t += draw(st.sampled_from([0.0, 0.02, 0.1, 0.3, 0.7, 0.8, 1.5]))  # gaps incl. pauses
        dur = draw(st.sampled_from([0.1, 0.25, 0.4, 0.9, 2.0]))
        words.append(Word(" " + draw(st.sampled_from(TOKENS)), t, t + dur))
        t += dur
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=6)))
    target = draw(st.sampled_from([1.0, 2.0, 3.0, 5.0]))
    return words, cuts, target


@settings(max_examples=150, deadline=None)
@given(word_streams())
def test_every_word_lands_in_exactly_one_segment_in_order(data) -> None:
    words, cuts, target = data
    seg = MicroSegmenter("s", target_s=target, pause_s=0.8)
    out: list[MicroSegment] = []
    for lo, hi in zip([0] + cuts, cuts + [len(words)]):
        batch = words[lo:hi]
        committed = batch[-1].end if batch else 0.0
        out += seg.push(batch, committed_until=committed)
        # Nothing before the pending words is still held back.
        if seg.pending_start is not None and out:
            assert out[-1].t1 <= seg.pending_start
    out += seg.flush()
    check_partition(out, words)
    for s in out:
        gaps = [b.start - a.end for a, b in zip(s.words, s.words[1:])]
        assert all(g < 0.8 for g in gaps)  # a pause always separates segments
        if len(s.words) > 1:
            # At most one word past max_s (see test_punctuated_word_does_not_stretch_segment_past_max).
            assert s.words[-2].end - s.t0 <= seg.max + 1e-9


# -- SegmentIndex with real MiniLM -----------------------------------------------------------------

SENTENCES = [
    "The harbour ferry leaves at seven every morning.",
    "Our volcano expedition found warm springs near the summit.",
    "Please remember to water the tomato plants on Friday.",
    "The orchestra rehearsed the symphony until midnight.",
    "A strong wind knocked over the wooden fence in the garden.",
    "The library will close early because of the holiday.",
    "Engineers tested the new bridge with heavy trucks.",
    "My grandmother baked bread with honey and walnuts.",
    "The football match was cancelled due to heavy rain.",
    "Scientists discovered a new species of frog in the jungle.",
    "The train to the mountains was delayed by snow.",
    "She painted the kitchen a bright shade of yellow.",
    "The stock market fell sharply after the announcement.",
    "Astronauts repaired the telescope during a spacewalk.",
    "The bakery on the corner sells croissants and espresso.",
    "Firefighters rescued a cat stuck on the roof.",
    "The museum opened a new exhibit about ancient Egypt.",
    "He forgot his umbrella on the bus this afternoon.",
    "The chess tournament lasted for three long days.",
    "Farmers are worried about the drought this summer.",
    "The hospital hired twenty new nurses last month.",
    "A submarine explored the wreck at the bottom of the sea.",
    "The children built a sandcastle on the beach.",
    "Our flight to Tokyo was rerouted through Seoul.",
    "The violinist broke a string in the middle of the concert.",
    "Police closed the highway after a truck overturned.",
    "The new smartphone has a longer battery life.",
    "Bees are essential for pollinating fruit trees.",
    "The mayor announced a plan to plant more trees downtown.",
    "A penguin colony was spotted on the remote island.",
]


@pytest.fixture(scope="module")
def embedder() -> TextEmbedder:
    return TextEmbedder("minilm", threads=2)


@pytest.fixture(scope="module")
def sentence_index(embedder: TextEmbedder) -> tuple[SegmentIndex, list[MicroSegment]]:
    segments = [MicroSegment("s", i, 3.0 * i, 3.0 * i + 2.5, (Word(" " + text, 3.0 * i, 3.0 * i + 2.5),))
                for i, text in enumerate(SENTENCES)]
    index = SegmentIndex(embedder.dim)
    vectors = embedder.encode([s.text for s in segments])
    index.add(segments[:10], vectors[:10])
    index.add(segments[10:], vectors[10:])
    return index, segments


def test_exact_sentence_is_the_top_hit(embedder: TextEmbedder, sentence_index) -> None:
    index, segments = sentence_index
    queries = embedder.encode(SENTENCES)
    for seg, q in zip(segments, queries):
        hits = index.search(q, 3)
        assert hits[0][0] is seg
        assert hits[0][1] == pytest.approx(1.0, abs=1e-3)
        assert hits[0][1] > hits[1][1] + 0.05


def test_paraphrased_question_finds_its_segment(embedder: TextEmbedder, sentence_index) -> None:
    index, segments = sentence_index
    for question, expected in [("Which animal got stuck on a roof?", 15),
                               ("What happened to the flight to Japan?", 23),
                               ("Why was the football game called off?", 8)]:
        hits = index.search(embedder.encode([question])[0], 1)
        assert hits[0][0] is segments[expected], (question, hits[0][0].text)


def _overlaps(seg: MicroSegment, start: float | None, end: float | None) -> bool:
    return (start is None or seg.t1 >= start) and (end is None or seg.t0 <= end)


@pytest.mark.parametrize("start, end", [
    (None, 10.0), (40.0, None), (10.0, 20.0), (7.5, 8.4), (8.6, 8.9), (2.5, 3.0), (88.0, 500.0),
    (-5.0, -1.0), (100.0, 200.0), (20.0, 10.0),
])
def test_time_filter_returns_exactly_the_overlapping_segments(embedder: TextEmbedder, sentence_index,
                                                              start, end) -> None:
    index, segments = sentence_index
    q = embedder.encode(["weather and nature"])[0]
    hits = index.search(q, 100, start=start, end=end)
    expected = {s.seq for s in segments if _overlaps(s, start, end)}
    assert {s.seq for s, _ in hits} == expected
    assert [s.seq for s in index.segments(start, end)] == sorted(expected)
    scores = [score for _, score in hits]
    assert scores == sorted(scores, reverse=True)


def test_time_filter_picks_best_match_inside_the_window(embedder: TextEmbedder, sentence_index) -> None:
    index, segments = sentence_index
    q = embedder.encode([SENTENCES[3]])[0]  # segment 3 lies at 9-11.5 s
    hits = index.search(q, 2, start=30.0, end=60.0)
    assert len(hits) == 2 and all(_overlaps(s, 30.0, 60.0) for s, _ in hits)
    assert hits[0][1] < 0.9


def test_k_larger_than_index_returns_everything(embedder: TextEmbedder, sentence_index) -> None:
    index, segments = sentence_index
    hits = index.search(embedder.encode(["anything"])[0], 1000)
    assert len(hits) == len(segments) == len(index)
    assert {s.seq for s, _ in hits} == set(range(len(segments)))


def test_empty_index_and_bad_arguments() -> None:
    with pytest.raises(ValueError):
        SegmentIndex(0)
    index = SegmentIndex(8)
    q = np.ones(8, np.float32) / np.sqrt(8)
    assert index.search(q, 5) == []
    index.add([], np.zeros((0, 8), np.float32))
    assert len(index) == 0
    seg = MicroSegment("s", 0, 0.0, 1.0, ())
    with pytest.raises(ValueError, match="one vector per segment"):
        index.add([seg], np.zeros((2, 8), np.float32))
    with pytest.raises(ValueError, match="shape"):
        index.add([seg], np.zeros((1, 7), np.float32))
    with pytest.raises(ValueError, match="dimensions"):
        index.search(np.ones(7, np.float32), 1)
    with pytest.raises(ValueError, match="k"):
        index.search(q, 0)
    assert len(index) == 0


def test_out_of_order_add_is_rejected_and_changes_nothing() -> None:
    rng = np.random.default_rng(0)
    index = SegmentIndex(16)

    def segs(*t0s):
        return [MicroSegment("s", i, t, t + 1.0, ()) for i, t in enumerate(t0s)]

    index.add(segs(0.0, 5.0), rng.standard_normal((2, 16)).astype(np.float32))
    with pytest.raises(ValueError, match="time order"):
        index.add(segs(3.0), rng.standard_normal((1, 16)).astype(np.float32))  # before the last one
    with pytest.raises(ValueError, match="time order"):
        index.add(segs(9.0, 7.0), rng.standard_normal((2, 16)).astype(np.float32))  # unsorted batch
    assert len(index) == 2
    assert index.search(np.ones(16, np.float32), 10, start=6.5) == []
    index.add(segs(5.0, 9.0), rng.standard_normal((2, 16)).astype(np.float32))  # ties are fine
    assert len(index) == 4


def test_concurrent_searches_while_adding() -> None:
    """4 readers search with time filters while one writer adds 20k vectors; no crash, no bad result."""
    dim, total, batch = 384, 20_000, 500
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((total, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    segments = [MicroSegment("s", i, float(i), float(i) + 0.9, ()) for i in range(total)]
    index = SegmentIndex(dim)
    done = threading.Event()
    errors: list[BaseException] = []
    searches = [0] * 4

    started = threading.Barrier(5)
    partial = [0] * 4  # searches that ran while the index was still growing

    def writer():
        try:
            started.wait()
            for lo in range(0, total, batch):
                index.add(segments[lo:lo + batch], vectors[lo:lo + batch])
                time.sleep(0.002)  # segments arrive over time, not in one burst
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            done.set()

    def reader(n: int):
        r = np.random.default_rng(100 + n)
        try:
            started.wait()
            while not done.is_set() or searches[n] < 20:
                growing = len(index) < total
                q = r.standard_normal(dim).astype(np.float32)
                q /= np.linalg.norm(q)
                start = float(r.uniform(0, total)) if r.random() < 0.7 else None
                end = start + float(r.uniform(0, 3000)) if start is not None and r.random() < 0.7 else None
                hits = index.search(q, 10, start=start, end=end)
                assert len(hits) <= 10
                scores = [s for _, s in hits]
                assert scores == sorted(scores, reverse=True)
                for seg, score in hits:
                    assert _overlaps(seg, start, end)
                    assert score == pytest.approx(float(vectors[seg.seq] @ q), abs=1e-4)
                searches[n] += 1
                partial[n] += growing
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(4)]
    threads.append(threading.Thread(target=writer))
    run_threads(threads, errors)
    assert len(index) == total
    assert min(searches) >= 20
    assert sum(partial) >= 10, "the readers never raced the writer"
    # After the writes, an unfiltered search sees the whole index.
    hits = index.search(vectors[12_345], 1)
    assert hits[0][0].seq == 12_345
