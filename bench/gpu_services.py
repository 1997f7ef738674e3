"""How many live streams one GPU's shared model services hold in real time.

Synthetic live streams send what a stream actor sends, at real-time pace, to three services running
the project's own batching code (manta_models/serving: ``MicroBatcher`` + the torch batch functions)
in one process, without Ray, sharing one GPU:
- speech: Whisper-small shapes (12+12 layers, d=768), one 30 s log-mel window every 5 s per stream,
  decoding 16 tokens (≈0.2 windows/s and ≈3.2 tokens/s a stream, a live stream's demand);
- frames: SigLIP-B/16 shapes (224 px, 12 layers, d=768), one frame a second per stream;
- on-screen text: a DB-style text detector of PP-OCR's shapes (depthwise-separable backbone, FPN neck,
  probability head) on 736x416 frames, one every 2 s per stream.
Weights are random (throughput does not depend on them; nothing can be downloaded there): the
decoder is made to emit exactly the tokens asked for. A stream count holds real time when no request
was refused for backpressure, every request offered was answered, and each service's p95 queue wait
is at most 1 s.

    python -m bench.gpu_services --device cuda --streams 32,64,128,256,512 --seconds 20 --out DIR
    python -m bench.gpu_services --device cpu --tiny --streams 2,4 --seconds 3   # a dry run of the script

``--services`` picks the services one process runs. In one process the three contend for Python's GIL
(measured on an H200: ~1 s a batch whatever its size); Ray Serve runs each deployment's replica in
its own process, so the faithful measurement is one process per service, all at once on one GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

from manta_models.serving.batcher import MicroBatcher
from manta_models.perception.torch_batch import EmbedBatch, MapBatch, WhisperBatch, WindowRequest

START_IDS = (50258, 50259, 50359, 50363)  # <|startoftranscript|><|en|><|transcribe|><|notimestamps|>


def build_models(torch, device: str, tiny: bool):
    from torch import nn
    from transformers import SiglipVisionConfig, SiglipVisionModel, WhisperConfig, WhisperForConditionalGeneration

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    if tiny:
        w = WhisperConfig(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                          decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128)
        s = SiglipVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                               image_size=224, patch_size=16)
    else:  # openai/whisper-small and google/siglip-base-patch16-224 shapes
        w = WhisperConfig(d_model=768, encoder_layers=12, decoder_layers=12, encoder_attention_heads=12,
                          decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072)
        s = SiglipVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                               num_attention_heads=12, image_size=224, patch_size=16)
    w.vocab_size, w.num_mel_bins, w.max_source_positions, w.max_target_positions = 51865, 80, 1500, 448

    def block(cin, cout, stride):  # depthwise-separable, as PP-LCNet / MobileNetV3
        return nn.Sequential(nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                             nn.Hardswish(), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.Hardswish())

    class TextDetector(nn.Module):
        """DB-style: backbone stages at strides 4-32, an FPN neck to 1/4, a probability map."""

        def __init__(self, widths=(16, 24, 48, 96, 192), neck=96):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                      nn.Hardswish())
            self.stages = nn.ModuleList(nn.Sequential(block(widths[i], widths[i + 1], 2),
                                                      block(widths[i + 1], widths[i + 1], 1),
                                                      block(widths[i + 1], widths[i + 1], 1)) for i in range(4))
            self.lateral = nn.ModuleList(nn.Conv2d(c, neck, 1) for c in widths[1:])
            self.head = nn.Sequential(nn.Conv2d(neck, neck // 4, 3, padding=1), nn.BatchNorm2d(neck // 4), nn.ReLU(),
                                      nn.ConvTranspose2d(neck // 4, neck // 4, 2, 2), nn.ReLU(),
                                      nn.ConvTranspose2d(neck // 4, 1, 2, 2), nn.Sigmoid())

        def forward(self, x):
            x, feats = self.stem(x), []
            for stage in self.stages:
                x = stage(x)
                feats.append(x)
            top = self.lateral[-1](feats[-1])
            for lat, f in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):
                top = lat(f) + nn.functional.interpolate(top, size=f.shape[-2:], mode="nearest")
            return self.head(top)

    torch.manual_seed(0)
    whisper = WhisperForConditionalGeneration(w).to(device, dtype).eval()
    siglip = SiglipVisionModel(s).to(device, dtype).eval()
    detector = TextDetector().to(device, dtype).eval()
    return whisper, siglip, detector


def run(args) -> dict:
    import torch

    torch.backends.cudnn.benchmark = True
    whisper, siglip, detector = build_models(torch, args.device, args.tiny)
    rng = np.random.default_rng(0)
    mel = [WindowRequest(rng.standard_normal((80, 3000)).astype(np.float32), max_new_tokens=16) for _ in range(8)]
    frames = [rng.integers(0, 255, (224, 224, 3), dtype=np.uint8) for _ in range(8)]
    pages = [rng.integers(0, 255, (416, 736, 3), dtype=np.uint8) for _ in range(8)]
    fns = {"asr": WhisperBatch(whisper, START_IDS, eos_id=None), "frames": EmbedBatch(siglip),
           "ocr_det": MapBatch(detector)}
    payload = {"asr": mel, "frames": frames, "ocr_det": pages}
    fns = {k: f for k, f in fns.items() if k in args.services}
    period = {"asr": 5.0, "frames": 1.0, "ocr_det": 2.0}  # seconds between one stream's requests
    shape = {"asr": (128, 0.05), "frames": (256, 0.02), "ocr_det": (64, 0.05)}  # max_batch, max_wait_s
    if args.device.startswith("cuda"):  # each service its own CUDA stream, as separate replicas would be
        def on_stream(fn, s=None):
            s = torch.cuda.Stream()

            def call(batch):
                with torch.cuda.stream(s):
                    return fn(batch)
            return call
        fns = {k: on_stream(f) for k, f in fns.items()}
    print("warming up", flush=True)
    for name, fn in fns.items():  # kernels, cuDNN autotuning and allocator pools for every batch size
        n = 1
        while n <= shape[name][0]:  # every bucket (power of two) the batch functions pad to
            fn([payload[name][i % 8] for i in range(n)])
            n *= 2
    results = {}
    for n in args.streams:
        results[n] = one_load(fns, payload, period, shape, n, args.seconds)
        row = results[n]
        print(f"{n:4d} streams: " + "  ".join(
            f"{k} p95 wait {v['wait_p95_s']:.3f}s batch {v['mean_batch']:.1f} ({v['batch_ms']} ms) shed {v['shed']} "
            f"done {v['done']}/{v['offered']}" for k, v in row["services"].items())
            + f"  -> {'holds' if row['holds'] else 'FAILS'}", flush=True)
    return results


def one_load(fns, payload, period, shape, n: int, seconds: float) -> dict:
    batchers = {k: MicroBatcher(fn, max_batch=shape[k][0], max_wait_s=shape[k][1], max_in_flight=2, name=k)
                for k, fn in fns.items()}
    rng = np.random.default_rng(n)
    latencies = {k: [] for k in fns}
    counts = {k: {"offered": 0, "shed": 0, "failed": 0} for k in fns}
    lock = threading.Lock()

    def offer(name: str) -> None:
        # Every stream sends on its own clock, phases spread at random like independent broadcasts.
        phase = rng.uniform(0, period[name], n)
        t0 = time.monotonic()
        nxt = t0 + phase
        while True:
            now = time.monotonic()
            if now - t0 >= seconds:
                return
            due = np.flatnonzero(nxt <= now)
            for i in due:
                counts[name]["offered"] += 1
                sent = time.monotonic()
                try:
                    fut = batchers[name].submit(payload[name][i % 8], key=str(i), timeout=0)
                except TimeoutError:
                    counts[name]["shed"] += 1
                else:
                    def done(f, sent=sent, name=name):
                        with lock:
                            if f.exception() is None:
                                latencies[name].append(time.monotonic() - sent)
                            else:
                                counts[name]["failed"] += 1
                    fut.add_done_callback(done)
                nxt[i] += period[name]
            time.sleep(max(0.0, min(0.005, float(nxt.min()) - time.monotonic())))

    threads = [threading.Thread(target=offer, args=(k,)) for k in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    drain = time.monotonic() + 15.0
    while time.monotonic() < drain and any(b.stats().queued for b in batchers.values()):
        time.sleep(0.05)
    time.sleep(0.5)
    out = {}
    for k, b in batchers.items():
        st = b.stats()
        b.close()
        lat = sorted(latencies[k])
        done = len(lat)
        c = counts[k]
        out[k] = {"offered": c["offered"], "done": done, "shed": c["shed"], "failed": c["failed"],
                  "wait_p50_s": round(st.wait_p50_s, 4), "wait_p95_s": round(st.wait_p95_s, 4),
                  "wait_max_s": round(st.wait_max_s, 4), "mean_batch": round(st.mean_batch, 2),
                  "max_batch": st.max_batch_seen, "busy_frac": round(st.busy_s / seconds, 3),
                  "batch_ms": round(1000 * st.busy_s / st.batches, 1) if st.batches else None,
                  "latency_p95_s": round(lat[int(0.95 * (done - 1))], 4) if done else None}
    holds = all(v["shed"] == 0 and v["failed"] == 0 and v["done"] == v["offered"] - v["shed"]
                and v["wait_p95_s"] <= 1.0 for v in out.values())
    return {"streams": n, "seconds": seconds, "services": out, "holds": holds}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--streams", default="32,64,128,256,512")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--tiny", action="store_true", help="tiny models: check the script, not the GPU")
    ap.add_argument("--services", default="asr,frames,ocr_det",
                    help="which services this process runs (run one per process, as Serve replicas are)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    args.streams = [int(x) for x in args.streams.split(",")]
    args.services = args.services.split(",")
    import torch

    info = {"device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
            "torch": torch.__version__, "tiny": args.tiny}
    import transformers

    info["transformers"] = transformers.__version__
    print(info, flush=True)
    results = run(args)
    best = max((n for n, r in results.items() if r["holds"]), default=0)
    print(f"most streams holding real time: {best}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"gpu_services_{'_'.join(args.services)}.json").write_text(json.dumps({"info": info, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
