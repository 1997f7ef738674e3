"""The dashboard's thumbnails: a live stream's bounded ring of recent JPEGs, and a recorded file's
frame decoded again at any time."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from streaming.ingest.thumbnails import ThumbnailRing, encode_jpeg, still_at
from tests.support.helpers import media


def picture(value: int, h: int = 720, w: int = 1280) -> np.ndarray:
    return np.full((h, w, 3), value, dtype=np.uint8)


def size(jpeg: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(jpeg)) as img:
        assert img.format == "JPEG"
        return img.size


def test_a_jpeg_is_at_most_320_px_wide_with_its_aspect():
    assert size(encode_jpeg(picture(10))) == (320, 180)
    assert size(encode_jpeg(picture(10, 90, 160))) == (160, 90)  # never enlarged


def test_the_ring_keeps_the_last_minutes_and_finds_the_nearest():
    ring = ThumbnailRing(keep_s=10, every_s=1)
    for t in np.arange(0, 30, 0.5):  # two frames a second: one thumbnail per second is kept
        ring.add(float(t), picture(int(t)))
    assert len(ring) == 11 and ring.span() == (19.0, 29.0)
    t, jpeg = ring.nearest(23.4)
    assert t == 23.0 and size(jpeg) == (320, 180)
    assert ring.nearest(0.0)[0] == 19.0 and ring.nearest(1e6)[0] == 29.0  # outside: the closest end
    assert ring.nearest(23.6)[0] == 24.0


def test_the_ring_is_bounded_by_count_and_refuses_what_it_cannot_order():
    ring = ThumbnailRing(keep_s=1e9, every_s=0, max_items=5)
    for t in range(20):
        ring.add(float(t), picture(0, 8, 8))
    assert len(ring) == 5 and ring.span() == (15.0, 19.0)
    assert not ring.add(3.0, picture(0, 8, 8))  # time went backwards (a reconnect rebases it forwards)
    assert not ring.add(float("nan"), picture(0, 8, 8))
    off = ThumbnailRing(keep_s=0)  # a recorded file keeps none
    assert not off.add(1.0, picture(0)) and off.nearest(1.0) is None
    with pytest.raises(ValueError):
        ThumbnailRing(keep_s=-1)


def test_a_recorded_frame_is_decoded_at_its_time():
    clip = str(media("smpte_bars_burned_timecode.mp4"))  # 1920x1080, 25 fps, 10 s
    t, jpeg = still_at(clip, 4.0)
    assert t == pytest.approx(4.0, abs=0.05) and size(jpeg) == (320, 180)
    t2, _ = still_at(clip, 4.5)
    assert t2 == pytest.approx(4.5, abs=0.05)
    last, _ = still_at(clip, 1e6)  # past the end: the last frame
    assert 9.5 < last <= 10.1
    assert still_at(clip, 0.0)[0] == pytest.approx(0.0, abs=0.05)
    assert still_at(str(media("jfk_inaugural_1961.flac")), 1.0) is None  # no video track
