"""The read side of one stream: what it answers while it ingests, from its index, levels, shown
items and frames.

The pipeline's worker builds these objects (once its models are loaded) and keeps writing to them;
``StreamView.of(pipeline)`` is a view over them, which the stream actor serves and
``streaming.search.retrieve`` reads. The indexes are safe to search while the worker adds to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from streaming.records import KIND_MODALITY, Evidence, LabelSpan, MicroSegment, ProvisionalText, StreamStatus

if TYPE_CHECKING:  # types only: the view reads what ingest built, it never builds it
    from streaming.ingest.pipeline import StreamPipeline
    from streaming.ingest.visual import VisualStage
    from streaming.memory.index import SegmentIndex
    from streaming.memory.levels import StreamLevels


def shots(spans: list[LabelSpan]) -> list[LabelSpan]:
    """Label spans of consecutive segments that name the same thing first, joined into one: a 40 s
    shot of a meadow is one line of a listing, not thirteen."""
    out: list[LabelSpan] = []
    for it in sorted(spans, key=lambda s: s.t0):
        prev = out[-1] if out else None
        if prev is not None and prev.labels[0][0] == it.labels[0][0] and it.t0 - prev.t1 <= 0.5:
            best = dict(prev.labels)
            for name, p in it.labels:
                best[name] = max(best.get(name, 0.0), p)
            labels = tuple(sorted(best.items(), key=lambda x: -x[1]))[:len(prev.labels)]
            out[-1] = LabelSpan(prev.id, prev.t0, max(prev.t1, it.t1), labels)
        else:
            out.append(it)
    return out


@dataclass(frozen=True, slots=True)
class StreamView:
    """One stream's searchable state. ``index``, ``levels`` and ``visual`` are None until the
    stream's models are loaded (or when its visual stage is off)."""

    id: str
    status: StreamStatus
    index: SegmentIndex | None = None
    levels: StreamLevels | None = None
    visual: VisualStage | None = None
    frame_step_s: float = 1.0
    language: str | None = None  # Whisper's code for the stream's speech, once detected
    provisional: ProvisionalText | None = None  # heard past the final text (live streams)
    languages: tuple[tuple[float, str], ...] = ()  # (media time, code) where each spoken language starts

    @classmethod
    def of(cls, pipeline: StreamPipeline) -> StreamView:
        """What a stream answers from right now (taken afresh: its worker builds the index once
        its models are loaded)."""
        return cls(pipeline.id, pipeline.status, pipeline.index, pipeline.levels, pipeline.visual,
                   pipeline.frame_step_s, pipeline.language, pipeline.provisional_now(),
                   tuple(pipeline.languages.changes) if pipeline.languages is not None else ())

    @property
    def committed_seconds(self) -> float:
        """The newest media time that is searchable."""
        return self.status.committed_seconds

    def search(self, query: np.ndarray, k: int, start: float | None = None,
               end: float | None = None) -> list[tuple[MicroSegment, float]]:
        if self.index is None:
            return []
        # Quiet segments and merged repeats sit in the index with a zero vector (they keep the
        # timeline whole); quiet ones carry no text, a repeat answers through its representative.
        return [(s, score) for s, score in self.index.search(query, k, start, end)
                if s.words and s.merged_into is None]

    def evidence(self, query: np.ndarray | None, k: int, start: float | None = None,
                 end: float | None = None, kinds: set[str] | None = None,
                 text: str = "") -> list[Evidence]:
        """Best ``k`` items of the wanted kinds (speech, ocr, subtitle, label), best first; with no
        query, what was shown in time order (a question that names no content)."""
        kinds = set(KIND_MODALITY) if kinds is None else kinds
        if query is None:
            if self.visual is None:
                return []
            listed = [self._item_evidence(it, it.confidence) for it in self.visual.shown(start, end)
                      if it.kind in kinds]
            if "label" in kinds:  # "what is on screen at 0:13?" where no text is: what the picture shows
                listed += [self._item_evidence(it, 1.0) for it in shots(self.visual.labels(start, end))]
                listed.sort(key=lambda e: (e.start, e.end))
            return listed[:k]
        found = []
        if "speech" in kinds:
            found += [Evidence(self.id, seg.t0, seg.t1, seg.text, score,
                               also=tuple(self.levels.occurrences(seg.seq)), speaker=seg.speaker)
                      for seg, score in self.search(query, k, start, end)]
            heard = self.heard(query, start, end)
            found += [heard[1]] if heard is not None else []
        if self.visual is not None and kinds - {"speech"}:
            found += [self._item_evidence(it, score, also)
                      for it, score, also in self.visual.search(query, k, start, end, kinds)]
        if self.visual is not None and "frame" in kinds and text:
            found += [Evidence(self.id, f.t, f.t + self.frame_step_s, f"frame at {f.t:.1f} s", score,
                               "seen", "frame") for f, score in self.visual.search_frames_by_text(text, k, start, end)]
        found.sort(key=lambda e: (-e.score, e.start))
        return found[:k]

    def heard(self, query: np.ndarray | None, start: float | None = None,
              end: float | None = None) -> tuple[ProvisionalText, Evidence] | None:
        """The provisional text as evidence, when it overlaps [start, end]: scored against the
        question like a micro segment (1.0 when there is no question, as in a listing)."""
        p = self.provisional
        if p is not None and self.index is not None:
            # A commit may have landed since this view was taken: final text replaces what it covers.
            p = p.after(self.index.end)
        if p is None or (start is not None and p.t1 < start) or (end is not None and p.t0 > end):
            return None
        if query is not None and p.vector is None:
            return None
        score = 1.0 if query is None else float(np.dot(np.asarray(query, np.float32).ravel(), p.vector))
        return p, Evidence(self.id, p.t0, p.t1, p.text, score, provisional=True)

    def _item_evidence(self, item, score: float, also: tuple = ()) -> Evidence:
        kind = "label" if isinstance(item, LabelSpan) else item.kind
        return Evidence(self.id, item.t0, item.t1, item.text, float(score), KIND_MODALITY[kind], kind,
                        also=also)

    def segments(self, start: float | None = None, end: float | None = None) -> list[MicroSegment]:
        return self.index.segments(start, end) if self.index is not None else []
