"""Memory over a day of media: RSS of one stream's pipeline across a 24 h simulated stream.

The stream is silence with JFK's 11 s clip every 5 minutes (streaming.tools.soak), read as a fast file so
a day of media takes minutes, through the real pipeline in this process (PyAV, Silero VAD, Whisper
tiny.en, MiniLM, the stream model, FAISS, SQLite). Sampled at every hour of media: the process's
RSS and what the index holds (FAISS vectors of the three levels plus the SQLite file), so growth
beyond the index bytes is visible. Goal: flat apart from index bytes.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import psutil

from .common import MEDIA, emit, parse_args, section, table


KEY = "soak"


def run(hours: float, every_s: float, retention_hours: float | None = None) -> list[dict]:
    from manta_models.loader import ModelSet
    from streaming.ingest.pipeline import StreamPipeline
    from streaming.settings import Settings
    from streaming.tools.soak import make_soak_audio
    from streaming.source.media import parse_source
    from streaming.memory.store import StreamStore

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = make_soak_audio(tmp / "day.flac", hours, MEDIA / "jfk_inaugural_1961.flac", every_s=every_s)
        settings = Settings(asr_model="tiny.en", data_dir=tmp / "data", retention_hours=retention_hours)
        db = tmp / "soak.sqlite"
        pipe = StreamPipeline("soak", "soak", parse_source(str(path)), settings, ModelSet(settings).for_stream,
                              store=StreamStore(db))
        pipe.probe()
        t0 = time.monotonic()
        pipe.start()
        proc, next_hour = psutil.Process(), 0

        def sample(snap: dict) -> None:
            vectors = len(pipe.index) if pipe.index is not None else 0
            parents = sum(len(pipe.levels.parents(lv)) for lv in ("meso", "macro")) if pipe.levels else 0
            dim = pipe.index.dim if pipe.index is not None else 0
            rows.append(dict(hour=snap["media_seconds"] / 3600, wall=time.monotonic() - t0,
                             rss=proc.memory_info().rss / 2**20, segments=snap["segments"],
                             vector_mb=(vectors + parents) * dim * 4 / 2**20,
                             sqlite_mb=db.stat().st_size / 2**20 if db.exists() else 0.0))
            print(rows[-1], flush=True)

        while not pipe.join(timeout=1.0):
            snap = pipe.snapshot()
            if snap["media_seconds"] >= next_hour * 3600:
                sample(snap)
                next_hour += 1
        sample(pipe.snapshot())
    return rows


def main() -> None:
    args = parse_args(__doc__, [("--hours", dict(type=float, default=24.0)),
                                ("--every", dict(type=float, default=300.0, help="seconds between clips")),
                                ("--retention-hours", dict(type=float, default=None,
                                                           help="keep only the last N hours (default: all)"))])
    rows = run(args.hours, args.every, args.retention_hours)
    base = next((r for r in rows if r["hour"] >= 1), rows[0])
    out = [[f"{r['hour']:.1f}", f"{r['wall']:.0f} s", f"{r['rss']:.0f}", f"{r['rss'] - base['rss']:+.0f}",
            r["segments"], f"{r['vector_mb']:.1f}", f"{r['sqlite_mb']:.1f}"] for r in rows]
    last = rows[-1]
    growth = last["rss"] - base["rss"]
    index_growth = last["vector_mb"] - base["vector_mb"]
    body = [
        f"A {args.hours:g} h stream (silence with JFK's 11 s clip every {args.every:g} s, "
        "`streaming/tools/soak.py`), read as a fast file through one real pipeline (Whisper `tiny.en`), "
        "sampled at each hour of media. RSS and its change since hour 1 (models loaded, pools warm) in MiB; "
        "vectors = FAISS bytes of micro segments and meso/macro summaries; SQLite = the stream's file "
        "on disk (not in RSS)." + (f" Retention: the last {args.retention_hours:g} h of media are kept."
                                  if args.retention_hours else " No retention: every segment is kept."),
        "",
        *table(["media h", "wall", "RSS MiB", "Δ since 1 h", "segments", "vectors MiB", "SQLite MiB"], out),
        "",
        f"From hour 1 to hour {last['hour']:.1f}: RSS {growth:+.0f} MiB, of which index vectors "
        f"{index_growth:+.1f} MiB; per hour of media {growth / max(last['hour'] - base['hour'], 1e-9):+.1f} MiB.",
    ]
    key = KEY + (f"[retention_hours={args.retention_hours:g}]" if args.retention_hours else "")
    emit(key, section("Memory over a day of media (bench/soak.py)" + (
        f", retention {args.retention_hours:g} h" if args.retention_hours else ""), body), args.write)


if __name__ == "__main__":
    main()
