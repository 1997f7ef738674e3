"""One Ray actor per stream: owns its source, models, stream-model state and index writer.

The actor is named and detached, so any API replica can find it and it outlives the replica that
created it. Its methods run in a thread pool (max_concurrency) so searches and status calls are
answered while the ingest threads work. Every commit is checkpointed to the stream's SQLite file;
when Ray restarts a crashed actor (max_restarts), it reloads that file and resumes the source
from the last commit, with the Mamba state exactly as it was.
"""

from __future__ import annotations

import logging
import re
import secrets
from pathlib import Path

import ray

from streaming.index import set_search_threads
from streaming.pipeline import StreamPipeline
from streaming.records import Evidence
from streaming.settings import Settings
from streaming.sources import SourceError, parse_source
from streaming.store import StreamStore, remove_store

from .runtime import configure_logging

log = logging.getLogger("manta.stream_actor")

ACTOR_PREFIX = "manta-stream:"
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", text.strip().lower()).strip("-_")


def make_stream_id(name: str | None, hint: str = "") -> str:
    """A readable id: the name slugged when given, else the source's name plus a random suffix."""
    if name:
        slug = _slug(name)[:63]
        if not _ID_RE.match(slug):
            raise ValueError("name must contain at least one letter or digit")
        return slug
    base = _slug(hint)[:40] or "s"
    return f"{base}-{secrets.token_hex(2)}"


def actor_name(stream_id: str) -> str:
    return ACTOR_PREFIX + stream_id


def store_path(data_dir: Path, stream_id: str) -> Path:
    return Path(data_dir) / "streams" / f"{stream_id}.sqlite"


@ray.remote(max_concurrency=16)
class StreamActor:
    def __init__(self, stream_id: str, name: str, source: str, settings: dict):
        from manta_models.loader import ModelSet

        configure_logging()
        self.settings = Settings.load(settings)
        set_search_threads(self.settings.faiss_threads)
        self.pipeline: StreamPipeline | None = None
        self.id, self.name, self.source = stream_id, name, source
        self._error: str | None = None
        restarted = ray.get_runtime_context().was_current_actor_reconstructed
        path = store_path(self.settings.data_dir, stream_id)
        if not restarted:
            remove_store(path)  # a new stream that reuses an old id starts empty
        try:
            spec = parse_source(source)
            self.pipeline = StreamPipeline(stream_id, name, spec, self.settings,
                                           ModelSet(self.settings).for_stream, store=StreamStore(path))
        except SourceError as exc:
            # Stay alive to report the reason: a dead actor would only say that it died.
            self._error = str(exc)
            log.error("stream %s cannot start: %s", stream_id, exc)
        if restarted and self.pipeline is not None:
            log.warning("stream %s restarted after a crash: resuming from its checkpoint", stream_id)
            self.pipeline.status.notes.append("restarted after a crash")
            self.pipeline.start()  # nobody else will: the API called start() on the first life only

    def start(self) -> dict:
        if self.pipeline is not None and self._error is None:
            try:
                self.pipeline.probe()
                self.pipeline.start()
            except SourceError as exc:
                self._error = str(exc)
        return self.status()

    def status(self) -> dict:
        if self.pipeline is None or (self._error and self.pipeline.status.state == "starting"):
            return {"id": self.id, "name": self.name, "source": self.source, "state": "failed",
                    "last_error": self._error, "segments": 0, "media_seconds": 0.0}
        return self.pipeline.snapshot()

    def search(self, query, k: int, start: float | None, end: float | None,
               kinds: set[str] | None = None, text: str = "") -> list[Evidence]:
        """Evidence of the wanted kinds; ``query`` None lists what was shown, in time order. ``text``
        is the question's content, for a CLIP backend's text tower."""
        if self.pipeline is None:
            return []
        return self.pipeline.evidence(query, k, start, end, kinds, text)

    def shown(self, start: float | None, end: float | None, limit: int) -> list[dict]:
        """On-screen text and subtitle cues, each with its span."""
        visual = self.pipeline.visual if self.pipeline is not None else None
        if visual is None:
            return []
        return [{"id": it.id, "kind": it.kind, "text": it.text, "start": it.t0, "end": it.t1,
                 "confidence": it.confidence, "box": list(it.box) if it.box else None}
                for it in visual.shown(start, end)[:limit]]

    def frames(self, start: float | None, end: float | None, limit: int) -> list[dict]:
        """Sampled frames with their image labels; ``cut`` is set (to the time the shot began) on
        the first frame sampled in a new shot."""
        visual = self.pipeline.visual if self.pipeline is not None else None
        if visual is None or visual.frames is None:
            return []
        return [{"t": f.t, "cut": f.cut, "labels": [{"name": n, "p": round(p, 4)} for n, p in f.labels]}
                for f in visual.frames.items(start, end)[:limit]]

    def frame_vector(self, t: float):
        visual = self.pipeline.visual if self.pipeline is not None else None
        return visual.frame_vector(t) if visual is not None else None

    def similar_frames(self, vector, k: int, start: float | None, end: float | None) -> list[dict]:
        visual = self.pipeline.visual if self.pipeline is not None else None
        if visual is None:
            return []
        return [{"stream": self.id, "t": f.t, "score": score, "cut": f.cut,
                 "labels": [n for n, _ in f.labels]}
                for f, score in visual.similar_frames(vector, k, start, end)]

    def segments(self, start: float | None, end: float | None, limit: int,
                 include_summary: bool = False) -> list[dict]:
        if self.pipeline is None:
            return []
        segs = self.pipeline.segments(start, end)[:limit]
        return [{"seq": s.seq, "start": s.t0, "end": s.t1, "text": s.text, "ingested_wall": s.wall,
                 "words": [{"text": w.text, "start": w.start, "end": w.end} for w in s.words],
                 "surprise": s.surprise, "surprise_raw": s.surprise_raw, "novelty": s.novelty,
                 "boundary": s.boundary, "coherence": s.coherence,
                 # Within the segment: a title still on screen keeps growing its own span.
                 "shown": [{"kind": it.kind, "text": it.text, "start": max(it.t0, s.t0),
                            "end": min(it.t1, s.t1)} for it in s.shown],
                 "seen": [{"t": f.t, "labels": [n for n, _ in f.labels], "cut": f.cut} for f in s.seen]} | ({"summary": list(s.summary)} if include_summary else {})
                for s in segs]

    def import_segments(self, segments: list, vectors) -> int:
        """Add already-embedded segments (a reload, or a benchmark's synthetic history)."""
        if self.pipeline is None or not self.pipeline.wait_ready(timeout=120):
            raise RuntimeError(f"stream {self.id} has no index: {self._error}")
        self.pipeline.index.add(segments, vectors)
        self.pipeline.status.segments = len(self.pipeline.index)
        return len(self.pipeline.index)

    def stop(self) -> dict:
        if self.pipeline is not None:
            self.pipeline.stop()
            self.pipeline.join(timeout=10)
        return self.status()
