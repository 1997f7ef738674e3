"""Frame and text vectors in one space with a CLIP or SigLIP model from a local folder (never a download).

A folder written by ``save_pretrained`` (config.json, weights, tokenizer and image processor files) is loaded
through transformers' Auto classes with ``local_files_only=True``. Frame vectors index what is shown; text
vectors let a question search the frames directly through the text tower.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from manta_models.packaged import ModelError, check_model_dir, load_model, model_class
from manta_models.perception.vision import check_frames

log = logging.getLogger("manta.clip")

# Items per forward pass. Small chunks keep peak memory flat on a laptop CPU and per-item cost barely falls
# beyond a few frames there (see vision.BATCH); a GPU caller can raise it on the instance.
BATCH = 8


class ClipEncoder:
    """Unit-length float32 vectors for frames and texts; inner product is cosine similarity."""

    def __init__(self, path: str | Path, threads: int = 1, device: str = "cpu"):
        self.path = check_model_dir(path, "CLIP/SigLIP model")
        import torch
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        # Same convention as TextEmbedder: torch's intra-op pool is per process, callers pass one setting.
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.device = device
        # Checked on the class before the weights load, so a wrong folder fails fast and cheaply.
        cls = model_class(self.path, AutoModel._model_mapping, "CLIP/SigLIP-type model")
        if not (hasattr(cls, "get_image_features") and hasattr(cls, "get_text_features")):
            raise ModelError(f"{self.path} holds a {cls.__name__}, which is not a CLIP/SigLIP-type model "
                             "(it lacks get_image_features / get_text_features)")
        self.model = load_model(AutoModel, self.path, "CLIP/SigLIP-type model", device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            self.image_processor = AutoImageProcessor.from_pretrained(self.path, local_files_only=True)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"cannot load the tokenizer or image processor in {self.path}: {exc}") from exc
        config = self.model.config
        text_config = getattr(config, "text_config", config)
        # SigLIP was trained on texts padded to a fixed 64 tokens, and its text vectors drift without that.
        self._fixed_length = config.model_type.startswith("siglip")
        self._max_tokens = int(getattr(text_config, "max_position_embeddings", 0) or 77)
        # SigLIP has no projection_dim and the text head's width is configurable: ask the model itself.
        self.dim = int(self._text_batch(["a photo"]).shape[1])
        log.info("loaded %s (%d-d) from %s", type(self.model).__name__, self.dim, self.path)

    def encode_frames(self, frames: list[np.ndarray]) -> np.ndarray:
        """frames: H x W x 3 uint8 RGB arrays of any size. Returns n x dim float32 unit vectors."""
        check_frames(frames)
        return self._chunks(frames, self._frame_batch)

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """Texts as n x dim float32 unit vectors in the frames' space (cosine = inner product)."""
        if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
            raise ValueError("texts must be a list of str")
        return self._chunks(list(texts), self._text_batch)

    def _chunks(self, items: list, batch_fn) -> np.ndarray:
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = [batch_fn(items[i:i + BATCH]) for i in range(0, len(items), BATCH)]
        out = np.ascontiguousarray(np.concatenate(vecs), dtype=np.float32)
        if out.shape[1] != self.dim:
            raise ModelError(f"{self.path}: the image and text towers disagree on the vector size "
                             f"({out.shape[1]} vs {self.dim})")
        return out

    def _frame_batch(self, frames: list[np.ndarray]) -> np.ndarray:
        from PIL import Image

        # PIL images, not arrays: the processors guess the channel axis of an array, and guess wrong on
        # frames a few pixels wide; the processor resizes and crops the way the model was trained.
        images = [Image.fromarray(f) for f in frames]
        inputs = self.image_processor(images=images, return_tensors="pt").to(self.device)
        with self._torch.inference_mode():
            # All processor outputs go in: SigLIP 2 also needs pixel_attention_mask and spatial_shapes.
            return self._unit(self.model.get_image_features(**inputs))

    def _text_batch(self, texts: list[str]) -> np.ndarray:
        padding = "max_length" if self._fixed_length else True
        enc = self.tokenizer(texts, padding=padding, truncation=True, max_length=self._max_tokens,
                             return_tensors="pt")
        # token_type_ids is dropped: CLIP's text tower does not take it, and zeros are its default elsewhere.
        inputs = {k: enc[k].to(self.device) for k in ("input_ids", "attention_mask") if k in enc}
        with self._torch.inference_mode():
            return self._unit(self.model.get_text_features(**inputs))

    def _unit(self, out) -> np.ndarray:
        torch = self._torch
        # transformers 4.x returns the projected embeddings as a tensor; 5.x returns a ModelOutput with them
        # in pooler_output (last_hidden_state there is the unprojected tower output, not what we want).
        if not isinstance(out, torch.Tensor):
            out = getattr(out, "pooler_output", None)
        if not isinstance(out, torch.Tensor) or out.ndim != 2:
            raise ModelError(f"{self.path}: the model returned no n x dim embeddings")
        return torch.nn.functional.normalize(out.float(), dim=-1).cpu().numpy()
