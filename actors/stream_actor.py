"""One Ray actor per stream: owns its source, models, stream-model state and index writer.

The actor is named and detached, so any API replica can find it and it outlives the replica that
created it. Its methods run in a thread pool (max_concurrency) so searches and status calls are
answered while the ingest threads work. Every commit is checkpointed to the stream's SQLite file;
when Ray restarts a crashed actor (max_restarts), or the service starts again and restores a saved
stream (``resume=True``), the actor reloads that file and resumes the source from the last commit,
with the Mamba state exactly as it was; a stream that had ended only comes back searchable.
"""

from __future__ import annotations

import logging
import re
import secrets
from pathlib import Path

import ray

from streaming.search.baseline import FixedChunks
from streaming.memory.index import set_search_threads
from streaming.ingest.pipeline import StreamPipeline
from streaming.records import Evidence
from streaming.search.retrieve import RetrievalPlan, Retrieved, retrieve
from streaming.settings import Settings
from streaming.source.media import LIVE_SCHEMES, SourceError, SourceSpec, parse_source
from streaming.memory.data_dir import store_path, streams_dir
from streaming.memory.store import StreamStore
from streaming.source.redact import redact_text, redact_uri
from streaming.search.view import StreamView
from streaming.watch.matcher import observed

from actors.metrics import MetricsExporter
from actors.model_service import RemoteModels
from actors.watch_desk import WatchFeed
from actors.logs import configure_logging, prepare_environment

log = logging.getLogger("manta.stream_actor")

ACTOR_PREFIX = "manta-stream:"
STREAM_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", text.strip().lower()).strip("-_")


def make_stream_id(name: str | None, hint: str = "") -> str:
    """A readable id: the name slugged when given, else the source's name plus a random suffix."""
    if name:
        slug = _slug(name)[:63]
        if not STREAM_ID_RE.match(slug):
            raise ValueError("name must contain at least one letter or digit")
        return slug
    base = _slug(hint)[:40] or "s"
    return f"{base}-{secrets.token_hex(2)}"


def actor_name(stream_id: str) -> str:
    return ACTOR_PREFIX + stream_id


def saved_spec(source: str) -> SourceSpec:
    """The spec of a saved stream's recorded source (``SourceSpec.uri``) when parse_source no
    longer accepts it (the file is gone): the stream's data stays searchable, and a resumed reader
    reports why the source cannot be read."""
    scheme = source.split("://", 1)[0].lower() if "://" in source else "file"
    return SourceSpec(uri=source, live=scheme in LIVE_SCHEMES, scheme=scheme)


def _parent_dict(p) -> dict:
    return {"level": p.level, "id": p.id, "start": p.t0, "end": p.t1, "children": list(p.children),
            "summary": p.summary, "density": p.density, "closed": p.closed}


def resume_pipeline(pipe: StreamPipeline, note: str, unavailable: str | None = None) -> None:
    """Start a pipeline built on its stream's saved store (a crash restart, or the service started
    again): one that had ended only restores its index; one that was ingesting resumes its source
    at the checkpoint. ``unavailable``: why the source can no longer be opened (the reader then
    fails with the reason, and what was indexed stays searchable)."""
    pipe.status.notes.append(note)
    cp = pipe.restored.checkpoint if pipe.restored else None
    if pipe.resumable and cp is not None:
        # Media decoded but not committed before the stop is decoded again from the checkpoint.
        # Counting it as read would let a source that fails now pad the stream (and its store)
        # with quiet segments up to where the old reader had got.
        pipe.status.media_seconds = cp.resume_t
    if unavailable is not None:
        pipe.status.notes.append(f"source no longer available ({unavailable}): what was indexed stays "
                                 "searchable")
    pipe.start()


@ray.remote(max_concurrency=16)
class StreamActor:
    def __init__(self, stream_id: str, name: str, source: str, settings: dict, resume: bool = False,
                 models=None):
        """``resume``: a stream saved in ``data_dir`` coming back after the service restarted. Like
        a crash restart it keeps the store, restores from it and starts at once (nobody calls
        ``start``); without it the stream's store is new (an old one is never overwritten). ``models``: a handle
        of the shared ``models`` deployment (actors/model_service.py); None loads models here."""
        prepare_environment(local=False)  # the operator's egress for the source, not Ray's closed proxy
        configure_logging()
        self.settings = Settings.load(settings)
        set_search_threads(self.settings.faiss_threads)
        self.pipeline: StreamPipeline | None = None
        self.id, self.name, self.source = stream_id, name, source
        self._error: str | None = None
        self._remote = RemoteModels(models, stream_id) if models is not None else None
        self._chunks: FixedChunks | None = None  # the eval baseline's index, built on first use
        restarted = ray.get_runtime_context().was_current_actor_reconstructed
        self._resumed = resume or restarted
        streams_dir(self.settings.data_dir)  # made private (0700) before the first store is in it
        path = store_path(self.settings.data_dir, stream_id)
        unavailable = None
        try:
            spec = parse_source(source)
        except SourceError as exc:
            if not self._resumed:
                spec = None
                # Stay alive to report the reason: a dead actor would only say that it died.
                self._error = str(exc)
                log.error("stream %s cannot start: %s", stream_id, redact_text(str(exc)))
            else:  # the file is gone: what was indexed must not go with it
                spec, unavailable = saved_spec(source), str(exc)
        store = self._open_store(path) if spec is not None else None
        self._watches: WatchFeed | None = None
        if store is not None:
            self.pipeline = StreamPipeline(stream_id, name, spec, self.settings, self._loader(spec),
                                           store=store)
            self._watches = WatchFeed(stream_id, name, self.settings)
            self.pipeline.on_commit = self._check_watches
        if self._resumed and self.pipeline is not None:
            self._resume(restarted, unavailable)
        self._metrics = MetricsExporter(stream_id, self.status).start()

    def _check_watches(self, segments, vectors, items) -> None:
        """Standing questions: every commit's new speech and shown items, the moment they are searchable."""
        pipe = self.pipeline
        self._watches.check(observed(segments, vectors, items), pipe.clock(), pipe.progress.sent_wall)

    def _open_store(self, path: Path) -> StreamStore | None:
        """The stream's store: the saved one when resuming; else a new file, never an old one
        emptied. The directory refuses a name whose store is on disk (409), so an old store here
        means a request raced that check: this stream then fails and the old data stays."""
        if self._resumed:
            return StreamStore(path)
        try:
            return StreamStore(path, new=True)
        except FileExistsError:
            self._error = (f"stream {self.id} already has stored data in {path.parent}; it is kept. "
                           f"Remove it with DELETE /v1/streams/{self.id}?remove=true, or use another name")
            log.error("stream %s cannot start: %s", self.id, self._error)
            return None

    def _loader(self, spec: SourceSpec):
        if self._remote is not None:
            # Live and real-time-paced streams go ahead of files read fast in the shared services.
            return self._remote.for_stream(spec.live or self.settings.pace == "realtime")
        from manta_models.loader import ModelSet

        return ModelSet(self.settings).for_stream

    def _resume(self, restarted: bool, unavailable: str | None) -> None:
        if restarted:
            log.warning("stream %s restarted after a crash: resuming from its checkpoint", self.id)
        if unavailable is not None:
            log.warning("stream %s: its source is no longer available (%s); what it indexed stays "
                        "searchable", self.id, redact_text(unavailable))
        resume_pipeline(self.pipeline, "restarted after a crash" if restarted
                        else "restored from data_dir when the service started", unavailable)

    def start(self) -> dict:
        if self.pipeline is not None and self._error is None:
            try:
                self.pipeline.probe()
                self.pipeline.start()
            except SourceError as exc:
                self._error = str(exc)
        return self.status()

    def status(self) -> dict:
        """What anyone who may call the API sees: credentials in the source are masked here, in
        the URI and in every message that may quote it (the checkpoint keeps the real URI)."""
        snap = self._status()
        snap["source"] = redact_uri(snap.get("source"))
        snap["last_error"] = redact_text(snap.get("last_error"))
        if snap.get("notes"):
            snap["notes"] = [redact_text(n) for n in snap["notes"]]
        return snap

    def _status(self) -> dict:
        if self.pipeline is None or (self._error and self.pipeline.status.state == "starting"):
            return {"id": self.id, "name": self.name, "source": self.source, "state": "failed",
                    "last_error": self._error, "segments": 0, "media_seconds": 0.0}
        snap = self.pipeline.snapshot()
        if self._resumed and snap["state"] != "failed" and not self.pipeline.wait_ready(0):
            # Models and the saved index are still loading: until then a search finds nothing, so
            # do not claim "finished" (a client waiting for it would ask too early).
            snap["state"] = "restoring"
        if self._remote is not None and self._remote.waiting_for and snap["state"] not in ("finished", "failed"):
            snap["waiting_for"] = self._remote.waiting_for
        return snap

    def search(self, query, k: int, start: float | None, end: float | None,
               kinds: set[str] | None = None, text: str = "") -> list[Evidence]:
        """Evidence of the wanted kinds; ``query`` None lists what was shown, in time order. ``text``
        is the question's content, for a CLIP backend's text tower."""
        if self.pipeline is None:
            return []
        return StreamView.of(self.pipeline).evidence(query, k, start, end, kinds, text)

    def retrieve(self, plan: RetrievalPlan) -> Retrieved:
        """Coarse-to-fine candidates for one question (streaming.search.retrieve)."""
        if self.pipeline is None or not self.pipeline.wait_ready(0):
            return Retrieved((), plan.start, plan.end, 0.0, self._not_ready_note())
        return retrieve(StreamView.of(self.pipeline), plan)

    def _not_ready_note(self) -> tuple[str, ...]:
        """Why this stream gave no evidence although it may hold some: an answer must not read as
        "not found" while the stream is still coming back (right after `manta up` restarts)."""
        if self.pipeline is None:
            return ()
        state = self.status()["state"]
        if state == "restoring":
            return (f"stream {self.id} is still restoring its saved index: ask again in a few seconds",)
        if state == "waiting":
            return (f"stream {self.id} is waiting for its sender: nothing has been received yet",)
        if state in ("starting", "connecting", "ingesting", "pending"):
            waiting = self._remote.waiting_for if self._remote is not None else None
            return (f"stream {self.id} is not searchable yet (waiting for {waiting or 'its models'})",)
        return ()

    def baseline(self, query, k: int, start: float | None, end: float | None) -> list[Evidence]:
        """The single-level baseline's top-``k`` 30 s chunks (streaming.search.baseline), for ``manta eval``."""
        pipe = self.pipeline
        if pipe is None or not pipe.wait_ready(0):
            return []
        if self._chunks is None:
            self._chunks = FixedChunks(pipe.models.embedder.encode)
        shown = pipe.visual.shown() if pipe.visual is not None else []
        return self._chunks.search(query, k, StreamView.of(pipe).segments(), shown, pipe.status.committed_seconds,
                                   self.id, start, end)

    def parents(self, level: str, start: float | None, end: float | None, limit: int) -> list[dict]:
        """Meso or macro parents overlapping the span, the still-open one last."""
        levels = self.pipeline.levels if self.pipeline is not None else None
        if levels is None:
            return []
        return [_parent_dict(p) for p in levels.parents(level, start, end)[:limit]]

    def search_level(self, query, k: int, level: str, start: float | None,
                     end: float | None) -> list[Evidence]:
        levels = self.pipeline.levels if self.pipeline is not None else None
        if levels is None:
            return []
        return [Evidence(self.id, p.t0, p.t1, p.summary, score, "said", level)
                for p, score in levels.search(query, k, level, start, end)]

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

    def thumbnail(self, at: float) -> tuple[float, bytes] | None:
        """A live stream's kept thumbnail nearest ``at`` media seconds, as (its time, JPEG)."""
        return self.pipeline.thumbnails.nearest(at) if self.pipeline is not None else None

    def recording(self) -> dict:
        """``live``, and ``path``: the local file a recorded stream reads (None for anything else),
        for the dashboard's player; the API checks it against the source policy again."""
        spec = self.pipeline.spec if self.pipeline is not None else saved_spec(self.source)
        return {"live": spec.live, "path": spec.uri if spec.scheme == "file" else None}

    def segments(self, start: float | None, end: float | None, limit: int,
                 include_summary: bool = False) -> list[dict]:
        if self.pipeline is None:
            return []
        segs = StreamView.of(self.pipeline).segments(start, end)[:limit]
        return [{"seq": s.seq, "start": s.t0, "end": s.t1, "text": s.text, "ingested_wall": s.wall,
                 "words": [{"text": w.text, "start": w.start, "end": w.end} for w in s.words],
                 "surprise": s.surprise, "surprise_raw": s.surprise_raw, "novelty": s.novelty,
                 "boundary": s.boundary, "coherence": s.coherence, "density": s.density,
                 "merged_into": s.merged_into,
                 **({"speaker": s.speaker} if s.speaker else {}),  # only where a speaker model labels voices
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
            if self._remote is not None:
                self._remote.close()  # a call waiting for the model service gives up
            self.pipeline.join(timeout=10)
        return self.status()

    def __ray_shutdown__(self) -> None:
        # Only when the actor exits: a stopped stream stays searchable, so its metrics stay exported.
        self._metrics.close()
        if self._watches is not None:
            self._watches.close()
