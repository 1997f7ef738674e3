"""Shot-cut detection (streaming.source.scenes): real clips from ../shared/media decoded frame by frame, plus
synthetic frames for the cases the clips do not pin down (flashes, exact cut frame, restarts)."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from streaming.source.scenes import FLASH_FRAMES, THUMB_H, THUMB_W, SceneDetector, ShotCut, thumbnail

from tests.support.helpers import media

TOLERANCE_S = 0.1  # the detector names the first frame of the new shot: about two frames of slack
# Cuts found by ffmpeg's scene filter, as listed in ../shared/media/README.md.
CUTS = {
    "big_buck_bunny_0_30.webm": [11.795, 15.67, 22.961],
    "popeye_sinbad_1936_p1.mkv": [12.375, 27.375, 40.083],
    "popeye_sinbad_1936_p3.mkv": [13.792, 22.083, 30.75, 44.625, 55.667],
    "airplane_flyover_field.mp4": [],
    "manifesto_audiobook_titlecard.mp4": [],
    "smpte_bars_burned_timecode.mp4": [],
}
NO_CUTS_AT_ALL = {"manifesto_audiobook_titlecard.mp4", "smpte_bars_burned_timecode.mp4"}
# Spans that must stay free of cuts (fades, animation, a camera tilt), as (start, end) seconds.
QUIET = {
    "big_buck_bunny_0_30.webm": [(0.0, 2.5), (15.8, 20.5), (23.1, 30.0)],  # fade in, bird, title fade
    "airplane_flyover_field.mp4": [(0.0, 8.0)],  # ~3 s is a tilt down to the field, not a cut
}
# The one extra cut the detector finds: a close-up of the giant bird, then a wide shot of the ship
# (frames looked at). ffmpeg's scene filter scored it under its 0.3 threshold.
UNLISTED_REAL = {"popeye_sinbad_1936_p3.mkv": [3.083]}


def detect(name: str) -> tuple[list[ShotCut], list[tuple[float, float]], float]:
    """Every frame of the file through thumbnail() and SceneDetector; cuts, (t, score) per frame, time."""
    import av

    detector, cuts, scores = SceneDetector(), [], []
    started = time.perf_counter()
    with av.open(str(media(name))) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            cut = detector.update(frame.time, thumbnail(frame))
            scores.append((frame.time, detector.last_score))
            if cut is not None:
                cuts.append(cut)
    return cuts, scores, time.perf_counter() - started


@pytest.mark.slow  # decodes whole real clips (the Popeye HEVC ones take ~8 s each)
@pytest.mark.parametrize("name", list(CUTS))
def test_real_clip_cuts(name):
    cuts, scores, seconds = detect(name)
    truth = CUTS[name]
    found = [t for t in truth if any(abs(c.t - t) <= TOLERANCE_S for c in cuts)]
    hits = [c for c in cuts if any(abs(c.t - t) <= TOLERANCE_S for t in truth)]
    extra = [c for c in cuts if c not in hits]
    non_cut = [s for t, s in scores if all(abs(t - c.t) > TOLERANCE_S for c in cuts)]
    print(f"\n{name}: {len(scores)} frames in {seconds:.1f} s; recall {len(found)}/{len(truth)}, "
          f"precision {len(hits)}/{len(cuts)}; cuts {[(round(c.t, 3), c.score) for c in cuts]}; "
          f"largest non-cut score {max(non_cut, default=0):.3f}")
    assert found == truth, f"missed {sorted(set(truth) - set(found))}; detected {cuts}"
    if name in NO_CUTS_AT_ALL:
        assert cuts == []
    assert len(extra) <= 1, f"extra cuts {extra}"
    for c in extra:
        assert any(abs(c.t - t) <= TOLERANCE_S for t in UNLISTED_REAL.get(name, [])), f"unexpected {c}"
    for start, end in QUIET.get(name, []):
        assert not [c for c in cuts if start <= c.t <= end], f"a cut in the quiet span {start}-{end} s"
    assert all(c.score >= SceneDetector().threshold for c in cuts)


def test_airplane_fade_to_black_is_at_most_one_cut():
    cuts, _, _ = detect("airplane_flyover_field.mp4")
    assert len([c for c in cuts if c.t >= 7.5]) <= 1


# -- synthetic frames --------------------------------------------------------------------------
FPS = 25


def texture(seed: int, h: int = THUMB_H, w: int = THUMB_W) -> np.ndarray:
    """A smooth random picture (blobs, not noise), like a downscaled real frame."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(30, 225, size=(h // 6 + 2, w // 6 + 2, 3))
    ys, xs = np.linspace(0, coarse.shape[0] - 1.001, h), np.linspace(0, coarse.shape[1] - 1.001, w)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    c = coarse
    img = (c[y0][:, x0] * (1 - fy) * (1 - fx) + c[y0 + 1][:, x0] * fy * (1 - fx)
           + c[y0][:, x0 + 1] * (1 - fy) * fx + c[y0 + 1][:, x0 + 1] * fy * fx)
    return np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)


def flat(rgb: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (THUMB_H, THUMB_W, 3)).copy()


def run(frames, detector: SceneDetector | None = None, t0: float = 0.0) -> list[tuple[int, ShotCut]]:
    """(index of the frame whose update returned it, cut) for every cut."""
    detector = detector or SceneDetector()
    out = []
    for i, frame in enumerate(frames):
        cut = detector.update(t0 + i / FPS, frame)
        if cut is not None:
            out.append((i, cut))
    return out


def test_constructor_validates_arguments():
    for kwargs in ({"threshold": 0}, {"threshold": 1}, {"threshold": -0.1}, {"threshold": math.nan},
                   {"threshold": "0.1"}, {"min_shot_s": -1}, {"min_shot_s": math.inf},
                   {"min_shot_s": math.nan}, {"ratio": 0.5}, {"ratio": math.inf}, {"ratio": True}):
        with pytest.raises(ValueError):
            SceneDetector(**kwargs)
    SceneDetector(threshold=0.2, min_shot_s=0, ratio=1)


def test_update_validates_thumbnails_and_time():
    detector = SceneDetector()
    good = texture(0)
    for bad in (good[..., 0], good.transpose(1, 0, 2), good.astype(np.float32), good[:, :, :2],
                good.tolist(), np.zeros((THUMB_H, THUMB_W, 3), np.uint16)):
        with pytest.raises(ValueError):
            detector.update(0.0, bad)
    for bad_t in (math.nan, math.inf, None, "1.0"):
        with pytest.raises(ValueError):
            detector.update(bad_t, good)
    detector.update(1.0, good)
    detector.update(1.0, good)  # equal times happen in real streams; only going back is an error
    with pytest.raises(ValueError, match="backwards"):
        detector.update(0.96, good)


def test_identical_frames_never_cut():
    detector = SceneDetector()
    assert run([texture(1)] * 200, detector) == []
    assert detector.last_score == 0.0


def test_hard_cut_between_two_flat_colours_is_found_at_its_first_frame():
    frames = [flat((20, 40, 120))] * 30 + [flat((230, 140, 30))] * 30
    cuts = run(frames)
    assert len(cuts) == 1
    returned_at, cut = cuts[0]
    assert cut.t == pytest.approx(30 / FPS)
    assert returned_at == 30 + FLASH_FRAMES  # confirmed once it is clearly not a flash
    assert cut.score > 0.4


def test_slow_fades_and_a_dissolve_are_not_cuts():
    a, b = texture(2).astype(np.float32), texture(3).astype(np.float32)
    fade_in = [(a * k / 50).astype(np.uint8) for k in range(51)]
    dissolve = [(a * (1 - k / 25) + b * (k / 25)).astype(np.uint8) for k in range(26)]
    fade_out = [(b * (1 - k / 50)).astype(np.uint8) for k in range(51)]
    assert run([flat((0, 0, 0))] * 10 + fade_in + [a.astype(np.uint8)] * 10 + dissolve
               + [b.astype(np.uint8)] * 10 + fade_out) == []


def test_camera_pan_is_not_a_cut():
    wide = texture(4, w=THUMB_W * 4)
    assert run([wide[:, x:x + THUMB_W] for x in range(0, 3 * THUMB_W)]) == []


@pytest.mark.parametrize("length", [1, 2, FLASH_FRAMES])
def test_flash_is_not_a_cut(length):
    a = texture(5)
    assert run([a] * 30 + [flat((255, 255, 255))] * length + [a] * 30) == []


def test_minimum_shot_length():
    a, b, c = texture(6), texture(7), texture(8)
    frames = [a] * 25 + [b] * 5 + [c] * 25  # a 0.2 s shot in the middle
    assert [cut.t for _, cut in run(frames)] == [pytest.approx(1.0)]
    both = run(frames, SceneDetector(min_shot_s=0.1))
    assert [cut.t for _, cut in both] == [pytest.approx(1.0), pytest.approx(1.2)]


def noisy(frames: list[np.ndarray], sigma: float, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.clip(f + rng.normal(0, sigma, f.shape), 0, 255).astype(np.uint8) for f in frames]


def test_adaptive_bar_rises_with_busy_pictures():
    # The same change of picture is a cut after a still second, not amid heavy frame-to-frame churn.
    a, b = texture(9), texture(10)
    assert len(run([a] * 50 + [b] * 30)) == 1
    assert run(noisy([a] * 50 + [b] * 30, sigma=20)) == []


def test_no_cut_at_the_start_of_a_noisy_stream():
    assert run(noisy([texture(11)] * 40, sigma=30)) == []


def test_state_dict_continues_a_restarted_stream():
    shots = [texture(20 + k) for k in range(6)]
    frames = [shot for shot in shots for _ in range(30)]
    whole = [cut for _, cut in run(frames)]
    assert [round(c.t, 3) for c in whole] == [1.2, 2.4, 3.6, 4.8, 6.0]

    first = SceneDetector(threshold=0.08, min_shot_s=0.4, ratio=5)
    split = 80  # mid-shot: nothing pending
    before = [cut for _, cut in run(frames[:split], first)]
    state = json.loads(json.dumps(first.state_dict()))
    second = SceneDetector()
    second.load_state_dict(state)
    assert (second.threshold, second.min_shot_s, second.ratio) == (0.08, 0.4, 5.0)
    after = [cut for _, cut in run(frames[split:], second, t0=split / FPS)]
    assert [round(c.t, 3) for c in before + after] == [round(c.t, 3) for c in whole]
    with pytest.raises(ValueError, match="backwards"):
        second.update(0.0, frames[0])
    with pytest.raises(ValueError):
        SceneDetector().load_state_dict({**state, "threshold": 2})
    with pytest.raises(ValueError):
        SceneDetector().load_state_dict({**state, "scores": [math.nan]})
    for broken in ({}, {**state, "scores": None}, {**state, "last_t": "x"}, {**state, "last_cut": -1e400}):
        with pytest.raises(ValueError):
            SceneDetector().load_state_dict(broken)


def test_thumbnail_matches_pyav_to_ndarray_across_sizes():
    import av

    for w, h in ((1280, 720), (640, 360), (1440, 1074), (1280, 720)):  # one reused swscale context
        rgb = np.zeros((h, w, 3), np.uint8)
        rgb[: h // 2, : w // 3] = (250, 20, 20)
        rgb[h // 2:, w // 2:] = (20, 200, 90)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        thumb = thumbnail(frame)
        assert thumb.shape == (THUMB_H, THUMB_W, 3) and thumb.dtype == np.uint8
        assert np.array_equal(thumb, frame.to_ndarray(format="rgb24", width=THUMB_W, height=THUMB_H))
