"""A cross-encoder reranker from a local folder (e.g. ms-marco-MiniLM, bge-reranker), when configured.

No reranker ships in a PyPI package (../shared/MODELS.md), so the embedded default reranks with
dense similarity + BM25 + density alone; a user with a cross-encoder's weights sets
``rerank_model`` and its logits replace the cosine in ``streaming.answer.rerank``. It reads the question
and each candidate together, which a bi-encoder cannot, at the cost of one forward pass per
candidate: it runs only on the few dozen candidates retrieval kept.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from manta_models.packaged import check_model_dir, load_model, model_class
from manta_models.packaged import ModelError

log = logging.getLogger("manta.reranker")

BATCH = 16
MAX_LENGTH = 256  # question + a micro segment or shown text fit well inside this


class CrossEncoder:
    """Relevance logits for (question, text) pairs; higher is more relevant."""

    def __init__(self, path: str | Path, threads: int = 1, device: str = "cpu"):
        self.path = check_model_dir(path, "reranker")
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

        if threads:  # same convention as the other encoders: one setting per process
            torch.set_num_threads(threads)
        self._torch = torch
        self.device = device
        model_class(self.path, MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING, "sequence classifier (cross-encoder)")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"cannot load the reranker's tokenizer from {self.path}: {exc}") from exc
        self.model = load_model(AutoModelForSequenceClassification, self.path, "cross-encoder", device)
        self.labels = int(self.model.config.num_labels)
        self._lock = threading.Lock()  # one forward pass at a time per replica
        log.info("loaded reranker %s (%d label(s))", self.path, self.labels,
                 extra={"fields": {"event": "reranker_loaded", "path": str(self.path)}})

    def score(self, question: str, texts: list[str]) -> list[float]:
        """One logit per text. A two-label classifier (not relevant / relevant) gives the margin of
        "relevant" over "not relevant", so either kind of checkpoint reads the same way."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError("question must be a non-empty string")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ValueError("texts must be a list of strings")
        out: list[float] = []
        with self._lock, self._torch.inference_mode():
            for i in range(0, len(texts), BATCH):
                batch = texts[i:i + BATCH]
                enc = self.tokenizer([question] * len(batch), batch, padding=True, truncation=True,
                                     max_length=MAX_LENGTH, return_tensors="pt").to(self.device)
                logits = self.model(**enc).logits.float()
                col = logits[:, 0] if self.labels == 1 else logits[:, -1] - logits[:, 0]
                out += [float(v) for v in col.cpu()]
        return out
