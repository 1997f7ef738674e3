"""One copy of each model for every stream of a process, behind per-stream clients.

``SharedModels`` loads the weights once (through ``ModelSet``) and puts each model behind a
``MicroBatcher``; ``for_stream`` hands a stream a ``Models`` whose members are small clients that
implement streaming/interfaces.py's Protocols, so the pipeline cannot tell them from its own models.
What is the stream's own stays with the stream: its language once detected, its place in the
queues (live ahead of files, its own in-flight bound), and its stream-model state.

- speech: one recognition at a time (faster-whisper's one-window trick is not re-entrant, and on a
  CPU CTranslate2 already uses every thread it is given); VAD runs in the caller's thread;
- text embeddings: every stream's texts waiting go to MiniLM in one call;
- frames: every stream's frames waiting go to EfficientNet in one batch;
- on-screen text: RapidOCR reads the frames waiting one after another (it has no batch call).

Ray Serve deployments wrap the same services for many stream actors; tests, tools and benchmarks
use them in-process.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from manta_models.loader import ModelSet
from manta_models.serving.batcher import FILE, LIVE, BatchStats, MicroBatcher
from streaming.interfaces import Models
from streaming.records import Word
from streaming.settings import Settings


def _embed_batch(embedder):
    def run(requests: list[list[str]]) -> list[np.ndarray]:
        flat = [t for texts in requests for t in texts]
        vectors = embedder.encode(flat)
        out, i = [], 0
        for texts in requests:
            out.append(vectors[i:i + len(texts)])
            i += len(texts)
        return out
    return run


def _frame_batch(vision):
    def run(frames: list[np.ndarray]) -> list[tuple[np.ndarray, object]]:
        vectors, labels = vision.encode(frames)
        return [(vectors[i:i + 1], labels[i]) for i in range(len(frames))]
    return run


def _speech(asrs: dict):
    def run(requests: list[tuple]) -> list[tuple[list[Word], bool, str | None]]:
        return [asrs[which].transcribe_as(audio, prompt, one_window, language)
                for which, audio, prompt, one_window, language in requests]
    return run


class SharedModels:
    def __init__(self, settings: Settings, models: ModelSet | None = None):
        self.settings = settings
        self._set = models or ModelSet(settings)
        self._lock = threading.Lock()
        self._services: dict[str, MicroBatcher] | None = None
        self._loaded: tuple | None = None

    def _start(self) -> dict[str, MicroBatcher]:
        with self._lock:
            if self._services is None:
                s = self.settings
                self._loaded = asr, embedder, vision, reader, *_, fallback = self._set.shared()
                services = {"speech": MicroBatcher(_speech({"main": asr, "fallback": fallback}), max_batch=1,
                                                   max_wait_s=0.0, max_in_flight=2, name="speech"),
                            "text": MicroBatcher(_embed_batch(embedder), max_batch=s.service_max_batch,
                                                 max_wait_s=s.service_max_wait_s, max_in_flight=4, name="text")}
                if vision is not None:
                    services["frames"] = MicroBatcher(_frame_batch(vision), max_batch=s.service_max_batch,
                                                      max_wait_s=s.service_max_wait_s, max_in_flight=4,
                                                      name="frames")
                if reader is not None:
                    services["ocr"] = MicroBatcher(lambda frames: [reader.read(f) for f in frames],
                                                   max_batch=s.service_max_batch, max_wait_s=s.service_max_wait_s,
                                                   max_in_flight=4, name="ocr")
                self._services = services
            return self._services

    def for_stream(self, stream_id: str, live: bool = False) -> Models:
        """The models for one stream: clients of the shared services plus its own stream-model state.
        ``live``: a live or real-time-paced stream, served ahead of files read fast."""
        services = self._start()
        asr, embedder, vision, reader, clip, captioner, stream_model, fallback = self._loaded
        priority = LIVE if live else FILE
        stepper = None
        if stream_model is not None:
            from manta_models.statespace.stream_model import StreamStepper

            stepper = StreamStepper(stream_model)
        speech = services["speech"]
        return Models(
            asr=SpeechClient(speech, asr, "main", stream_id, priority),
            embedder=TextClient(services["text"], embedder.dim, stream_id, priority),
            vision=FrameClient(services["frames"], vision.dim, stream_id, priority) if vision is not None else None,
            ocr=ReaderClient(services["ocr"], stream_id, priority) if reader is not None else None,
            clip=clip, captioner=captioner, stepper=stepper,
            asr_fallback=SpeechClient(speech, fallback, "fallback", stream_id, priority) if fallback else None)

    def stats(self) -> list[BatchStats]:
        return [b.stats() for b in (self._services or {}).values()]

    def close(self) -> None:
        for b in (self._services or {}).values():
            b.close()


class SpeechClient:
    """A stream's speech recogniser: VAD here, recognition in the shared service, its own language."""

    def __init__(self, service: MicroBatcher, model, which: str, key: str, priority: int):
        self.service, self.model, self.which, self.key, self.priority = service, model, which, key, priority
        self.language = model.configured_language  # never another stream's detection

    def speech_spans(self, audio: np.ndarray) -> list[tuple[int, int]]:
        return self.model.speech_spans(audio)

    def transcribe_window(self, audio: np.ndarray, prompt: str | None = None,
                          one_window: bool = True) -> tuple[list[Word], bool]:
        words, complete, self.language = self.service(
            (self.which, audio, prompt, one_window, self.language), self.key, self.priority)
        return words, complete


class TextClient:
    def __init__(self, service: MicroBatcher, dim: int, key: str, priority: int):
        self.service, self.dim, self.key, self.priority = service, dim, key, priority

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.service(list(texts), self.key, self.priority)


class FrameClient:
    def __init__(self, service: MicroBatcher, dim: int, key: str, priority: int):
        self.service, self.dim, self.key, self.priority = service, dim, key, priority

    def encode(self, frames: Sequence[np.ndarray]) -> tuple[np.ndarray, list]:
        if not frames:
            return np.zeros((0, self.dim), dtype=np.float32), []
        futures = [self.service.submit(f, self.key, self.priority) for f in frames]
        results = [f.result() for f in futures]
        return np.concatenate([v for v, _ in results]), [lab for _, lab in results]


class ReaderClient:
    def __init__(self, service: MicroBatcher, key: str, priority: int):
        self.service, self.key, self.priority = service, key, priority

    def read(self, frame: np.ndarray) -> list:
        return self.service(frame, self.key, self.priority)
