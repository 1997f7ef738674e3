"""Visual stage cost: per-stage time (decode, shot-cut detection, image labels, OCR) and whole-stream
real-time factor with speech only vs speech + visual, side by side in one run on the same machine.

Whole-stream runs go through the real ingest pipeline in-process (PyAV, Whisper base int8, MiniLM,
EfficientNet-Lite0, RapidOCR, the stream model), on files read as fast as possible; real-time
factor = wall seconds / media seconds (goal: <= 0.5 with both on). Models are loaded before timing.
"""

from __future__ import annotations

import time
from pathlib import Path

import av

from bench.common import MEDIA, emit, parse_args, section, table
from manta_models.loader import ModelSet
from streaming.ingest.pipeline import StreamPipeline
from streaming.source.scenes import SceneDetector, thumbnail
from streaming.settings import Settings
from streaming.source.media import parse_source

KEY = "visual-cost"
CLIPS = ("manifesto_audiobook_titlecard.mp4", "big_buck_bunny_0_30.webm")


def duration(path: Path) -> float:
    with av.open(str(path)) as c:
        return float(c.duration / av.time_base)


def decode_costs(path: Path, fps: float = 1.0) -> dict:
    """Seconds to decode every frame, to run the cut detector on all of them, and the sampled count."""
    decode = detect = 0.0
    frames = sampled = 0
    detector = SceneDetector()
    next_t = 0.0
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        v.thread_type, v.thread_count = "AUTO", 2
        it = c.decode(v)
        while True:
            t = time.perf_counter()
            frame = next(it, None)
            decode += time.perf_counter() - t
            if frame is None:
                break
            frames += 1
            t = time.perf_counter()
            cut = detector.update(frame.time, thumbnail(frame))
            detect += time.perf_counter() - t
            if frame.time >= next_t or cut is not None:
                sampled += 1
                next_t = frame.time + 1.0 / fps
    return {"decode": decode, "detect": detect, "frames": frames, "sampled": sampled}


def run_stream(path: Path, settings: Settings, models: ModelSet) -> dict:
    pipe = StreamPipeline("bench", path.stem, parse_source(str(path)), settings, models.for_stream)
    t = time.perf_counter()
    pipe.start()
    pipe.join()
    wall = time.perf_counter() - t
    snap = pipe.snapshot()
    assert snap["state"] == "finished", snap
    return {"wall": wall, "visual": snap.get("visual", {}), "segments": snap["segments"]}


def main() -> None:
    args = parse_args(__doc__)
    speech_only = Settings(visual_model="off", ocr="off", subtitles=False)
    both = Settings()
    model_sets = {"speech": ModelSet(speech_only), "both": ModelSet(both)}
    for m in model_sets.values():
        m.for_stream()  # load weights before timing
    rows, stage_rows = [], []
    for name in CLIPS:
        path = MEDIA / name
        media_s = duration(path)
        dc = decode_costs(path)
        speech = run_stream(path, speech_only, model_sets["speech"])
        full = run_stream(path, both, model_sets["both"])
        vis = full["visual"]
        label_s = _label_seconds(model_sets["both"], path, dc["sampled"])
        per_min = vis.get("ocr_reads", 0) / (media_s / 60)
        rows.append([name, f"{media_s:.1f}", f"{speech['wall'] / media_s:.3f}", f"{full['wall'] / media_s:.3f}",
                     f"{full['wall'] / speech['wall']:.2f}x", vis.get("ocr_reads", 0), f"{per_min:.1f}",
                     vis.get("cuts", 0)])
        stage_rows.append([name, dc["frames"], f"{dc['decode'] / media_s:.3f}", f"{dc['detect'] / media_s:.4f}",
                           f"{1e6 * dc['detect'] / max(1, dc['frames']):.0f}", dc["sampled"],
                           f"{label_s / media_s:.3f}",
                           f"{vis.get('ocr_seconds', 0.0) / media_s:.3f}",
                           f"{vis.get('ocr_seconds', 0.0) / max(1, vis.get('ocr_reads', 1)):.2f}"])
        print(rows[-1], stage_rows[-1], flush=True)
    body = ["Whole stream (wall / media seconds; lower is better; goal <= 0.5 with both on):", ""]
    body += table(["clip", "media s", "RTF speech only", "RTF speech + visual", "visual/speech",
                   "OCR reads", "OCR reads/min", "shot cuts"], rows)
    body += ["", "Per stage, seconds per media second (one core's work; the stages overlap on two):", ""]
    body += table(["clip", "decoded frames", "decode", "cut detection", "cut detection us/frame",
                   "sampled frames", "labels + embedding", "OCR", "OCR s/read"], stage_rows)
    emit(KEY, section("Visual stage cost: decode, cuts, labels, OCR; speech vs speech + visual", body),
         args.write)


def _label_seconds(models: ModelSet, path: Path, n: int) -> float:
    """EfficientNet-Lite0 time for the sampled frames (one frame per call, as the pipeline does)."""
    vision = models.for_stream().vision
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0)).to_ndarray(format="rgb24", width=640, height=360)
    vision.encode([frame])
    t = time.perf_counter()
    for _ in range(n):
        vision.encode([frame])
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
