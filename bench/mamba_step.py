"""Stream model cost: per-step latency and memory over 100,000 steps (CPU; GPU and kernels when present).

One step is what a stream pays per committed micro segment (about every 3 s): project the fused
features, advance the Mamba state, predict the next segment. Memory must stay flat however long
the stream runs: the state is a fixed set of tensors.
"""

from __future__ import annotations

import gc
import os
import time

import numpy as np
import torch

from bench.common import emit, ms, parse_args, pct, section, table
from manta_models.statespace.mamba import HAVE_KERNELS, MambaConfig, MambaStack
from manta_models.statespace.stream_model import StreamStepper, load_stream_model

KEY = "mamba-step"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def random_blocks(model, rng: np.random.Generator, n: int) -> list[dict]:
    out = []
    for _ in range(n):
        d = {}
        for b, dim in model.cfg.blocks.items():
            v = rng.standard_normal(dim).astype(np.float32)
            d[b] = v if b == "stats" else v / np.linalg.norm(v)
        out.append(d)
    return out


def step_latency(device: str, n: int) -> list[float]:
    model = load_stream_model("bundled", device=device)
    stepper = StreamStepper(model, device=device)
    inputs = random_blocks(model, np.random.default_rng(0), 64)
    for b in inputs[:20]:
        stepper.step(b)
    times = []
    for i in range(n):
        t = time.perf_counter()
        stepper.step(inputs[i % len(inputs)])
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return times


def rss_over_steps(total: int, every: int) -> list[tuple[int, float]]:
    model = load_stream_model("bundled")
    stepper = StreamStepper(model)
    inputs = random_blocks(model, np.random.default_rng(1), 256)
    for b in inputs[:100]:  # allocator warm-up before the baseline reading
        stepper.step(b)
    gc.collect()
    points = [(0, rss_mb())]
    for i in range(1, total + 1):
        stepper.step(inputs[i % len(inputs)])
        if i % every == 0:
            points.append((i, rss_mb()))
    return points


def kernel_check() -> list[str]:
    """The mamba-ssm/causal-conv1d kernel path against the torch path on the same weights."""
    torch.manual_seed(0)
    cfg = MambaConfig(d_model=64, n_layers=2)
    model = MambaStack(cfg).eval()
    x = torch.randn(4, 256, cfg.d_model)
    with torch.no_grad():
        ref, ref_state = model(x)
        gpu = model.cuda()
        y, state = gpu(x.cuda())
        step_state = gpu.initial_state(4)
        ys = []
        for t in range(x.shape[1]):
            out, step_state = gpu.step(x[:, t].cuda(), step_state)
            ys.append(out)
    par = (y.cpu() - ref).abs().max().item()
    rec = (torch.stack(ys, 1).cpu() - ref).abs().max().item()
    st = (step_state.ssm.cpu() - ref_state.ssm).abs().max().item()
    return [f"- Kernels: mamba-ssm/causal-conv1d {'used' if HAVE_KERNELS else 'NOT installed (torch path on CUDA)'}.",
            f"- Max |difference| vs the CPU torch path, float32, batch 4 x 256 steps: parallel forward "
            f"{par:.2e}, recurrent steps {rec:.2e}, final SSM state {st:.2e}."]


def main() -> None:
    args = parse_args(__doc__, [("--steps", dict(type=int, default=100_000)),
                                ("--latency-steps", dict(type=int, default=3000))])
    torch.set_num_threads(1)  # what a stream actor uses (torch_threads)
    rows = []
    cpu = step_latency("cpu", args.latency_steps)
    rows.append(["CPU, 1 thread", ms(pct(cpu, 50)), ms(pct(cpu, 95)), ms(pct(cpu, 99))])
    lines = []
    if torch.cuda.is_available():
        gpu = step_latency("cuda", args.latency_steps)
        rows.append([f"{torch.cuda.get_device_name()}", ms(pct(gpu, 50)), ms(pct(gpu, 95)), ms(pct(gpu, 99))])
        lines = kernel_check()
    points = rss_over_steps(args.steps, max(1, args.steps // 10))
    growth = points[-1][1] - points[0][1]
    model = load_stream_model("bundled")
    state = StreamStepper(model).state
    body = [f"Bundled stream model: {sum(p.numel() for p in model.parameters()):,} parameters; "
            f"per-stream state {state.nbytes:,} bytes (conv {tuple(state.conv.shape)}, "
            f"SSM {tuple(state.ssm.shape)}).", "",
            "Per-step latency (one micro segment, features already extracted):", "",
            *table(["device", "p50", "p95", "p99"], rows), "", *lines, "",
            f"RSS over {args.steps:,} steps (one stream, CPU): "
            + ", ".join(f"{n:,}: {mb:.1f} MB" for n, mb in points[:: max(1, len(points) // 5)]),
            "", f"Growth from the first to the last reading: **{growth:+.2f} MB** (goal: flat, <= 1 MB).",
            f"pid {os.getpid()}"]
    title = "Stream model: step latency and memory" + (" (GPU machine)" if torch.cuda.is_available() else "")
    emit(KEY + ("-gpu" if torch.cuda.is_available() else ""), section(title, body[:-1]), args.write)


if __name__ == "__main__":
    main()
