"""Per-segment scores from a stream's recent past: the stream model's surprise and coherence, the
feature-change novelty, each z-scored per stream, and whether the segment starts a new part."""

from __future__ import annotations

from dataclasses import replace

from streaming.records import SegmentFeatures
from streaming.ingest.novelty import SurpriseTracker, feature_distance
from streaming.records import MicroSegment
from streaming.settings import Settings


class SegmentScorer:
    def __init__(self, settings: Settings, stepper=None, last_features: SegmentFeatures | None = None):
        self.signal = settings.boundary_signal  # which of the two z-scores proposes boundaries
        self.stepper = stepper
        self.trackers = {"surprise": SurpriseTracker(threshold=settings.surprise_threshold),
                         "novelty": SurpriseTracker(threshold=settings.surprise_threshold)}
        self._prev_blocks = last_features.blocks() if last_features is not None else None

    def score(self, seg: MicroSegment, feats: SegmentFeatures) -> MicroSegment:
        blocks = feats.blocks()
        z, boundary = {}, {}
        change = feature_distance(self._prev_blocks, blocks)
        self._prev_blocks = blocks
        if change is not None:
            z["novelty"], boundary["novelty"] = self.trackers["novelty"].update(change)
        fields: dict = {}
        if self.stepper is not None:
            out = self.stepper.step(blocks)
            if out.surprise is not None:
                z["surprise"], boundary["surprise"] = self.trackers["surprise"].update(out.surprise)
            fields = dict(surprise_raw=out.surprise, coherence=out.coherence,
                          summary=tuple(float(x) for x in out.summary))
        # A shot cut the detector confirmed inside the span is a boundary whatever the scores say:
        # on the test clips it finds every cut at its frame, which no z-score does.
        cut = any(f.cut is not None for f in seg.seen)
        return replace(seg, surprise=z.get("surprise"), novelty=z.get("novelty"),
                       boundary=boundary.get(self.signal, False) or cut, **fields)

    # -- checkpoint ------------------------------------------------------------------------------
    def state(self) -> tuple[dict, dict]:
        """(stream model state, tracker states)."""
        model = self.stepper.state_dict() if self.stepper is not None else {}
        return model, {name: t.state_dict() for name, t in self.trackers.items()}

    def load(self, model: dict, trackers: dict) -> None:
        if self.stepper is not None and model:
            self.stepper.load_state_dict(model)
        for name, tracker in self.trackers.items():
            if name in trackers:
                tracker.load_state_dict(trackers[name])
