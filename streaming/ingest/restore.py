"""Bringing a stream's saved state back into its stages when its actor starts again (a crash
restart, or the service restarted): the index, meso and macro levels, shown items and frames,
retention's cut, and the stream model's state, exactly as the last commit left them."""

from __future__ import annotations

from streaming.ingest.scoring import SegmentScorer
from streaming.ingest.speakers import SpeakerStage
from streaming.memory.retention import Retention, RetentionPolicy
from streaming.records import RetentionCut


def restore_stages(pipe, stepper, voice=None) -> None:
    """Make ``pipe``'s scorer, retention and speaker stage, and fill its new (empty) stages from
    ``pipe.restored`` (None for a new stream: nothing to fill). ``stepper``: the stream model;
    ``voice``: the speaker model (None: no speaker labels)."""
    r = pipe.restored
    cp = r.checkpoint if r is not None else None
    last = r.features[-1] if r is not None and r.features else None
    pipe.scorer = SegmentScorer(pipe.settings, stepper, last)
    cut = RetentionCut(**cp.info["retained"]) if cp is not None and "retained" in cp.info else None
    pipe.retention = Retention(RetentionPolicy.from_settings(pipe.settings, pipe.spec.live), pipe.index,
                               pipe.levels, pipe.visual, pipe.store, cut)
    if r is not None:
        pipe.visual.restore(r.items, r.frames)
    if r is not None and r.segments:
        restored = [pipe.visual.fuse(s)[0] for s in r.segments]
        pipe.index.add_timeline(restored, r.vectors)
        pipe.levels.restore(restored, r.vectors, (cut.meso_id, cut.macro_id) if cut else (0, 0))
        if not pipe.resumable and cp.info.get("state") == "finished":
            pipe.levels.flush()  # an ended stream's last parents close, as they did when it ended
        pipe.status.segments = len(pipe.index)
        pipe.status.words = sum(len(s.words) for s in r.segments)
    if cp is not None:
        pipe.scorer.load(cp.model, cp.tracker)
    pipe.speakers = SpeakerStage(voice.embed) if voice is not None else None
    if pipe.speakers is not None and r is not None:  # the same voices keep the same labels
        pipe.speakers.restore(r.segments, r.voices, cp.info.get("speakers_next", 1) if cp else 1)
