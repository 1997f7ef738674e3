"""Batch functions over torch models, for a ``MicroBatcher``: one call, many streams' requests.

They live beside the models, not in serving/: a recogniser is built on one (perception/asr_hf.py),
and serving/ sits above the models it serves.

Each takes a list of small per-stream payloads (what a stream actor sends: log-mel windows, frames
already at the model's input size) and returns one result per payload. They run on whatever device
the model is on; on a GPU they are where batching pays (bench/gpu_services.py measures them with
models of the real shapes).

- ``WhisperBatch``: a transformers Whisper (e.g. an HF-format large-v3-turbo on a CUDA 13 machine,
  where CTranslate2's CUDA 12 wheels cannot run): one encoder pass and one batched greedy decode for
  all the windows waiting. Requests may ask for different numbers of tokens; the batch decodes to
  the largest and each request keeps its own.
Every batch is padded to a power of two (``bucket``), so the device sees few shapes.
- ``EmbedBatch``: any image tower (SigLIP, CLIP's vision model, …) → unit vectors.
- ``MapBatch``: a dense per-pixel model (a text detector) → its output map per image.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class WindowRequest:
    """One stream's piece of speech as the encoder takes it: a (mel bins, frames) log-mel window."""

    features: np.ndarray
    max_new_tokens: int = 32
    prompt_ids: tuple[int, ...] = ()  # forced decoder start (language, task, previous words)


def _torch():
    import torch

    return torch


def bucket(n: int) -> int:
    """The batch size a batch of ``n`` is padded to: the next power of two. A GPU then sees a few
    shapes, each tuned once at warm-up (cuDNN autotuning a new shape mid-stream stalls every service
    on the device for a second or more: measured, bench/gpu_services.py)."""
    return 1 << max(0, n - 1).bit_length()


def padded(items: list, n: int) -> list:
    return items + [items[-1]] * (bucket(n) - n)


def _placement(model) -> tuple:
    p = next(model.parameters())
    return p.device, p.dtype


def _pixels(images: list[np.ndarray], device, dtype):
    """uint8 (H, W, 3) frames, padded to their bucket, as a (B, 3, H, W) tensor in [0, 1]."""
    torch = _torch()
    x = torch.from_numpy(np.stack(padded(images, len(images)))).to(device).permute(0, 3, 1, 2)
    return x.to(dtype) / 255.0


class WhisperBatch:
    def __init__(self, model, start_ids: tuple[int, ...], eos_id: int | None = None):
        self.model = model
        self.start_ids = start_ids  # <|startoftranscript|> <|lang|> <|transcribe|> <|notimestamps|>…
        self.eos_id = eos_id
        self.device, self.dtype = _placement(model)
        # transformers renamed the decoder's cache argument (past_key_values → cache) in 5.x.
        self._cache_kw = "cache" if "cache" in inspect.signature(model.model.decoder.forward).parameters \
            else "past_key_values"

    def __call__(self, requests: list[WindowRequest]) -> list[list[int]]:
        torch = _torch()
        n = len(requests)
        requests = padded(requests, n)
        with torch.inference_mode():
            feats = torch.from_numpy(np.stack([r.features for r in requests])).to(self.device, self.dtype)
            encoded = self.model.model.encoder(feats).last_hidden_state
            steps = max(r.max_new_tokens for r in requests)
            # One prefix length for the batch: each request's prompt is padded on the left with the
            # start tokens' first id (Whisper ignores repeats of <|startoftranscript|>).
            prefixes = [list(self.start_ids) + list(r.prompt_ids) for r in requests]
            width = max(len(p) for p in prefixes)
            pad = self.start_ids[0] if self.start_ids else prefixes[0][0]
            ids = torch.tensor([[pad] * (width - len(p)) + p for p in prefixes], device=self.device)
            out: list[list[int]] = [[] for _ in requests]
            open_ = [True] * len(requests)
            past, step_ids = None, ids
            for step in range(steps):
                result = self.model.model.decoder(input_ids=step_ids, encoder_hidden_states=encoded,
                                                  use_cache=True, **{self._cache_kw: past})
                past = getattr(result, self._cache_kw)
                nxt = self.model.proj_out(result.last_hidden_state[:, -1]).argmax(-1)
                for i, tok in enumerate(nxt.tolist()):  # one device sync a step, as any decoder loop
                    if open_[i] and (tok == self.eos_id or step >= requests[i].max_new_tokens):
                        open_[i] = False
                    if open_[i]:
                        out[i].append(tok)
                if not any(open_):
                    break
                step_ids = nxt[:, None]
            return out[:n]


class EmbedBatch:
    """``images``: uint8 (H, W, 3) arrays at the tower's input size; normalised on the device."""

    def __init__(self, tower, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)):
        torch = _torch()
        self.tower = tower
        self.device, self.dtype = _placement(tower)
        self.mean = torch.tensor(mean, device=self.device, dtype=self.dtype).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device, dtype=self.dtype).view(1, 3, 1, 1)

    def __call__(self, images: list[np.ndarray]) -> list[np.ndarray]:
        torch = _torch()
        n = len(images)
        with torch.inference_mode():
            out = self.tower(pixel_values=(_pixels(images, self.device, self.dtype) - self.mean) / self.std)
            vec = getattr(out, "pooler_output", None)
            if vec is None:
                vec = out.last_hidden_state.mean(1)
            vec = torch.nn.functional.normalize(vec.float(), dim=-1)
            return list(vec[:n].cpu().numpy())


class MapBatch:
    """A per-pixel model over same-sized uint8 images → one float32 map per image."""

    def __init__(self, model):
        self.model = model
        self.device, self.dtype = _placement(model)

    def __call__(self, images: list[np.ndarray]) -> list[np.ndarray]:
        torch = _torch()
        with torch.inference_mode():
            out = self.model(_pixels(images, self.device, self.dtype))
            return list(out[:len(images)].float().cpu().numpy())
