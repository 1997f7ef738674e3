"""Unit tests of the pure visual logic: which frames are read, how lines become records with spans,
the per-stream item index, and what a question asks about. Fast: no models."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest

from streaming.question.intent import parse_question
from streaming.memory.item_index import TimedIndex
from streaming.ingest.screen_text import ReadGate, ScreenTextTracker, TextBlock, grey_thumb, group_lines, same_text
from manta_models.perception.ocr import OcrLine


def frame(value: int = 0, h: int = 360, w: int = 640) -> np.ndarray:
    return np.full((h, w, 3), value, dtype=np.uint8)


def test_grey_thumb_is_the_block_mean_for_any_frame_size():
    img = frame(0, 181, 333)
    img[:, 200:] = 255
    thumb = grey_thumb(img)
    assert thumb.shape == (90, 160) and thumb.dtype == np.float32
    assert thumb[:, 0].max() == 0.0 and thumb[:, -1].min() == 1.0
    with pytest.raises(ValueError):
        grey_thumb(np.zeros((10, 10), dtype=np.uint8))


def test_gate_reads_changes_only_and_respects_the_interval_except_at_cuts():
    gate = ReadGate(min_interval_s=2.0)
    still = grey_thumb(frame(50))
    assert gate.decide(0.0, still) == "read"
    assert gate.decide(1.0, still) == "same"  # nothing changed: no OCR
    corner = frame(50)
    corner[300:340, 560:620] = 255  # a small counter changing in a corner is a change
    assert gate.decide(1.0, grey_thumb(corner)) == "wait"  # too soon after the last read
    assert gate.decide(1.5, grey_thumb(frame(200)), cut=True) == "read"  # a cut reads at once
    assert gate.decide(4.0, grey_thumb(corner)) == "read"
    assert gate.reads == 3


def test_noise_below_threshold_is_not_a_change():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
    noisy = np.clip(base.astype(int) + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8)
    gate = ReadGate()
    gate.decide(0.0, grey_thumb(base))
    assert gate.decide(5.0, grey_thumb(noisy)) == "same"


def test_two_line_title_is_one_block_and_far_apart_lines_are_not():
    lines = [OcrLine("PRESENTS", (0.42, 0.55, 0.58, 0.60), 0.99),
             OcrLine("THE PEACH OPEN MOVIE PROJECT", (0.25, 0.48, 0.75, 0.53), 0.98),
             OcrLine("5.005", (0.05, 0.90, 0.12, 0.95), 0.99)]
    blocks = group_lines(lines)
    assert [b.text for b in blocks] == ["THE PEACH OPEN MOVIE PROJECT PRESENTS", "5.005"]
    assert blocks[0].confidence == 0.98 and blocks[0].box == (0.25, 0.48, 0.75, 0.60)


def test_title_card_layout_reads_in_order():
    """The manifesto card as RapidOCR boxes it: two words side by side in a big font, then three
    smaller lines; a counter and a timecode in opposite corners stay apart."""
    card = [OcrLine("Karl MarxFriedrich Engels", (0.325, 0.75, 0.7094, 0.8333), 0.99),
            OcrLine("Socialism", (0.5219, 0.3278, 0.7656, 0.4556), 1.0),
            OcrLine("Communist Party", (0.3438, 0.65, 0.6531, 0.75), 0.99),
            OcrLine("Audible", (0.2375, 0.3333, 0.4437, 0.4556), 0.99),
            OcrLine("Manifesto of the", (0.35, 0.5722, 0.6469, 0.6667), 0.99)]
    assert [b.text for b in group_lines(card)] == [
        "Audible Socialism", "Manifesto of the Communist Party Karl MarxFriedrich Engels"]
    corners = [OcrLine("5.005", (0.05, 0.9, 0.12, 0.95), 0.99), OcrLine("00:00:05;00", (0.8, 0.9, 0.95, 0.95), 0.99)]
    assert [b.text for b in group_lines(corners)] == ["5.005", "00:00:05;00"]
    with pytest.raises(ValueError):
        group_lines(corners, aspect=0)


def test_same_text_tolerates_ocr_noise_but_not_a_changed_number():
    assert same_text("Manifesto of the Communist Party", "Manifesto of the Comunist Party")
    assert not same_text("5.005", "6.006")
    assert not same_text("Breaking news", "Weather today")


def test_tracker_makes_one_record_per_persisting_text_with_growing_span():
    ids = itertools.count()
    tr = ScreenTextTracker(lambda: next(ids))
    title = TextBlock("Audible Socialism", (0.3, 0.1, 0.7, 0.2), 0.95)
    (rec,) = tr.observe(0.0, [title], until=1.0)
    assert (rec.id, rec.t0, rec.t1) == (0, 0.0, 1.0)
    assert [r.t1 for r in tr.confirm(2.0)] == [2.0]  # unchanged frames extend it
    counter = TextBlock("1.001", (0.0, 0.9, 0.1, 1.0), 0.99)
    out = tr.observe(3.0, [TextBlock("Audible Socialisn", title.box, 0.9), counter], until=4.0)
    assert [(r.id, r.text, r.t0, r.t1) for r in out] == [(0, "Audible Socialism", 0.0, 4.0),
                                                         (1, "1.001", 3.0, 4.0)]
    out = tr.observe(5.0, [], until=6.0)  # everything gone: records end at their last sight
    assert out == [] and tr.open == []


def test_timed_index_updates_spans_in_place_and_filters_by_time_and_kind():
    idx = TimedIndex(4)
    v = np.eye(4, dtype=np.float32)
    idx.upsert(1, "title", 0.0, 2.0, v[0])
    idx.upsert(2, "label", 5.0, 8.0, v[1])
    idx.upsert(1, "title", 0.0, 30.0, None)  # still on screen at 30 s: no new entry
    assert len(idx) == 2
    assert idx.search(v[0], 5, start=20.0) == [("title", 1.0)]
    assert [it for it, _ in idx.search(v[0], 5, where=lambda it: it == "label")] == ["label"]
    assert idx.items(6.0, 7.0) == ["title", "label"]
    with pytest.raises(ValueError):
        idx.upsert(3, "x", 0.0, 1.0, None)  # a new key needs its vector
    with pytest.raises(ValueError):
        idx.upsert(3, "x", 2.0, 1.0, v[2])


def test_timed_index_concurrent_upserts_and_searches():
    idx = TimedIndex(8)
    rng = np.random.default_rng(1)
    errors = []

    def writer():
        for i in range(2000):
            idx.upsert(i, i, float(i), float(i) + 1, rng.standard_normal(8).astype(np.float32))

    def reader():
        q = np.ones(8, dtype=np.float32)
        try:
            for _ in range(300):
                for item, _ in idx.search(q, 5, start=10.0):
                    assert item + 1 >= 10.0
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(idx) == 2000


@pytest.mark.parametrize("question, modalities, listing, content", [
    ("What text appears on screen?", ("shown",), True, ""),
    ("What is written on the title card?", ("shown",), True, ""),
    ("When is an aircraft shown?", ("shown", "seen"), False, "aircraft"),
    ("What did the narrator say about Europe?", ("said",), False, "europe"),
    ("Who wrote the manifesto?", ("said", "shown", "seen"), False, "wrote manifesto"),
    ("Which subtitle mentions Sinbad?", ("said", "shown"), False, "sinbad"),
])
def test_parse_question(question, modalities, listing, content):
    intent = parse_question(question)
    assert intent.modalities == modalities and intent.listing == listing and intent.content == content


def test_parse_question_override_and_validation():
    assert parse_question("anything at all", "shown").modalities == ("shown",)
    assert parse_question("x", "any").modalities == ("said", "shown", "seen")
    with pytest.raises(ValueError):
        parse_question("  ")
    with pytest.raises(ValueError):
        parse_question("x", "smell")


def test_a_title_shown_again_and_again_is_one_answer_with_all_its_times():
    """Real MiniLM embeddings: a title card coming back five times (with OCR noise once) between
    other captions is one search result carrying every span; a different number is other text."""
    from manta_models.perception.embed import TextEmbedder
    from streaming.records import SubtitleCue
    from streaming.ingest.visual import VisualStage

    embedder = TextEmbedder()
    stage = VisualStage(embedder.encode, embedder.dim)
    titles = []
    for i in range(5):
        t = 60.0 * i
        text = "BREAKING NEWS: FLOODS IN THE NORTH" if i != 3 else "BREAKING NEWS: FLOOODS IN THE NORTH"
        titles.append((t, t + 4.0))
        stage.on_cue(SubtitleCue(t, t + 4.0, text, None, 0))
        stage.on_cue(SubtitleCue(t + 20, t + 24, f"Weather for day {i}: sunny spells", None, 0))
    stage.on_cue(SubtitleCue(400.0, 404.0, "The Peach Open Movie Project presents", None, 0))
    query = embedder.encode(["breaking news floods"])[0]
    hits = stage.search(query, 3, None, None, {"subtitle"})
    item, _, also = hits[0]
    assert "FLOODS" in item.text and sorted([(item.t0, item.t1), *also]) == titles
    assert not any("BREAKING" in h[0].text for h in hits[1:])  # not repeated in the other places
    weather = [h for h in stage.search(embedder.encode(["weather sunny"])[0], 5, None, None, {"subtitle"})
               if "Weather" in h[0].text]
    assert len(weather) == 5 and all(h[2] == () for h in weather)  # day 0..4: numbers differ, all kept
    # A time filter folds only what lies inside it.
    item, _, also = stage.search(query, 1, 100.0, 200.0, {"subtitle"})[0]
    assert sorted([(item.t0, item.t1), *also]) == [(120.0, 124.0), (180.0, 184.0)]
    # The answer names every time it came back.
    from streaming.answer.extractive import clock, quote
    from streaming.records import Evidence

    item, score, also = hits[0]
    said = quote(Evidence("news", item.t0, item.t1, item.text, score, "shown", "subtitle", also=also))
    others = ", ".join(clock(t0) for t0, _ in titles if t0 != item.t0)
    assert said.startswith("Subtitle: “BREAKING NEWS") and said.endswith(f", again at {others}"), said


def test_words_the_recogniser_ran_together_are_split_but_brand_names_are_not():
    from manta_models.perception.ocr import split_joined

    assert split_joined("Karl MarxFriedrich Engels") == "Karl Marx Friedrich Engels"
    assert split_joined("YouTube McDonald iPhone THE PEACH") == "YouTube McDonald iPhone THE PEACH"
