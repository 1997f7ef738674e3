"""Train Manta's stream model on features it extracts itself from any folder of media.

    python -m manta_models.train_stream ../shared/media --out manta_models/statespace/weights/stream_mamba.pt

Features come from the real ingest pipeline (decode, Whisper, MiniLM, EfficientNet-Lite0, the
fusion of streaming.ingest.features), so training sees exactly what a live stream produces; they are
cached per file. The objective is next-segment prediction (what the surprise signal measures)
plus a contrastive term aligning what is seen with what is said in the same window (InfoNCE, as
in MANTA). Sequences are the files themselves and random concatenations of them, so the model
also learns that a change of programme is unpredictable.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from streaming.records import SegmentFeatures
from streaming.ingest.pipeline import StreamPipeline
from streaming.settings import Settings
from streaming.source.media import parse_source
from streaming.memory.store import StreamStore

from manta_models.statespace.stream_model import StreamModel, StreamModelConfig, save_stream_model

MEDIA_SUFFIXES = {".mp4", ".mkv", ".webm", ".mov", ".ts", ".flac", ".wav", ".mp3", ".m4a", ".ogg"}


def media_files(folders: list[Path], exclude: list[str] = ()) -> list[Path]:
    files = sorted(p for f in folders for p in Path(f).expanduser().rglob("*")
                   if p.suffix.lower() in MEDIA_SUFFIXES and p.is_file())
    return [p for p in files if not any(x in p.name for x in exclude)]


def _cache_key(path: Path, settings: Settings) -> str:
    h = hashlib.sha256()
    h.update(str(path.resolve()).encode())
    h.update(str(path.stat().st_size).encode() + str(path.stat().st_mtime_ns).encode())
    h.update(f"{settings.asr_model}|{settings.micro_target_s}|{settings.frame_fps}|{settings.ocr}|v3".encode())
    return h.hexdigest()[:20]


@dataclass
class Extracted:
    """One file's micro segments as the stream model sees them."""

    features: list[SegmentFeatures]
    t0: np.ndarray
    t1: np.ndarray


def extract(path: Path, settings: Settings, models) -> Extracted:
    """Run the ingest pipeline on one file and return its segments' features and spans, in order."""
    cache = settings.cache_dir / "features" / f"{path.stem}-{_cache_key(path, settings)}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            return Extracted(_unpack(z), z["t0"], z["t1"])
    with tempfile.TemporaryDirectory() as tmp:
        store = StreamStore(Path(tmp) / "s.sqlite")
        pipe = StreamPipeline("train", path.name, parse_source(str(path)), settings, models, store=store)
        pipe.probe()
        pipe.start()
        pipe.join()
        if pipe.status.state == "failed":
            raise RuntimeError(f"{path.name}: {pipe.status.last_error}")
        restored = store.load("train")
        store.close()
    kept = [(s, f) for s, f in zip(restored.segments, restored.features) if f is not None]
    out = Extracted([f for _, f in kept], np.array([s.t0 for s, _ in kept]), np.array([s.t1 for s, _ in kept]))
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, t0=out.t0, t1=out.t1, **_pack(out.features))
    return out


def _pack(feats: list[SegmentFeatures]) -> dict[str, np.ndarray]:
    out = {}
    for name in ("said", "shown", "seen", "stats"):
        vals = [getattr(f, name) for f in feats]
        dim = next((len(v) for v in vals if v is not None), 1)
        out[name] = np.stack([v if v is not None else np.full(dim, np.nan, np.float32) for v in vals]) \
            if vals else np.zeros((0, dim), np.float32)
    return out


def _unpack(z) -> list[SegmentFeatures]:
    def get(name, i):
        v = z[name][i]
        return None if np.isnan(v).any() else v
    return [SegmentFeatures(get("said", i), get("shown", i), get("seen", i), z["stats"][i])
            for i in range(len(z["stats"]))]


def to_tensors(seq: list[SegmentFeatures], blocks: dict[str, int]):
    """One sequence as feats[b] (L, d_b) and masks[b] (L,)."""
    feats, masks = {}, {}
    for b, d in blocks.items():
        vals = [f.blocks().get(b) for f in seq]
        masks[b] = torch.tensor([v is not None and v.shape == (d,) for v in vals])
        feats[b] = torch.from_numpy(np.stack([v if m else np.zeros(d, np.float32)
                                              for v, m in zip(vals, masks[b].tolist())]).astype(np.float32))
    return feats, masks


def batches(seqs: list[list[SegmentFeatures]], blocks: dict[str, int], rng: random.Random,
            batch: int, length: int, block_drop: float):
    """Random crops of files and of concatenations of two files (a change of programme)."""
    while True:
        items = []
        for _ in range(batch):
            seq = rng.choice(seqs)
            if len(seqs) > 1 and rng.random() < 0.5:
                other = rng.choice([s for s in seqs if s is not seq])
                cut = rng.randrange(1, max(2, len(seq)))
                seq = seq[:cut][-length // 2:] + other[:length]
            start = rng.randrange(0, max(1, len(seq) - length + 1))
            items.append(seq[start:start + length])
        n = min(len(x) for x in items)
        tens = [to_tensors(x[:n], blocks) for x in items]
        feats = {b: torch.stack([t[0][b] for t in tens]) for b in blocks}
        masks = {b: torch.stack([t[1][b] for t in tens]) for b in blocks}
        for b in blocks:  # modality dropout: a stream may lack any block, the model must cope
            if b != "stats":
                masks[b] &= torch.rand(masks[b].shape) >= block_drop
        yield feats, masks


def train(seqs: list[list[SegmentFeatures]], cfg: StreamModelConfig, *, steps: int, batch: int,
          length: int, lr: float, align_weight: float, seed: int, log_every: int = 25):
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = StreamModel(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    curve, running = [], None
    data = batches(seqs, cfg.blocks, rng, batch, length, block_drop=0.15)
    model.train()
    for step in range(1, steps + 1):
        feats, masks = next(data)
        parts = model.losses(feats, masks)
        loss = parts["predict"] + align_weight * parts["align"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        values = {k: float(v.detach()) for k, v in parts.items()}
        running = values if running is None else {k: 0.9 * running[k] + 0.1 * values[k] for k in values}
        if step % log_every == 0 or step == steps:
            curve.append({"step": step, **{k: round(v, 4) for k, v in running.items()}})
            print(f"step {step:5d}  predict {running['predict']:.4f}  align {running['align']:.4f}",
                  flush=True)
    return model.eval(), curve


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m manta_models.train_stream", description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+", type=Path, help="folders of media files (searched recursively)")
    ap.add_argument("--out", type=Path, default=Path("manta_models/statespace/weights/stream_mamba.pt"))
    ap.add_argument("--exclude", action="append", default=[], help="skip files whose name contains this")
    ap.add_argument("--with-demo", action="store_true", help="also train on the generated demo bulletin")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=24, help="segments per training sequence")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--align-weight", type=float, default=0.2)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for f in args.folders:
        if not f.expanduser().is_dir():
            print(f"error: {f} is not a folder", file=sys.stderr)
            return 2
    from manta_models.loader import ModelSet

    from manta_models.statespace.mamba import MambaConfig

    settings = Settings(stream_model="off", pace="fast")
    models = ModelSet(settings).for_stream
    files = media_files(args.folders, args.exclude)
    if args.with_demo:
        from streaming.tools.demo import ensure_demo_media

        from manta_models.tts import demo_speaker

        files.append(ensure_demo_media(settings.cache_dir, *demo_speaker()).path)
    if not files:
        print("error: no media files found", file=sys.stderr)
        return 2
    t0 = time.time()
    seqs, data = [], []
    for i, path in enumerate(files, 1):
        feats = extract(path, settings, models).features
        print(f"[{i}/{len(files)}] {path.name}: {len(feats)} segments", flush=True)
        if len(feats) >= 2:
            seqs.append(feats)
            data.append({"file": path.name, "segments": len(feats)})
    extract_s = time.time() - t0
    cfg = StreamModelConfig(mamba=MambaConfig(d_model=args.d_model, n_layers=args.layers))
    t1 = time.time()
    model, curve = train(seqs, cfg, steps=args.steps, batch=args.batch, length=args.length, lr=args.lr,
                         align_weight=args.align_weight, seed=args.seed)
    meta = {"data": data, "command": "python -m manta_models.train_stream " + " ".join(sys.argv[1:] if argv is None else argv),
            "curve": curve, "params": sum(p.numel() for p in model.parameters()),
            "extract_s": round(extract_s, 1), "train_s": round(time.time() - t1, 1),
            "torch": str(torch.__version__)}
    save_stream_model(model, args.out, meta)
    print(json.dumps({k: v for k, v in meta.items() if k != "curve"}, indent=1))
    print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
