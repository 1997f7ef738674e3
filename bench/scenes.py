"""Shot-cut detection (streaming.source.scenes): per-frame cost, and accuracy with margins on real clips.

Cost: every frame of a 720p and a 1080p clip is decoded, then thumbnail() and SceneDetector.update()
are timed one frame at a time (decode time is shown for scale). The plain
frame.to_ndarray(format="rgb24", width=64, height=36) is timed too: it builds a swscale context per
frame, which thumbnail() avoids. Accuracy: the clips with ffmpeg scene cuts in ../shared/media/README.md
plus the three without cuts; the margin columns say how far true cuts and the worst non-cuts lie
from the thresholds (score, and score / median of the last second).
"""

from __future__ import annotations

import time

import numpy as np

from streaming.source import scenes

from .common import MEDIA, emit, parse_args, section, table

KEY = "scenes"
COST_CLIPS = {"720p": "big_buck_bunny_0_30.webm", "1080p": "smpte_bars_burned_timecode.mp4"}
CUTS = {"big_buck_bunny_0_30.webm": [11.795, 15.67, 22.961],
        "popeye_sinbad_1936_p1.mkv": [12.375, 27.375, 40.083],
        "popeye_sinbad_1936_p3.mkv": [13.792, 22.083, 30.75, 44.625, 55.667],
        "airplane_flyover_field.mp4": [], "manifesto_audiobook_titlecard.mp4": [],
        "smpte_bars_burned_timecode.mp4": []}
TOLERANCE_S = 0.1


def frames(name: str, threads: bool = True):
    """(frame, seconds next() took). Timing runs decode on this thread alone, so that decoder threads
    working ahead do not compete with the code being timed (2 cores here)."""
    import av

    with av.open(str(MEDIA / name)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO" if threads else "NONE"
        stream.thread_count = 0 if threads else 1
        started = time.perf_counter()
        for frame in container.decode(stream):
            yield frame, time.perf_counter() - started
            started = time.perf_counter()


def cost(name: str) -> list:
    detector, decode, thumb, plain, update = scenes.SceneDetector(), [], [], [], []
    for frame, decode_s in frames(name, threads=False):
        t0 = time.perf_counter()
        x = scenes.thumbnail(frame)
        t1 = time.perf_counter()
        frame.to_ndarray(format="rgb24", width=scenes.THUMB_W, height=scenes.THUMB_H)
        t2 = time.perf_counter()
        detector.update(frame.time, x)
        t3 = time.perf_counter()
        decode.append(decode_s), thumb.append(t1 - t0), plain.append(t2 - t1), update.append(t3 - t2)
    us = lambda v: f"{np.median(v) * 1e6:.0f} / {np.percentile(v, 95) * 1e6:.0f}"  # noqa: E731
    total = np.median(np.add(thumb, update))
    return [f"{frame.width}x{frame.height}", len(decode), us(decode), us(plain), us(thumb), us(update),
            f"{total * 1e6:.0f}", f"{total / np.median(decode):.0%}", f"{total * 30:.1%}"]


def accuracy(name: str, truth: list[float]) -> list:
    detector, cuts, rows, history = scenes.SceneDetector(), [], [], []
    for frame, _ in frames(name):
        cut = detector.update(frame.time, scenes.thumbnail(frame))
        cuts += [cut] if cut else []
        typical = max(sorted(history)[len(history) // 2] if history else 0.0, scenes.FLOOR)
        rows.append((frame.time, detector.last_score, detector.last_score / typical))
        history = (history + [detector.last_score])[-scenes.HISTORY:]
    near = lambda t, ts: any(abs(t - x) <= TOLERANCE_S for x in ts)  # noqa: E731
    hits = [c for c in cuts if near(c.t, truth)]
    true_rows = [max((r for r in rows if abs(r[0] - t) <= TOLERANCE_S), key=lambda r: r[1]) for t in truth]
    others = [r for r in rows if not near(r[0], [c.t for c in cuts] + truth)]
    busy = [r for r in others if r[1] >= 0.03] or [(0, 0, 0)]
    fmt = lambda r: f"{r[1]:.3f} at {r[2]:.1f}x ({r[0]:.2f} s)"  # noqa: E731
    return [name, f"{sum(near(t, [c.t for c in cuts]) for t in truth)}/{len(truth)}",
            f"{len(hits)}/{len(cuts)}", ", ".join(f"{c.t:.3f}" for c in cuts if c not in hits) or "-",
            ", ".join(f"{r[1]:.3f}/{r[2]:.0f}x" for r in true_rows) or "-",
            fmt(max(others, key=lambda r: r[1])), fmt(max(busy, key=lambda r: r[2]))]


def main() -> None:
    args = parse_args(__doc__)
    d = scenes.SceneDetector()
    body = [f"Defaults: threshold {d.threshold}, ratio {d.ratio}x, min_shot_s {d.min_shot_s}, histogram "
            f"change >= {scenes.MIN_HIST_CHANGE}, flash check {scenes.FLASH_FRAMES} frames.", "",
            "Per-frame cost, median / p95 in µs (decode single-threaded, so that nothing runs beside "
            "the timed code):", ""]
    body += table(["clip", "size", "frames", "decode", "to_ndarray(64x36)", "thumbnail()", "update()",
                   "thumbnail+update", "vs decode", "one core at 30 fps"],
                  [[label, *cost(name)] for label, name in COST_CLIPS.items()])
    body += ["", f"Accuracy (a cut counts within ±{TOLERANCE_S} s; score/ratio = score and score / median "
             "score of the last second; 'busiest' = largest ratio among non-cuts scoring >= 0.03):", ""]
    body += table(["clip", "recall", "precision", "extra cuts (s)", "true cuts score/ratio",
                   "largest non-cut score", "busiest non-cut"],
                  [accuracy(name, truth) for name, truth in CUTS.items()])
    emit(KEY, section("Shot-cut detection", body), args.write)


if __name__ == "__main__":
    main()
