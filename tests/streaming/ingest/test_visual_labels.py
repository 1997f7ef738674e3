"""What a sampled frame is labelled with: a black frame says so instead of ImageNet's guesses."""

from __future__ import annotations

import numpy as np

from streaming.ingest.visual import VisualStage, is_black
from streaming.records import VideoFrame


class GuessingVision:
    """An image model that, like ImageNet on a black frame, always names something."""

    dim = 4

    def encode(self, images):
        labels = [type("L", (), {"labels": (("website", 0.3), ("scoreboard", 0.2))})() for _ in images]
        return np.ones((len(images), self.dim), np.float32) / 2, labels


def test_black_frames_are_told_from_dark_ones_that_show_something():
    h, w = 360, 640
    black = np.zeros((h, w, 3), np.uint8)
    assert is_black(black)
    assert is_black(black + 10)  # encoder noise on black
    title = np.zeros((h, w, 3), np.uint8)
    title[...] = (90, 5, 5)  # a dark red card...
    title[150:200, 100:500] = 255  # ...with a line of white text
    assert not is_black(title)
    dim = np.full((h, w, 3), 45, np.uint8)  # a dim picture, the start of a fade-in
    assert not is_black(dim)


def test_a_black_frame_is_labelled_black_screen_and_a_picture_keeps_its_classes():
    stage = VisualStage(lambda texts: np.ones((len(texts), 4), np.float32) / 2, 4, vision=GuessingVision())
    stage.on_frame(VideoFrame(np.zeros((90, 160, 3), np.uint8), 0.0, 0.0))
    stage.on_frame(VideoFrame(np.full((90, 160, 3), 128, np.uint8), 1.0, 1.0))
    frames = stage.frames.items(None, None)
    assert [f.labels for f in frames] == [(("black screen", 1.0),), (("website", 0.3), ("scoreboard", 0.2))]
