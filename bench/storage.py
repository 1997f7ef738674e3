"""Disk and index bytes per stream-hour, micro segments kept vs received after dedup, and a disk
budget holding: one long stream composed from ../shared/media clips, ingested twice side by side in
one run (no retention, then ``retention_mb``) through the real pipeline with its SQLite store.

The stream loops the clips (speech, title cards, cartoons, test bars) with a station ID (one
sentence) between clips, so dedup has real repeats to merge. It is written once to a temp MKV
(H.264 640x360 25 fps + PCM), read as fast as possible.
"""

from __future__ import annotations

import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from bench.common import MEDIA, emit, parse_args, section, table
from manta_models.loader import ModelSet
from streaming.ingest.pipeline import StreamPipeline
from streaming.settings import Settings
from streaming.source.media import parse_source
from streaming.memory.store import StreamStore

KEY = "storage"
CLIPS = ("manifesto_audiobook_titlecard.mp4", "popeye_sinbad_1936_p1.mkv", "big_buck_bunny_0_30.webm",
         "airplane_flyover_field.mp4", "popeye_sinbad_1936_p3.mkv", "smpte_bars_burned_timecode.mp4")
STATION_ID = "librivox_sense_and_sensibility_0880.wav"  # "He was not an ill-disposed young man."
W, H, FPS, RATE = 640, 360, 25, 16_000


def compose(out: Path, minutes: float) -> float:
    """Write the looped stream; returns its length in seconds."""
    with av.open(str(out), "w", format="matroska") as dst:
        v = dst.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "crf": "30"})
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        a = dst.add_stream("pcm_s16le", rate=RATE, layout="mono")
        t, i = 0.0, 0
        black = av.VideoFrame.from_ndarray(np.zeros((H, W, 3), np.uint8), format="rgb24")
        while t < minutes * 60:
            clip = CLIPS[i % len(CLIPS)]
            t = _append(dst, v, a, MEDIA / clip, t)
            t = _append(dst, v, a, MEDIA / STATION_ID, t, still=black)
            i += 1
        for packet in v.encode(None):
            dst.mux(packet)
    return t


def _append(dst, v, a, path: Path, t0: float, still=None) -> float:
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    end = t0
    n_audio = 0
    with av.open(str(path)) as src:
        base = (src.start_time or 0) / 1e6  # a clip cut from a longer film starts at its old time
        streams = (list(src.streams.video[:1]) if still is None else []) + list(src.streams.audio[:1])
        next_frame = int(round(t0 * FPS))
        for frame in src.decode(*streams):
            if isinstance(frame, av.VideoFrame):
                if frame.time is None:
                    continue
                at = t0 + frame.time - base
                pts = int(round(at * FPS))
                if pts < next_frame:
                    continue
                out = frame.reformat(width=W, height=H, format="yuv420p")  # may be frame itself
                out.pts, out.time_base = pts, Fraction(1, FPS)
                next_frame = pts + 1
                for packet in v.encode(out):
                    dst.mux(packet)
                end = max(end, at + 1 / FPS)
            else:
                for pcm in resampler.resample(frame):
                    pcm.pts, pcm.time_base = int(round(t0 * RATE)) + n_audio, Fraction(1, RATE)
                    n_audio += pcm.samples
                    for packet in a.encode(pcm):
                        dst.mux(packet)
        end = max(end, t0 + n_audio / RATE)
    if still is not None:  # a black picture under the station ID
        for pts in range(int(round(t0 * FPS)), int(round(end * FPS))):
            frame = still.reformat(format="yuv420p")
            frame.pts, frame.time_base = pts, Fraction(1, FPS)
            for packet in v.encode(frame):
                dst.mux(packet)
    return end


def ingest(path: Path, settings: Settings, models: ModelSet) -> dict:
    store = StreamStore(settings.data_dir / "s.sqlite")
    pipe = StreamPipeline("s", "composed", parse_source(str(path)), settings, models.for_stream, store=store)
    curve, done = [], threading.Event()

    def sample() -> None:
        while not done.wait(5.0):
            curve.append((pipe.status.committed_seconds, store.nbytes, store.file_bytes()))

    sampler = threading.Thread(target=sample, daemon=True)
    start = time.perf_counter()
    pipe.probe()
    pipe.start()
    sampler.start()
    assert pipe.join(timeout=7200), "ingest did not finish"
    done.set()
    sampler.join()
    wall = time.perf_counter() - start
    tables = {t: store._db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
              for t in ("segments", "items", "frames")}
    out = dict(wall=wall, media=pipe.status.media_seconds, used=store.nbytes, file=store.file_bytes(),
               index=pipe.index.nbytes, received=pipe.levels.received, kept=pipe.levels.kept,
               dropped=pipe.retention.dropped, promoted=pipe.retention.promoted, curve=curve,
               tables=tables, state=pipe.status.state)
    store.close()
    return out


def main() -> None:
    args = parse_args(__doc__, [("--minutes", dict(type=float, default=20.0, help="stream length")),
                                ("--budget-mb", dict(type=float, default=8.0, help="retention_mb"))])
    with tempfile.TemporaryDirectory(prefix="manta-storage-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        length = compose(tmp / "composed.mkv", args.minutes)
        print(f"composed {length:.0f} s in {time.perf_counter() - t:.0f} s", flush=True)
        runs = {}
        for name, extra in (("no retention", {}), (f"retention_mb={args.budget_mb:g}",
                                                   dict(retention_mb=args.budget_mb))):
            s = Settings(data_dir=tmp / name.replace(" ", "_").replace("=", "_"), **extra)
            runs[name] = ingest(tmp / "composed.mkv", s, ModelSet(s))
            print(name, {k: v for k, v in runs[name].items() if k != "curve"}, flush=True)
    rows = []
    for name, r in runs.items():
        hours = r["media"] / 3600
        rows.append([name, f"{r['media']:.0f}", f"{r['used'] / 2**20:.1f}", f"{r['file'] / 2**20:.1f}",
                     f"{r['used'] / 2**20 / hours:.1f}", f"{r['index'] / 2**20 / hours:.2f}",
                     r["tables"]["segments"], r["tables"]["items"], r["tables"]["frames"],
                     f"{r['received']} / {r['kept']} ({r['kept'] / max(1, r['received']):.0%})",
                     r["dropped"], r["promoted"], f"{r['wall'] / r['media']:.2f}"])
    body = [f"One {length / 60:.0f}-minute stream looping {len(CLIPS)} clips with a station ID between them "
            f"(`{STATION_ID}`, once after each clip); default settings "
            "(Whisper base, MiniLM, EfficientNet-Lite0 at 1 fps, RapidOCR, the stream model).", ""]
    body += table(["run", "media s", "store MB (pages in use)", "file MB (+WAL)", "store MB per stream-hour",
                   "micro index MB per stream-hour", "segments held", "shown/label items held",
                   "frames held", "micro segments received / kept", "dropped by retention",
                   "repeats promoted", "RTF"], rows)
    body += ["", "Store size as the stream grows (MB in use at each point of committed media):", ""]
    marks = [0.25, 0.5, 0.75, 1.0]
    curve_rows = []
    for name, r in runs.items():
        points = []
        for m in marks:
            at = [c for c in r["curve"] if c[0] <= m * r["media"]]
            points.append(f"{at[-1][1] / 2**20:.1f}" if at else "-")
        curve_rows.append([name] + points)
    body += table(["run"] + [f"{int(m * 100)}% ({m * length / 60:.0f} min)" for m in marks], curve_rows)
    emit(KEY, section("Disk and index bytes per stream-hour; dedup kept vs received; a disk budget", body),
         args.write)


if __name__ == "__main__":
    main()
