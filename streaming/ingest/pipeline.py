"""One stream's ingest: source → transcriber → micro segments → fused features → stream model
(surprise, boundaries) → embeddings → index → checkpoint.

Two threads: a reader that decodes into a bounded queue (so a slow recogniser applies backpressure
to a file and a live socket's own buffer absorbs bursts), and a worker that turns audio into
searchable segments. Everything already indexed stays searchable whatever happens to the source.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from streaming.ingest.features import SignalWindow
from streaming.ingest.governor import Degradation, Governor, StreamClock
from streaming.ingest.languages import LanguageTrack
from streaming.ingest.progress import IngestProgress
from streaming.memory.index import SegmentIndex
from streaming.records import AudioChunk, MicroSegment, StreamStatus, SubtitleCue, VideoFrame
from streaming.ingest.segmenter import MicroSegmenter
from streaming.settings import Settings
from streaming.source.media import CHUNK_SECONDS, MediaSource, SourceError, SourceSpec
from streaming.source.policy import SourcePolicy
from streaming.source.redact import redact_text
from streaming.memory.store import Checkpoint, StreamStore
from streaming.interfaces import Embedder, ModelLoader, Models
from streaming.memory.levels import StreamLevels
from streaming.ingest.transcript import IncrementalTranscriber, transcriber_profile
from streaming.ingest.visual import VisualStage
from streaming.ingest.thumbnails import ThumbnailRing
from streaming.ingest.restore import restore_stages
from streaming.ingest.provisional import provisional_for

log = logging.getLogger("manta.pipeline")
_END = object()


class StreamPipeline:
    """``load_models`` runs on the worker thread, so a live source is connected (and its first
    packets queued) while models load, and a dead URL fails within its open timeout."""

    def __init__(self, stream_id: str, name: str, spec: SourceSpec, settings: Settings,
                 load_models: ModelLoader, clock: Callable[[], float] = time.time,
                 store: StreamStore | None = None):
        self.id, self.spec, self.settings = stream_id, spec, settings
        self._load_models = load_models
        self.clock = clock
        self.status = StreamStatus(id=stream_id, name=name, source=spec.display, live=spec.live,
                                   started_wall=clock())
        self.index: SegmentIndex | None = None  # created once the embedder's width is known
        self.levels: StreamLevels | None = None  # meso and macro, likewise
        self.models: Models | None = None
        self.transcriber: IncrementalTranscriber | None = None
        # Live text not final yet (streaming/ingest/provisional.py): the worker publishes what the
        # transcriber holds, the provisional thread what it heard there.
        self.pending_audio = None
        self.provisional = None
        self.provisional_worker = None
        self.store = store
        # A restarted stream picks up from its last commit: segments, model state, source position.
        self.restored = store.load(stream_id) if store is not None else None
        cp = self.restored.checkpoint if self.restored else None
        resume_t = cp.resume_t if cp else 0.0
        self._ready = threading.Event()
        self._stop = threading.Event()
        # Frames are decoded only for a visual stage: decoding them otherwise would be waste.
        visual_on = settings.visual_model != "off" or settings.ocr != "off"
        frame_fps = settings.frame_fps if visual_on else 0.0
        self.frame_step_s = 1.0 / frame_fps if frame_fps > 0 else 1.0
        self.visual: VisualStage | None = None
        self.speakers = None  # streaming/ingest/speakers.py, made with the models when there is a speaker model
        self.languages: LanguageTrack | None = None  # where the spoken language changes, made with the models
        self.thumbnails = ThumbnailRing() if spec.live else ThumbnailRing(keep_s=0)  # a file is read again
        self.source = MediaSource(
            spec, open_timeout=settings.open_timeout_s, read_timeout=settings.read_timeout_s,
            pace=settings.pace, frame_fps=frame_fps, reconnect_initial=settings.reconnect_initial_s,
            reconnect_max=settings.reconnect_max_s, stop=self._stop, on_gap=self.status.gaps.append,
            start_at=resume_t, subtitles=settings.subtitles, scene_threshold=settings.scene_threshold,
            resumed=cp is not None, check=SourcePolicy.from_settings(settings),
            listen_wait=settings.listen_wait_s, connect_retry=settings.connect_retry_s,
            read_before=cp.media_seconds if cp else 0.0)
        self.segmenter = MicroSegmenter(stream_id, target_s=settings.micro_target_s, fill_quiet=True,
                                        start=resume_t, seq=cp.next_seq if cp else 0)
        self.window = SignalWindow()
        self._queue: queue.Queue = queue.Queue(maxsize=max(2, int(settings.queue_seconds / CHUNK_SECONDS)))
        self._threads: list[threading.Thread] = []
        self._tail_flushed_at = -1.0  # media time when a live outage last flushed the held tail
        # Called in the worker thread after each commit with (segments, vectors, shown items created
        # or grown): the stream actor checks its watches there (actors/watch_desk.py).
        self.on_commit: Callable[[list[MicroSegment], list, list], None] | None = None
        # Only a stream that must keep up with a clock degrades; a fast-read file just waits.
        self.live_paced = spec.live or settings.pace == "realtime"
        self.governor: Governor | None = None
        self.stream_clock = StreamClock(clock) if self.live_paced else None
        self.progress = IngestProgress(self.status, self.source, self.stream_clock, resume_t)
        if cp is not None:
            self.status.media_seconds = cp.media_seconds
            self.status.committed_seconds = resume_t
            self.status.notes.append(f"resumed from its checkpoint at {resume_t:.1f} s")

    @property
    def embedder(self) -> Embedder | None:
        return self.models.embedder if self.models else None

    @property
    def language(self) -> str | None:  # what Whisper detected in this stream (or was told)
        return getattr(self.models.asr, "language", None) if self.models else None

    @property
    def resumable(self) -> bool:
        """False when the stream had already ended before a restart: only its index comes back."""
        cp = self.restored.checkpoint if self.restored else None
        return cp is None or cp.info.get("state") not in ("finished", "stopped")

    # -- control -------------------------------------------------------------------------------
    def probe(self) -> None:
        """Open a recorded source now so a bad file is reported to the caller, not in the background."""
        if not self.spec.live:
            self.source.probe()

    def start(self) -> None:
        self._worker = threading.Thread(target=self._work, name=f"manta-{self.id}-worker", daemon=True)
        if not self.resumable:
            self._set(state=self.restored.checkpoint.info["state"])
            self._stop.set()  # the worker loads models, restores the index and ends
            self._reader = threading.Thread(target=lambda: self._queue.put(_END), daemon=True)
        else:
            self._set(state="connecting" if self.spec.live else "ingesting")
            self._reader = threading.Thread(target=self._read, name=f"manta-{self.id}-reader",
                                            daemon=True)
        self._threads = [self._reader, self._worker]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Stop ingesting; what is indexed stays searchable."""
        self._stop.set()
        if self.status.state not in ("finished", "failed"):
            self._set(state="stopped")

    def join(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    # -- state for the read side (streaming.search.view.StreamView.of) ---------------------------
    def wait_ready(self, timeout: float | None = None) -> bool:
        """True once models are loaded and the index exists."""
        return self._ready.wait(timeout)

    def snapshot(self) -> dict:
        return self.progress.snapshot(self.language, self.visual, self.provisional_now(), self.provisional_worker)

    def provisional_now(self):
        """The provisional text past what is final and searchable now (None when there is none)."""
        heard = self.provisional
        if heard is None:
            return None
        # The index first: a commit adds its segments there a moment before committed_seconds moves.
        return heard.after(max(self.status.committed_seconds, self.index.end if self.index is not None else 0.0))

    # -- threads -------------------------------------------------------------------------------
    def _read(self) -> None:
        try:
            for chunk in self.source:
                if self.spec.live and self.status.state in ("connecting", "reconnecting"):
                    self._set(state="ingesting")
                self.status.media_seconds = max(self.status.media_seconds,
                                                getattr(chunk, "t1", 0.0))
                if self.stream_clock is not None:
                    self.stream_clock.on_read(getattr(chunk, "t0", getattr(chunk, "t", 0.0)),
                                              self.source.progress.reconnects)
                if self.spec.live and isinstance(chunk, VideoFrame) and self._queue.full():
                    # A live socket does not wait: blocking here would overrun its buffer and lose
                    # audio at random. A sampled frame is the cheapest thing to go without.
                    self.status.dropped_frames += 1
                    continue
                while not self._stop.is_set():
                    try:
                        self._queue.put(chunk, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    break
            if not self.source.progress.has_audio and not self._stop.is_set():
                self.status.notes.append("no audio track: nothing to transcribe")
        except SourceError as exc:
            self._fail(str(exc))
        except Exception as exc:  # noqa: BLE001 - a reader crash must surface as a stream error
            log.exception("reader of stream %s crashed", self.id)
            self._fail(f"source reader crashed: {type(exc).__name__}: {exc}")
        finally:
            while True:  # the worker always drains, so this put succeeds unless the worker died
                try:
                    self._queue.put(_END, timeout=1.0)
                    break
                except queue.Full:
                    if not self._worker.is_alive():
                        break

    def _load(self) -> None:
        self.models = m = self._load_models()
        cp = self.restored.checkpoint if self.restored else None
        self.languages = LanguageTrack.from_info(cp.info if cp else None)
        self.transcriber = IncrementalTranscriber(
            m.asr, min_silence_s=self.settings.asr_min_silence_s,
            tail_hold_s=self.settings.asr_tail_hold_s, languages=self.languages,
            **transcriber_profile(self.settings, self.live_paced))
        self.index = SegmentIndex(m.embedder.dim)
        self.levels = StreamLevels(self.settings, m.embedder.dim)
        self.visual = VisualStage(m.embedder.encode, m.embedder.dim, vision=m.vision, reader=m.ocr,
                                  frame_step_s=self.frame_step_s,
                                  ocr_interval_s=self.settings.ocr_interval_s, clip=m.clip,
                                  captioner=m.captioner)
        restore_stages(self, m.stepper, m.speaker)
        self.provisional_worker = provisional_for(self)
        if self.live_paced and self.settings.degrade:
            self.governor = Governor.from_settings(self.settings, self.source.frame_fps, m.asr_fallback is not None,
                                                   self.provisional_worker is not None)
        self._ready.set()
        if self.provisional_worker is not None and not self._stop.is_set():
            self.provisional_worker.start()

    def _work(self) -> None:
        try:
            self._load()
            while True:
                try:
                    item = self._queue.get(timeout=0.5)
                except queue.Empty:
                    # Stopping still drains: the reader ends with _END, and what was received up to
                    # the stop is transcribed and indexed. Only a dead reader ends the loop here.
                    if not self._reader.is_alive() and self._queue.empty():
                        self._finish()
                        break
                    if self.spec.live and not self.source.progress.connected:
                        self._flush_tail()
                    continue
                if item is _END:
                    t = time.perf_counter()
                    self._finish()
                    self.progress.busy += time.perf_counter() - t
                    self._progress()
                    break
                t = time.perf_counter()
                self.progress.took(item)
                if isinstance(item, AudioChunk):
                    self.window.add_audio(item)
                    if self.speakers is not None:  # the audio a segment's voice is cut from
                        self.speakers.on_audio(item)
                    words = self.transcriber.push(item)
                    self._commit(self.segmenter.push(words, self.transcriber.committed_until), words)
                elif isinstance(item, VideoFrame):
                    self.thumbnails.add(item.t, item.image)  # the dashboard's pictures of a live stream
                    vector = self.visual.on_frame(item)
                    if vector is not None:
                        self.window.add_frame(item.t, vector)
                    if not self.source.progress.has_audio:  # a silent film: pictures drive time
                        self._commit(self.segmenter.push([], item.t), [])
                elif isinstance(item, SubtitleCue):
                    self.visual.on_cue(item)
                self.progress.busy += time.perf_counter() - t
                self._progress()
                if isinstance(item, AudioChunk):  # for provisional text: what is held past the final words
                    self.pending_audio = self.transcriber.pending(self.status.committed_seconds)
                self._govern()
        except Exception as exc:  # noqa: BLE001 - a model crash must surface, not stop silently
            log.exception("worker of stream %s crashed", self.id)
            if self.provisional_worker is not None:
                self.provisional_worker.stop()
            stage = "processing" if self._ready.is_set() else "loading models"
            self._fail(f"{stage} failed: {type(exc).__name__}: {exc}")
            self._stop.set()

    def _flush_tail(self) -> None:
        """The live source went quiet past its read timeout and everything received is processed:
        make the held tail (the last words, waiting for the silence after them) searchable now
        rather than when the sender comes back, which may be never."""
        if self.transcriber is None or self.transcriber.buffered_seconds == 0 or \
                self._tail_flushed_at == self.status.media_seconds:  # once per outage
            return
        self._tail_flushed_at = self.status.media_seconds
        t = time.perf_counter()
        self._flush_transcript(self.transcriber.committed_until)
        self.progress.busy += time.perf_counter() - t
        self._progress()
        self.pending_audio = self.transcriber.pending(self.status.committed_seconds)

    def _flush_transcript(self, until: float) -> None:
        """Transcribe what the transcriber holds and index it with the segmenter's open words."""
        words = self.transcriber.flush()
        self._commit(self.segmenter.push(words, until) + self.segmenter.flush(), words)

    def _finish(self) -> None:
        if self.provisional_worker is not None:  # everything heard becomes final now
            self.provisional_worker.stop()
        self._flush_transcript(self.status.media_seconds)
        self.provisional = self.pending_audio = None
        if self.status.state not in ("failed", "stopped"):
            self.levels.flush()  # the stream ended: its last meso and macro close
        self.status.committed_seconds = self.status.media_seconds
        self._progress()
        if self.status.state not in ("failed", "stopped"):
            self._set(state="finished")
        if self.store is not None and self.resumable:
            self.store.update_info(state=self.status.state)

    def _commit(self, segments: list[MicroSegment], words: list) -> None:
        self.status.words += len(words)
        if not segments:
            return
        m = self.models
        voices: list = [None] * len(segments)
        if self.speakers is not None:  # who spoke each segment, before anything copies it
            segments, voices = self.speakers.label(segments)
        # Own words only: measured on jfk, prefixing the previous segment made exact quotes rank
        # their neighbour first and helped paraphrased questions no more than it hurt.
        spoken = [i for i, s in enumerate(segments) if s.words]
        encoded = m.embedder.encode([segments[i].text for i in spoken])
        vectors: list[np.ndarray | None] = [None] * len(segments)
        for row, i in enumerate(spoken):
            vectors[i] = encoded[row]
        now = self.clock()
        scored, features = [], []
        for seg, vec in zip(segments, vectors):
            seg, shown = self.visual.fuse(seg)  # audio and picture align by media time first
            feats = self.window.features(seg, vec, shown)
            scored.append(self.levels.score(self.scorer.score(replace(seg, wall=now), feats), vec))
            features.append(feats)
        self.index.add_timeline(scored, vectors)
        self.levels.add(scored, vectors)
        self.visual.add_labels(scored)
        self.window.trim(scored[-1].t1)
        self.status.segments = len(self.index)
        items, frames = self.visual.take_changes()
        if self.store is not None:
            self.store.commit(scored, vectors, features, self._checkpoint(scored[-1]), items, frames, voices)
        if self.on_commit is not None:
            try:
                self.on_commit(scored, vectors, items)
            except Exception:  # noqa: BLE001 - a watch must never stop what it watches
                log.exception("stream %s: checking watches failed", self.id)
        self.retention.after_commit(scored[-1].t1)

    def _checkpoint(self, last: MicroSegment) -> Checkpoint:
        model, trackers = self.scorer.state()
        return Checkpoint(
            next_seq=self.segmenter.next_seq, resume_t=last.t1, media_seconds=self.status.media_seconds,
            wall=self.clock(), model=model, tracker=trackers,
            # The real URI, credentials included: a restart must open the source again.
            info={"source": self.spec.uri, "name": self.status.name, "state": self.status.state,
                  "pace": self.settings.pace,  # a realtime-paced file resumes realtime-paced
                  **self.retention.info(), **(self.speakers.info() if self.speakers is not None else {}),
                  **(self.languages.info() if self.languages is not None else {})})

    def _progress(self) -> None:
        if self.transcriber is not None:
            self.progress.update(self.transcriber, self.segmenter, self.clock())

    def _govern(self) -> None:
        if self.governor is None:
            return
        change = self.governor.update(self.clock(), self.status.backlog_s)
        if change is not None:
            self._degrade(change)

    def _degrade(self, d: Degradation) -> None:
        """Apply a backpressure level: the source samples fewer frames, OCR reads less often, and at
        the last level a smaller recogniser takes over (speech itself is never shed)."""
        if d.frame_fps > 0:
            self.source.frame_fps = d.frame_fps
            self.frame_step_s = 1.0 / d.frame_fps
            if self.visual is not None:
                self.visual.frame_step_s = self.frame_step_s
        if self.visual is not None:
            self.visual.gate.min_interval_s = d.ocr_interval_s
        m = self.models
        self.transcriber.asr = m.asr_fallback if d.fallback_asr and m.asr_fallback is not None else m.asr
        self.status.degraded = d.level
        self.status.degradation = d.to_dict()
        log.warning("stream %s: quality level %d (%s): %s", self.id, d.level, d.describe(), d.reason)

    def _set(self, **fields) -> None:
        for k, v in fields.items():
            setattr(self.status, k, v)
        self.status.updated_wall = self.clock()
        log.info("stream %s: %s", self.id, " ".join(f"{k}={v}" for k, v in fields.items()))

    def _fail(self, reason: str) -> None:
        if self.status.state == "failed":
            return  # keep the first reason: it is the cause, later ones are consequences
        self.status.last_error = redact_text(reason)  # a reader's error may quote the source URL
        self._set(state="failed")
