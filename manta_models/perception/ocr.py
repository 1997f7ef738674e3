"""On-screen text with RapidOCR (PP-OCRv6 det + rec, ONNX models that ship inside the ``rapidocr`` wheel).

One call reads one frame into lines with boxes and confidences. Measured on this project's 2-core
machine: 0.2-0.3 s per 640x360 frame with the detector's shorter side at 480 px and no orientation
classifier (video text is upright), versus 0.5-0.8 s with the defaults, and the same lines on every
test clip (title cards, a 1080p counter, a 320x180 card). So callers read only frames whose content
changed (streaming.ingest.screen_text decides which).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np

from manta_models.packaged import ModelError
from manta_models.perception.vision import check_frames

log = logging.getLogger("manta.ocr")


# The recogniser drops a small separator ("&", "/", a thin space) now and then and runs two words
# together: "Karl MarxFriedrich Engels". Split only long runs where both halves are real words in
# title case, so "YouTube" or "McDonald" stay as they are.
_JOINED = re.compile(r"\b([A-Z][a-z]{3,})([A-Z][a-z]{3,})\b")


def split_joined(text: str) -> str:
    return _JOINED.sub(r"\1 \2", text)


@dataclass(frozen=True, slots=True)
class OcrLine:
    text: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions of the frame's width/height
    confidence: float


class TextReader:
    """Lines of text in an RGB frame, top to bottom then left to right."""

    def __init__(self, threads: int = 1, side: int = 480, min_confidence: float = 0.75):
        if threads < 1:
            raise ValueError("threads must be at least 1")
        if not 160 <= side <= 2048:
            raise ValueError(f"side must be between 160 and 2048 pixels, not {side}")
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError("min_confidence must be within [0, 1]")
        self.min_confidence = min_confidence
        try:
            from rapidocr import RapidOCR
        except ImportError as exc:
            raise ModelError(f"OCR needs the packages rapidocr and onnxruntime: {exc}") from exc
        params = {
            "Global.log_level": "error",  # it warns on every frame without text
            "Global.use_cls": False,
            "Global.text_score": min_confidence,
            "Det.limit_side_len": side,
            # onnxruntime's own pool otherwise takes every core, fighting the other streams.
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
        try:
            self._engine = RapidOCR(params=params)
        except Exception as exc:  # noqa: BLE001 - a missing model file or runtime is a setup error
            raise ModelError(f"cannot start RapidOCR: {type(exc).__name__}: {exc}") from exc
        log.info("loaded RapidOCR (detector side %d px, %d thread(s))", side, threads)

    def read(self, frame: np.ndarray) -> list[OcrLine]:
        """Lines of text with their boxes (fractions of the frame) and confidence."""
        check_frames([frame])
        h, w = frame.shape[:2]
        result = self._engine(frame)
        if result.txts is None or result.boxes is None:
            return []
        lines = []
        for quad, text, score in zip(result.boxes, result.txts, result.scores):
            text = split_joined(" ".join(str(text).split()))
            if not text or score < self.min_confidence:
                continue
            quad = np.asarray(quad, dtype=np.float32)
            x0, y0 = quad.min(axis=0)
            x1, y1 = quad.max(axis=0)
            box = (max(0.0, x0 / w), max(0.0, y0 / h), min(1.0, x1 / w), min(1.0, y1 / h))
            if sum(ch.isalnum() for ch in text) < 2:
                continue  # a lone glyph is mostly texture read as a character ("一", "A" on a sail)
            lines.append(OcrLine(text, tuple(round(float(v), 4) for v in box), round(float(score), 4)))
        return lines  # streaming.ingest.screen_text.group_lines puts them in reading order
