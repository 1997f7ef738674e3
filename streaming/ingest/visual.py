"""One stream's visual stage: sampled frames → embeddings and labels, changed frames → on-screen text,
subtitle cues → timed text; all searchable at once, and fused into micro segments by media time.

Two indexes per stream: ``items`` holds what can be asked about in words (on-screen text, subtitle
cues, the image classes of each micro segment) in the text embedder's space; ``frames`` holds the
frame embeddings, for "frames like this one".
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from streaming.memory.item_index import TimedIndex
from streaming.records import LabelSpan, MicroSegment, SeenLabels, ShownText, SubtitleCue, VideoFrame
from streaming.ingest.screen_text import ReadGate, ScreenTextTracker, grey_thumb, group_lines, same_text

log = logging.getLogger("manta.visual")

SHOWN_KINDS = ("ocr", "subtitle")
LABEL_MIN_P = 0.15  # below this an ImageNet class is mostly a guess
LABELS_KEPT = 5
REPEAT_FETCH = 4  # a search fetches this many times k, so repeats folded together leave k answers


@dataclass
class VisualCounters:
    frames: int = 0
    cuts: int = 0
    ocr_reads: int = 0
    ocr_seconds: float = 0.0
    cues: int = 0

    def to_dict(self) -> dict:
        return {"frames": self.frames, "cuts": self.cuts, "ocr_reads": self.ocr_reads,
                "ocr_seconds": round(self.ocr_seconds, 2), "subtitle_cues": self.cues}


# A frame whose brightest 1 % is this dark (of 1.0) is black: a fade, a gap in a broadcast, a dead
# feed. Measured: the black opening of Big Buck Bunny and the end of a fade read 0.0-0.1; a dark red
# title card with white text reads 0.7, the dimmest part of a fade-in that shows a picture 0.2.
BLACK_P99 = 0.12
BLACK_LABELS = (("black screen", 1.0),)


def is_black(image: np.ndarray) -> bool:
    return _black(grey_thumb(image))


def _black(thumb: np.ndarray) -> bool:
    """``is_black`` on the frame's ``grey_thumb`` (already made for the OCR gate)."""
    return float(np.percentile(thumb, 99)) <= BLACK_P99


def _is_shown(item) -> bool:
    return isinstance(item, ShownText) and item.kind in SHOWN_KINDS


def _repeats(a: ShownText, b) -> bool:
    return isinstance(b, ShownText) and a.kind == b.kind and same_text(a.text, b.text)


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 0 else v.astype(np.float32)


class VisualStage:
    def __init__(self, embed: Callable[[list[str]], np.ndarray], text_dim: int, vision=None, reader=None,
                 frame_step_s: float = 1.0, ocr_interval_s: float = 2.0, first_id: int = 0,
                 clip=None, captioner=None, caption_interval_s: float = 10.0):
        if frame_step_s <= 0:
            raise ValueError("frame_step_s must be positive")
        self.embed, self.vision, self.reader = embed, vision, reader
        self.frame_step_s = frame_step_s
        self.items = TimedIndex(text_dim)
        self.frames = TimedIndex(vision.dim) if vision is not None else None
        # Optional production backends: CLIP/SigLIP frames searchable by text, VLM captions.
        self.clip, self.captioner = clip, captioner
        self.clip_frames = TimedIndex(clip.dim) if clip is not None else None
        self.caption_interval_s = caption_interval_s
        self._last_caption_t = float("-inf")
        self.gate = ReadGate(min_interval_s=ocr_interval_s)
        self.next_id = first_id  # the next item id: ocr, subtitle, caption and label items share it
        self.screen = ScreenTextTracker(self._new_id, "ocr")
        self.counters = VisualCounters()
        self._changed: dict[int, ShownText | LabelSpan] = {}  # not yet persisted
        self._new_frames: list[tuple[SeenLabels, np.ndarray]] = []
        self._frame_keys = itertools.count()

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    # -- ingest ----------------------------------------------------------------------------------
    def on_frame(self, frame: VideoFrame) -> np.ndarray | None:
        """Embed, label and (when its content changed) read one sampled frame; returns its embedding."""
        self.counters.frames += 1
        vector = None
        if frame.cut is not None:
            self.counters.cuts += 1
        seen = SeenLabels(frame.t, (), cut=frame.cut)
        thumb = grey_thumb(frame.image) if self.vision is not None or self.reader is not None else None
        if self.vision is not None:
            vectors, labels = self.vision.encode([frame.image])
            vector = vectors[0]
            # ImageNet has no class for nothing: on a black frame its top classes are noise.
            seen = replace(seen, labels=BLACK_LABELS if _black(thumb) else labels[0].labels)
            self.frames.upsert(next(self._frame_keys), seen, frame.t, frame.t + self.frame_step_s, vector)
            self._new_frames.append((seen, vector))
        if self.clip is not None:
            clip_vec = self.clip.encode_frames([frame.image])[0]
            self.clip_frames.upsert(len(self.clip_frames), seen, frame.t, frame.t + self.frame_step_s, clip_vec)
        if self.captioner is not None and (frame.cut is not None
                                           or frame.t - self._last_caption_t >= self.caption_interval_s):
            self._last_caption_t = frame.t
            text = " ".join(self.captioner.caption([frame.image])[0].split())
            if text:
                self._upsert([ShownText(self._new_id(), "caption", text, frame.t,
                                        frame.t + self.caption_interval_s)])
        if self.reader is not None:
            until = frame.t + self.frame_step_s
            decision = self.gate.decide(frame.t, thumb, cut=frame.cut is not None)
            if decision == "read":
                t = time.perf_counter()
                blocks = group_lines(self.reader.read(frame.image), frame.image.shape[1] / frame.image.shape[0])
                self.counters.ocr_reads += 1
                self.counters.ocr_seconds += time.perf_counter() - t
                self._upsert(self.screen.observe(frame.t, blocks, until))
            elif decision == "same":
                self._upsert(self.screen.confirm(until))
        return vector

    def on_cue(self, cue: SubtitleCue) -> ShownText | None:
        """A complete subtitle cue: its text, or what OCR reads from its bitmap."""
        text = cue.text
        confidence = 1.0
        if text is None and cue.image is not None:
            if self.reader is None:
                return None
            t = time.perf_counter()
            lines = self.reader.read(cue.image)
            self.counters.ocr_reads += 1
            self.counters.ocr_seconds += time.perf_counter() - t
            text = " ".join(b.text for b in group_lines(lines, cue.image.shape[1] / cue.image.shape[0]))
            confidence = min((ln.confidence for ln in lines), default=0.0)
        text = " ".join((text or "").split())
        if not text:
            return None
        self.counters.cues += 1
        rec = ShownText(self._new_id(), "subtitle", text, cue.t0, cue.t1, confidence)
        self._upsert([rec])
        return rec

    def _upsert(self, records: list[ShownText | LabelSpan]) -> None:
        new = [r for r in records if r.id not in self.items]
        vectors = self.embed([r.text for r in new]) if new else []
        fresh = {r.id: v for r, v in zip(new, vectors)}
        for r in records:
            self.items.upsert(r.id, r, r.t0, r.t1, fresh.get(r.id))
            self._changed[r.id] = r

    # -- fusion ----------------------------------------------------------------------------------
    def fuse(self, seg: MicroSegment) -> tuple[MicroSegment, np.ndarray | None]:
        """The segment with what was shown and seen during its span, and the shown-text vector."""
        t1 = max(seg.t1, seg.t0 + 1e-3)
        shown = [it for it in self.items.items(seg.t0, t1, _is_shown) if it.t1 > seg.t0 and it.t0 < t1]
        seen = [f for f in self.frames.items(seg.t0, t1) if seg.t0 <= f.t < t1] if self.frames else []
        vector = None
        if shown:
            vector = _unit(self.items.vectors([s.id for s in shown]).mean(axis=0))
        return replace(seg, shown=tuple(shown), seen=tuple(seen)), vector

    def add_labels(self, segments: list[MicroSegment]) -> None:
        """One searchable label set per segment: the classes seen in it, each at its best probability."""
        spans = []
        for seg in segments:
            best: dict[str, float] = {}
            for frame in seg.seen:
                for name, p in frame.labels:
                    best[name] = max(best.get(name, 0.0), p)
            kept = sorted(((n, p) for n, p in best.items() if p >= LABEL_MIN_P), key=lambda x: -x[1])
            if kept:
                spans.append(LabelSpan(self._new_id(), seg.t0, seg.t1,
                                       tuple((n, round(p, 3)) for n, p in kept[:LABELS_KEPT])))
        self._upsert(spans)

    # -- queries ---------------------------------------------------------------------------------
    def search(self, query: np.ndarray, k: int, start: float | None, end: float | None,
               kinds: set[str]) -> list[tuple[ShownText | LabelSpan, float, tuple[tuple[float, float], ...]]]:
        """Best ``k`` items, each with the other spans where the same text was shown again (a title
        card or a ticker coming back is one answer with all its times, not k copies of it)."""
        def wanted(it) -> bool:
            return (it.kind if isinstance(it, ShownText) else "label") in kinds
        out: list = []
        shown = None  # every shown item in the range, listed once and only if a hit needs it
        for it, score in self.items.search(query, REPEAT_FETCH * k, start, end, wanted):
            if isinstance(it, ShownText):
                if any(_repeats(it, o) for o, _, _ in out):
                    continue
                shown = self.items.items(start, end, _is_shown) if shown is None else shown
                also = tuple((o.t0, o.t1) for o in shown if o.id != it.id and _repeats(it, o))
                out.append((it, score, also))
            else:
                out.append((it, score, ()))
            if len(out) == k:
                break
        return out

    def search_frames_by_text(self, text: str, k: int, start: float | None,
                              end: float | None) -> list[tuple[SeenLabels, float]]:
        """Frames whose CLIP/SigLIP embedding matches ``text`` (only with a CLIP backend)."""
        if self.clip is None or not text.strip():
            return []
        return self.clip_frames.search(self.clip.encode_text([text])[0], k, start, end)

    def shown(self, start: float | None = None, end: float | None = None) -> list[ShownText]:
        return self.items.items(start, end, _is_shown)

    def labels(self, start: float | None = None, end: float | None = None) -> list[LabelSpan]:
        """The image classes seen in each segment of the window, in time order."""
        return self.items.items(start, end, lambda it: isinstance(it, LabelSpan))

    def similar_frames(self, vector: np.ndarray, k: int, start: float | None = None,
                       end: float | None = None) -> list[tuple[SeenLabels, float]]:
        return self.frames.search(vector, k, start, end) if self.frames is not None else []

    def frame_vector(self, t: float) -> np.ndarray | None:
        """The embedding of the sampled frame nearest to ``t``."""
        if self.frames is None or not len(self.frames):
            return None
        near = self.frames.entries(t - self.frame_step_s, t + self.frame_step_s)
        if not near:
            return None
        key, _ = min(near, key=lambda e: abs(e[1].t - t))
        return self.frames.vectors([key])[0]

    def remove_before(self, t: float) -> int:
        """Retention: forget shown text, labels and frames that ended before media time ``t``."""
        return sum(index.remove_before(t) for index in (self.items, self.frames, self.clip_frames)
                   if index is not None)

    # -- persistence -----------------------------------------------------------------------------
    def take_changes(self) -> tuple[list[tuple[ShownText | LabelSpan, np.ndarray]],
                                    list[tuple[SeenLabels, np.ndarray]]]:
        """Items created or extended, and frames added, since the last call (for the store)."""
        ids = list(self._changed)
        vectors = self.items.vectors(ids)
        items = [(self._changed[i], v) for i, v in zip(ids, vectors)]
        frames, self._new_frames, self._changed = self._new_frames, [], {}
        return items, frames

    def restore(self, items: list[tuple[ShownText | LabelSpan, np.ndarray]],
                frames: list[tuple[SeenLabels, np.ndarray]]) -> None:
        for item, vector in items:
            self.items.upsert(item.id, item, item.t0, item.t1, vector)
        if self.frames is not None:
            for seen, vector in frames:
                self.frames.upsert(next(self._frame_keys), seen, seen.t, seen.t + self.frame_step_s, vector)
        last = max((it.id for it, _ in items), default=-1)
        self.next_id = max(last + 1, self.next_id)
