"""One Ray actor per stream: owns its source, recogniser, embedder and index writer.

The actor is named and detached, so any API replica can find it and it outlives the replica that
created it. Its methods run in a thread pool (max_concurrency) so searches and status calls are
answered while the ingest threads work.
"""

from __future__ import annotations

import logging
import re
import secrets

import ray

from streaming.index import set_search_threads
from streaming.pipeline import StreamPipeline
from streaming.records import Evidence
from streaming.settings import Settings
from streaming.sources import SourceError, parse_source

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


@ray.remote(max_concurrency=16, max_restarts=0)
class StreamActor:
    def __init__(self, stream_id: str, name: str, source: str, settings: dict):
        configure_logging()
        self.settings = Settings.load(settings)
        set_search_threads(self.settings.faiss_threads)
        self.pipeline: StreamPipeline | None = None
        self.id, self.name, self.source = stream_id, name, source
        self._error: str | None = None
        try:
            spec = parse_source(source)
            self.pipeline = StreamPipeline(stream_id, name, spec, self.settings, self._load_models)
        except SourceError as exc:
            # Stay alive to report the reason: a dead actor would only say that it died.
            self._error = str(exc)
            log.error("stream %s cannot start: %s", stream_id, exc)

    def _load_models(self):
        from manta_models.asr import WhisperASR
        from manta_models.embed import TextEmbedder

        s = self.settings
        asr = WhisperASR(s.asr_model, cache_dir=s.cache_dir, device=s.asr_device,
                         compute_type=s.asr_compute_type, threads=s.asr_threads,
                         beam_size=s.asr_beam_size, language=s.language,
                         min_silence_s=s.asr_min_silence_s)
        return asr, TextEmbedder(s.embed_model, threads=s.torch_threads)

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

    def search(self, query, k: int, start: float | None, end: float | None) -> list[Evidence]:
        if self.pipeline is None:
            return []
        return [Evidence(self.id, seg.t0, seg.t1, seg.text, score)
                for seg, score in self.pipeline.search(query, k, start, end)]

    def segments(self, start: float | None, end: float | None, limit: int) -> list[dict]:
        if self.pipeline is None:
            return []
        segs = self.pipeline.segments(start, end)[:limit]
        return [{"seq": s.seq, "start": s.t0, "end": s.t1, "text": s.text, "ingested_wall": s.wall,
                 "words": [{"text": w.text, "start": w.start, "end": w.end} for w in s.words]}
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
