"""The visual embedder on the real packaged EfficientNet-Lite0 and real frames from ../shared/media."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from manta_models.packaged import ModelError
from manta_models.perception.vision import CATEGORIES, FrameLabels, VisualEmbedder

from tests.support.helpers import media

AIRCRAFT = {"airliner", "military aircraft", "airplane wing", "airship", "space shuttle"}


def frame_at(name: str, t: float) -> np.ndarray:
    """The first decoded video frame at or after t seconds, as H x W x 3 uint8 RGB."""
    import av

    with av.open(str(media(name))) as container:
        stream = container.streams.video[0]
        container.seek(int(t / stream.time_base), stream=stream)  # lands on the keyframe before t
        for frame in container.decode(stream):
            if frame.time is not None and frame.time >= t - 1e-3:
                return frame.to_ndarray(format="rgb24")
    raise AssertionError(f"no frame at {t} s in {name}")


@pytest.fixture(scope="module")
def embedder() -> VisualEmbedder:
    return VisualEmbedder()


@pytest.fixture(scope="module")
def bunny() -> dict[float, np.ndarray]:
    # 5 and 6 s: one meadow shot; 13 s: the brook; 18 s: the bird on a branch (cuts at 11.8 and 15.7 s).
    return {t: frame_at("big_buck_bunny_0_30.webm", t) for t in (5.0, 6.0, 13.0, 18.0)}


def test_airplane_frame_is_labelled_as_an_aircraft(embedder):
    frame = frame_at("airplane_flyover_field.mp4", 1.0)
    vecs, labels = embedder.encode([frame])
    assert vecs.shape == (1, VisualEmbedder.dim) and vecs.dtype == np.float32
    assert np.linalg.norm(vecs[0]) == pytest.approx(1.0, abs=1e-4)
    assert len(labels) == 1 and isinstance(labels[0], FrameLabels)
    top = labels[0].labels
    classes = [n for n in labels[0].names if n not in CATEGORIES and n != "animal"]
    assert len(classes) == 5  # top_k classes, plus the categories they add up to
    probs = [p for _, p in top]
    assert probs == sorted(probs, reverse=True) and 0 < probs[-1] <= probs[0] <= 1
    print("airplane @1s:", top)
    assert AIRCRAFT & set(labels[0].names), top
    assert labels[0].names[0] == "aircraft", top  # the aircraft classes together, surer than any one


def test_a_bird_of_unsure_species_is_labelled_a_bird(embedder, bunny):
    """At 18 s a bird sits on a branch: no species reaches 0.35 (kite, toucan, albatross), but together
    the bird classes do, so the label a viewer would use comes first. The meadow at 5 s is no bird."""
    _, labels = embedder.encode([bunny[18.0], bunny[5.0]])
    print("bbb @18s:", labels[0].labels, "@5s:", labels[1].labels)
    assert labels[0].names[0] == "bird" and labels[0].labels[0][1] >= 0.5, labels[0].labels
    assert max(p for _, p in labels[0].labels[1:]) < 0.5  # no single species is as sure
    assert "bird" not in labels[1].names, labels[1].labels


def test_frames_of_one_shot_are_closer_than_frames_of_different_shots(embedder, bunny):
    vecs, labels = embedder.encode(list(bunny.values()))
    sim = dict(zip(bunny, vecs @ vecs[0]))  # cosine to the 5 s frame
    print("bbb @18s:", labels[3].labels, "cosine to 5 s:", sim)
    assert sim[6.0] > 0.7, sim
    assert sim[6.0] > max(sim[13.0], sim[18.0]) + 0.15, sim


def test_a_batch_equals_frames_one_at_a_time_whatever_their_size(embedder, bunny):
    frames = [bunny[18.0], frame_at("airplane_flyover_field.mp4", 1.0), np.zeros((8, 12, 3), np.uint8)]
    batch, batch_labels = embedder.encode(frames)
    assert batch.shape == (3, VisualEmbedder.dim)
    for frame, vec, lab in zip(frames, batch, batch_labels):
        one, one_labels = embedder.encode([frame])
        np.testing.assert_allclose(one[0], vec, atol=1e-4)
        assert one_labels[0].names[0] == lab.names[0]


@pytest.mark.parametrize("frames, message", [
    ([np.zeros((32, 32), np.uint8)], "shape"),
    ([np.zeros((32, 32, 4), np.uint8)], "shape"),
    ([np.zeros((32, 32, 3), np.float32)], "uint8"),
    ([[[0, 0, 0]]], "not an H x W x 3"),
    (np.zeros((32, 32, 3), np.uint8), "list"),
])
def test_bad_input_is_refused_with_a_reason(embedder, frames, message):
    with pytest.raises(ValueError, match=message):
        embedder.encode(frames)


def test_no_frames_give_an_empty_result(embedder):
    vecs, labels = embedder.encode([])
    assert vecs.shape == (0, VisualEmbedder.dim) and vecs.dtype == np.float32
    assert labels == []


def test_missing_package_is_a_model_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)  # what an uninstalled package looks like
    with pytest.raises(ModelError, match="efficientnet-lite-pytorch"):
        VisualEmbedder()


def test_the_black_opening_and_the_fade_out_are_black_and_the_pictures_around_them_are_not():
    from streaming.ingest.visual import is_black

    assert is_black(frame_at("big_buck_bunny_0_30.webm", 0.0))
    assert is_black(frame_at("airplane_flyover_field.mp4", 10.8))  # README: fades to black from ~8 s
    assert not is_black(frame_at("big_buck_bunny_0_30.webm", 2.0))  # the picture fading in
    assert not is_black(frame_at("airplane_flyover_field.mp4", 7.0))
    assert not is_black(frame_at("manifesto_audiobook_titlecard.mp4", 5.0))  # dark red card, white text
