"""Which frames to read, and on-screen text as records with time spans.

OCR costs ~0.25 s a frame on one core, a frame embedding ~0.03 s: reading every sampled frame would
make OCR the whole budget. ``ReadGate`` reads a frame only when its content changed since the last
read (any cell of a coarse grid, so a digit changing in a corner counts as much as a cut), never
more often than ``min_interval_s`` except at a shot cut. ``ScreenTextTracker`` turns the lines read
into records: text that stays (a title card, a ticker, a score bug) is ONE record whose span grows,
instead of one per frame.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from difflib import SequenceMatcher
from typing import Literal, Protocol

import numpy as np

from streaming.records import ShownText

GRID_W, GRID_H = 160, 90  # the gate's grey thumbnail
CELL = 10  # pixels per grid cell side: 16 x 9 cells


class Line(Protocol):
    text: str
    box: tuple[float, float, float, float]
    confidence: float


def grey_thumb(image: np.ndarray) -> np.ndarray:
    """A GRID_H x GRID_W float32 grey image in [0, 1] (block means, no resampling library needed)."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 image, not shape {image.shape}")
    h, w = image.shape[:2]
    ys = (np.arange(GRID_H + 1) * h // GRID_H)
    xs = (np.arange(GRID_W + 1) * w // GRID_W)
    grey = image.astype(np.float32).mean(axis=2)
    # Sum over pixel blocks via cumulative sums: exact block means for any frame size.
    c = np.pad(grey.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = c[ys[1:, None], xs[None, 1:]] - c[ys[:-1, None], xs[None, 1:]] \
        - c[ys[1:, None], xs[None, :-1]] + c[ys[:-1, None], xs[None, :-1]]
    area = np.maximum(1, np.diff(ys)[:, None] * np.diff(xs)[None, :])
    return (sums / area / 255.0).astype(np.float32)


class ReadGate:
    """Decides per sampled frame: ``read`` it, it is the ``same`` as the last read, or ``wait``."""

    def __init__(self, min_interval_s: float = 2.0, cell_threshold: float = 0.04):
        if min_interval_s < 0:
            raise ValueError("min_interval_s must not be negative")
        if not 0 < cell_threshold < 1:
            raise ValueError("cell_threshold must be within (0, 1)")
        self.min_interval_s, self.cell_threshold = min_interval_s, cell_threshold
        self._last: np.ndarray | None = None
        self._last_t = float("-inf")
        self.reads = 0

    def changed(self, thumb: np.ndarray) -> bool:
        if self._last is None:
            return True
        diff = np.abs(thumb - self._last)
        cells = diff.reshape(GRID_H // CELL, CELL, GRID_W // CELL, CELL).mean(axis=(1, 3))
        return bool(cells.max() > self.cell_threshold)

    def decide(self, t: float, thumb: np.ndarray, cut: bool = False) -> Literal["read", "same", "wait"]:
        if not self.changed(thumb):
            return "same"
        if cut or t - self._last_t >= self.min_interval_s:
            self._last, self._last_t = thumb, t
            self.reads += 1
            return "read"
        return "wait"


@dataclass(frozen=True, slots=True)
class TextBlock:
    """Lines that belong together on screen (a two-line title), read as one text."""

    text: str
    box: tuple[float, float, float, float]
    confidence: float


def _rows(lines: list[Line], aspect: float) -> list[list[Line]]:
    """Lines side by side on one baseline (words the detector split), each row left to right. Boxes
    of one italic line differ in top edge, so rows form on vertical centres; a wide horizontal gap
    (two corners of the screen) starts a new row."""
    rows: list[list[Line]] = []
    for line in sorted(lines, key=lambda ln: (ln.box[1] + ln.box[3], ln.box[0])):
        centre, height = (line.box[1] + line.box[3]) / 2, line.box[3] - line.box[1]
        for row in rows:
            row_centre = sum((b.box[1] + b.box[3]) / 2 for b in row) / len(row)
            row_h = min(b.box[3] - b.box[1] for b in row)
            gap = max(line.box[0] - max(b.box[2] for b in row), min(b.box[0] for b in row) - line.box[2])
            # gap in units of line height, in pixels: boxes are fractions of width and of height
            if abs(centre - row_centre) < 0.5 * min(height, row_h) and \
                    gap * aspect <= 1.5 * max(height, row_h):
                row.append(line)
                break
        else:
            rows.append([line])
    return [sorted(row, key=lambda ln: ln.box[0]) for row in rows]


def _union(lines: list[Line]) -> tuple[float, float, float, float]:
    return (min(b.box[0] for b in lines), min(b.box[1] for b in lines),
            max(b.box[2] for b in lines), max(b.box[3] for b in lines))


def group_lines(lines: list[Line], aspect: float = 16 / 9) -> list[TextBlock]:
    """Rows that belong together (a two-line title in one font) joined into blocks, in reading
    order. ``aspect`` is the frame's width / height, to compare horizontal and vertical gaps."""
    if aspect <= 0:
        raise ValueError("aspect must be positive")
    blocks: list[list[tuple[float, float, float, float]]] = []
    texts: list[list[str]] = []
    confs: list[float] = []
    for row in sorted(_rows(lines, aspect), key=lambda r: _union(r)[1]):
        box = _union(row)
        h = box[3] - box[1]
        if blocks:
            last = blocks[-1][-1]
            last_h = last[3] - last[1]
            close = box[1] - last[3] <= 0.6 * min(h, last_h)
            same_font = max(h, last_h) <= 1.6 * min(h, last_h)
            overlap = min(box[2], max(b[2] for b in blocks[-1])) > max(box[0], min(b[0] for b in blocks[-1]))
            if close and same_font and overlap:
                blocks[-1].append(box)
                texts[-1].append(" ".join(b.text for b in row))
                confs[-1] = min(confs[-1], min(b.confidence for b in row))
                continue
        blocks.append([box])
        texts.append([" ".join(b.text for b in row)])
        confs.append(min(b.confidence for b in row))
    return [TextBlock(" ".join(t), (min(b[0] for b in bx), min(b[1] for b in bx), max(b[2] for b in bx),
                                   max(b[3] for b in bx)), c) for bx, t, c in zip(blocks, texts, confs)]


def _norm(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", text.lower())


def same_text(a: str, b: str, min_ratio: float = 0.8) -> bool:
    """OCR of one caption in two frames differs by a character or two; a changed counter does not match."""
    na, nb = _norm(a), _norm(b)
    if not na or not nb:
        return a.strip() == b.strip()
    if na == nb:
        return True
    if any(ch.isdigit() for ch in na + nb):
        return False  # "5.005" vs "6.006": numbers are content, a one-digit change is new text
    return SequenceMatcher(None, na, nb).ratio() >= min_ratio


class ScreenTextTracker:
    """Open records of text on screen. Each call returns the records it created or extended."""

    def __init__(self, next_id: Callable[[], int], kind: str = "ocr"):
        self._next_id = next_id
        self.kind = kind
        self._open: list[ShownText] = []

    @property
    def open(self) -> list[ShownText]:
        return list(self._open)

    def observe(self, t: float, blocks: list[TextBlock], until: float | None = None) -> list[ShownText]:
        """A frame was read at ``t`` (standing until ``until``, the next sample): extend what is still
        there, open what is new, close the rest."""
        until = t if until is None else max(t, until)
        changed, still = [], []
        unmatched = list(self._open)
        for block in blocks:
            match = next((r for r in unmatched if same_text(r.text, block.text)), None)
            if match is None:
                rec = ShownText(self._next_id(), self.kind, block.text, t, until, block.confidence,
                                block.box)
            else:
                unmatched.remove(match)
                better = block.confidence > match.confidence
                rec = replace(match, t1=max(match.t1, until),
                              text=block.text if better else match.text,
                              confidence=max(block.confidence, match.confidence))
            still.append(rec)
            changed.append(rec)
        self._open = still  # unmatched records end at their last confirmed time
        return changed

    def confirm(self, until: float) -> list[ShownText]:
        """The frame sampled now looks the same as the last one read: what was there still is."""
        self._open = [replace(r, t1=max(r.t1, until)) for r in self._open]
        return list(self._open)

    def close_all(self) -> None:
        self._open = []
