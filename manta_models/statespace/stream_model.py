"""Manta's own stream model: a small Mamba over fused micro-segment features.

Per segment it reads the blocks of ``streaming.ingest.features.SegmentFeatures`` (each projected to the
model width; a learned stand-in replaces an absent block), advances the recurrent state one step
and predicts the next segment's blocks. What it gives the stream:

* surprise: how far this segment is from what the state predicted (per-block cosine error, the
  statistics block by squared error), the novelty signal for density and boundaries;
* coherence: agreement of what is said with what is seen, in the space the contrastive alignment
  term trains (MANTA's seen/said InfoNCE);
* a compact summary of the state (the unit-length output, ``d_model`` floats).

No pretrained Mamba exists offline, so the weights Manta ships come from ``train_stream.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from manta_models.statespace.mamba import MambaConfig, MambaStack, MambaState
from manta_models.packaged import ModelError

BUNDLED = Path(__file__).with_name("weights") / "stream_mamba.pt"
DEFAULT_BLOCKS = {"said": 384, "shown": 384, "seen": 1280, "stats": 10}
ERROR_WEIGHTS = {"said": 1.0, "shown": 1.0, "seen": 1.0, "stats": 0.5}


@dataclass(frozen=True)
class StreamModelConfig:
    blocks: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_BLOCKS))
    mamba: MambaConfig = field(default_factory=MambaConfig)
    align_dim: int = 32
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return {"blocks": dict(self.blocks), "mamba": self.mamba.to_dict(), "align_dim": self.align_dim,
                "dropout": self.dropout}

    @classmethod
    def from_dict(cls, d: dict) -> "StreamModelConfig":
        return cls(blocks=dict(d["blocks"]), mamba=MambaConfig(**d["mamba"]), align_dim=d["align_dim"],
                   dropout=d.get("dropout", 0.0))


def block_error(name: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-position error of one block: cosine distance for embeddings, bounded MSE for stats."""
    if name == "stats":
        return 1.0 - torch.exp(-((pred - target) ** 2).mean(-1))
    return 1.0 - F.cosine_similarity(pred, target, dim=-1)


class StreamModel(nn.Module):
    def __init__(self, cfg: StreamModelConfig):
        super().__init__()
        self.cfg = cfg
        dm = cfg.mamba.d_model
        self.names = list(cfg.blocks)
        self.proj = nn.ModuleDict({b: nn.Linear(d, dm) for b, d in cfg.blocks.items()})
        self.missing = nn.Parameter(torch.zeros(len(self.names), dm))
        self.drop = nn.Dropout(cfg.dropout)
        self.backbone = MambaStack(cfg.mamba)
        self.heads = nn.ModuleDict({b: nn.Linear(dm, d) for b, d in cfg.blocks.items()})
        for head in self.heads.values():  # start as "the next segment is like this one"
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.align_said = nn.Linear(dm, cfg.align_dim)
        self.align_seen = nn.Linear(dm, cfg.align_dim)

    def embed(self, feats: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]):
        """feats[b]: (..., d_b); masks[b]: (...) bool. Returns the step input and per-block parts."""
        parts = {b: self.proj[b](feats[b]) for b in self.names}
        x = sum(torch.where(masks[b].unsqueeze(-1), parts[b], self.missing[i])
                for i, b in enumerate(self.names))
        return self.drop(x), parts

    def predict(self, h: torch.Tensor, prev: dict, prev_masks: dict) -> dict[str, torch.Tensor]:
        """The next segment's blocks: this segment's blocks plus a learned change.

        Residual on purpose: with zero heads it IS the cosine-to-previous baseline, so training can
        only add what the state knows about how streams evolve (bench/boundaries.py: a direct
        prediction lost to that baseline on shot cuts)."""
        return {b: self.heads[b](h) + torch.where(prev_masks[b].unsqueeze(-1), prev[b], 0.0)
                for b in self.names}

    def surprise(self, pred: dict, feats: dict, masks: dict) -> torch.Tensor:
        """Weighted mean error over the blocks present; NaN where none is."""
        num = den = 0.0
        for b in self.names:
            w = ERROR_WEIGHTS.get(b, 1.0) * masks[b].float()
            num = num + w * block_error(b, pred[b], feats[b])
            den = den + w
        return num / den.clamp(min=1e-9) + torch.where(den > 0, 0.0, float("nan"))

    def alignment(self, parts: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit vectors of what is said and what is seen (picture plus on-screen text)."""
        said = F.normalize(self.align_said(parts["said"]), dim=-1)
        seen = F.normalize(self.align_seen(parts["seen"] + parts.get("shown", 0.0)), dim=-1)
        return said, seen

    def forward(self, feats: dict, masks: dict, state: MambaState | None = None):
        """All steps of a batch of sequences: feats[b] (batch, length, d_b)."""
        x, parts = self.embed(feats, masks)
        h, state = self.backbone(x, state)
        return h, state, parts

    def losses(self, feats: dict, masks: dict, tau: float = 0.1) -> dict[str, torch.Tensor]:
        """Next-segment prediction plus seen/said InfoNCE over the windows that have both."""
        h, _, parts = self(feats, masks)
        pred = self.predict(h[:, :-1], {b: feats[b][:, :-1] for b in self.names},
                            {b: masks[b][:, :-1] for b in self.names})
        nxt = {b: feats[b][:, 1:] for b in self.names}
        nmask = {b: masks[b][:, 1:] for b in self.names}
        err = self.surprise(pred, nxt, nmask)
        predict_loss = err[~torch.isnan(err)].mean()
        both = masks["said"] & masks["seen"]
        align_loss = h.new_zeros(())
        if int(both.sum()) >= 2:
            said, seen = self.alignment(parts)
            a, v = said[both], seen[both]
            logits = a @ v.T / tau
            target = torch.arange(len(a), device=a.device)
            align_loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        return {"predict": predict_loss, "align": align_loss}


@dataclass
class StepOutput:
    surprise: float | None  # raw prediction error in [0, ~2]; None on the first step
    coherence: float | None  # cosine of said vs seen; None unless both are present
    summary: np.ndarray  # (d_model,) unit-length state summary


class StreamStepper:
    """One stream's recurrent state around a shared model: step per committed micro segment."""

    def __init__(self, model: StreamModel, device: str = "cpu"):
        self.model = model.eval()
        self.device = device
        self.state = model.backbone.initial_state(1)
        self.prev_h: torch.Tensor | None = None  # output of the last step: predicts the next
        self.prev: tuple[dict, dict] | None = None  # the last step's features and masks
        self.steps = 0

    def _tensors(self, blocks: dict[str, np.ndarray | None]):
        feats, masks = {}, {}
        for b, d in self.model.cfg.blocks.items():
            v = blocks.get(b)
            if v is not None and np.asarray(v).shape != (d,):
                raise ValueError(f"feature block {b!r} must have shape ({d},), got {np.shape(v)}")
            present = v is not None and bool(np.isfinite(v).all())
            arr = np.asarray(v, dtype=np.float32) if present else np.zeros(d, np.float32)
            feats[b] = torch.from_numpy(arr).to(self.device).unsqueeze(0)
            masks[b] = torch.tensor([present], device=self.device)
        return feats, masks

    @torch.inference_mode()
    def step(self, blocks: dict[str, np.ndarray | None]) -> StepOutput:
        m = self.model
        feats, masks = self._tensors(blocks)
        surprise = None
        if self.prev_h is not None:
            value = float(m.surprise(m.predict(self.prev_h, *self.prev), feats, masks)[0])
            surprise = value if math.isfinite(value) else None
        x, parts = m.embed(feats, masks)
        h, self.state = m.backbone.step(x, self.state)
        self.prev_h, self.prev = h, (feats, masks)
        self.steps += 1
        coherence = None
        if bool(masks["said"][0]) and bool(masks["seen"][0]):
            said, seen = m.alignment(parts)
            coherence = float((said * seen).sum())
        summary = F.normalize(h[0], dim=-1).cpu().numpy().astype(np.float32)
        return StepOutput(surprise, coherence, summary)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to resume exactly: tensors as numpy, for a checkpoint."""
        d = {"conv": self.state.conv.cpu().numpy(), "ssm": self.state.ssm.cpu().numpy(),
             "steps": np.array(self.steps, dtype=np.int64)}
        if self.prev_h is not None:
            d["prev_h"] = self.prev_h.cpu().numpy()
            feats, masks = self.prev
            for b in self.model.names:
                d[f"prev.{b}"] = feats[b].cpu().numpy()
                d[f"prev_mask.{b}"] = masks[b].cpu().numpy()
        return d

    def load_state_dict(self, d: dict[str, np.ndarray]) -> None:
        expect = self.model.backbone.initial_state(1)
        conv, ssm = torch.from_numpy(np.array(d["conv"])), torch.from_numpy(np.array(d["ssm"]))
        if conv.shape != expect.conv.shape or ssm.shape != expect.ssm.shape:
            raise ValueError("checkpointed state does not fit this model (was it retrained?)")
        self.state = MambaState(conv.to(self.device), ssm.to(self.device))
        self.prev_h, self.prev = None, None
        if "prev_h" in d:
            t = lambda k: torch.from_numpy(np.array(d[k])).to(self.device)  # noqa: E731
            self.prev_h = t("prev_h")
            self.prev = ({b: t(f"prev.{b}") for b in self.model.names},
                         {b: t(f"prev_mask.{b}") for b in self.model.names})
        self.steps = int(d["steps"])


def save_stream_model(model: StreamModel, path: Path, meta: dict | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": model.cfg.to_dict(), "state_dict": model.state_dict(), "meta": meta or {}}, path)


def load_stream_model(source: str | Path = "bundled", device: str = "cpu") -> StreamModel:
    """'bundled' (the weights in this package) or the path of a file saved by train_stream."""
    path = BUNDLED if str(source) == "bundled" else Path(source).expanduser()
    if not path.is_file():
        raise ModelError(f"stream model weights not found at {path}")
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
        model = StreamModel(StreamModelConfig.from_dict(blob["config"]))
        model.load_state_dict(blob["state_dict"])
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same error to the user
        raise ModelError(f"cannot load stream model from {path}: {exc}") from exc
    model.meta = blob.get("meta", {})
    return model.to(device).eval()

