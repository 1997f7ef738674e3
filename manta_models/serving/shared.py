"""One copy of each model for every stream of a process, behind named, batching services.

``SharedModels`` loads the weights once (through ``ModelSet``) and puts each model behind a
``MicroBatcher``. A service is reached by name with ``submit(service, item, stream, priority)``;
``for_stream`` hands a stream a ``Models`` of clients (manta_models/serving/clients.py) that call
these services in-process. The Ray Serve deployment (actors/model_service.py) hosts the same object
and stream actors reach it through a handle with the same clients: the services never hold anything
of one stream's, and a stream never holds weights.

- speech: one recognition at a time (faster-whisper's one-window trick is not re-entrant, and on a
  CPU CTranslate2 already uses every thread it is given); the caller sends its own language;
- vad: Silero VAD over a piece of audio (run here, so a stream process needs no ONNX runtime);
- text: every stream's texts waiting go to MiniLM in one call;
- frames: every stream's frames waiting go to EfficientNet in one batch;
- ocr: RapidOCR reads the frames waiting one after another (it has no batch call);
- provisional: the fast recogniser re-decoding live streams' text that is not final yet, beside
  ``speech`` (its own model, so neither waits for the other); a request that waited past
  ``provisional_stale_s`` is dropped, as its audio is old by then (streaming/ingest/provisional.py);
- stream: the stream model's step on state the caller sends and gets back (the state is the
  stream's: it is checkpointed with the stream, never kept here);
- clip_frames, clip_text, caption: the optional CLIP and captioner, when configured;
- voice: speaker vectors of every stream's speech clips waiting, in one LSTM call (speaker_model).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from manta_models.loader import PARTS, ModelSet
from manta_models.serving.batcher import FILE, LIVE, BatchStats, MicroBatcher
from streaming.interfaces import Models
from streaming.settings import Settings


class UnknownService(ValueError):
    pass


# Which models each service needs (manta_models.loader.PARTS). A service whose model the settings
# turn off is not offered.
SERVICES: dict[str, tuple[str, ...]] = {
    "speech": ("asr", "fallback"), "vad": ("asr",), "text": ("embedder",), "frames": ("vision",),
    "ocr": ("reader",), "stream": ("stream_model",), "clip_frames": ("clip",), "clip_text": ("clip",),
    "caption": ("captioner",), "provisional": ("provisional",), "voice": ("speaker",)}


@dataclass(frozen=True)
class ServiceFacts:
    """What a stream's clients must know of the services without calling them (sent once)."""

    services: tuple[str, ...]
    text_dim: int | None
    frame_dim: int | None
    speech_language: str | None  # the configured language; None: each stream detects its own
    speech_fallback: bool  # a smaller recogniser for streams that fall behind
    speech_provisional: bool = False  # the fast recogniser for live text not yet final

    @staticmethod
    def merge(parts: list["ServiceFacts"]) -> "ServiceFacts":
        """The facts of services split over several deployments, as one."""
        first = lambda attr: next((getattr(p, attr) for p in parts if getattr(p, attr) is not None), None)  # noqa: E731
        speech = [p for p in parts if "speech" in p.services]
        return ServiceFacts(tuple(x for p in parts for x in p.services), first("text_dim"), first("frame_dim"),
                            speech[0].speech_language if speech else None,
                            any(p.speech_fallback for p in speech),
                            any(p.speech_provisional for p in parts))


def _flat(fn):
    """A batch function over lists of items from a function over one list: every request's items
    go to the model in one call and each request gets its slice back."""
    def run(requests: list[list]) -> list:
        flat = [x for items in requests for x in items]
        out = fn(flat) if flat else []
        results, i = [], 0
        for items in requests:
            results.append(out[i:i + len(items)])
            i += len(items)
        return results
    return run


def _frames(vision):
    def run(frames: list[np.ndarray]) -> list[tuple[np.ndarray, object]]:
        vectors, labels = vision.encode(frames)
        return [(vectors[i], labels[i]) for i in range(len(frames))]
    return _flat(run)


def _speech(asrs: dict):
    def run(requests: list[tuple]) -> list:
        return [asrs[which].transcribe_as(audio, prompt, one_window, language, *fit)
                for which, audio, prompt, one_window, language, *fit in requests]
    return run


def _speech_batched(asrs: dict):
    """A backend with ``transcribe_batch`` (asr_backend: transformers): every stream's piece waiting
    goes to the model in one call per recogniser (prompts are not used by that backend)."""
    def run(requests: list[tuple]) -> list:
        results: list = [None] * len(requests)
        for which in {r[0] for r in requests}:
            idx = [i for i, r in enumerate(requests) if r[0] == which]
            done = asrs[which].transcribe_batch([(requests[i][1], requests[i][4]) for i in idx])
            for i, r in zip(idx, done):
                results[i] = r
        return results
    return run


def _stream(model):
    from manta_models.statespace.stream_model import StreamStepper

    def one(request: tuple):
        op, state, blocks = request
        stepper = StreamStepper(model)
        if state:
            stepper.load_state_dict(state)  # ValueError: the state does not fit this model
        if op == "check":
            return None
        out = stepper.step(blocks)
        # Plain values, not StepOutput: unpickling that would import torch in the stream's process.
        return (out.surprise, out.coherence, out.summary), stepper.state_dict()

    def run(requests: list[tuple]) -> list:
        results = []
        for r in requests:  # a step is ~1 ms on a CPU; batching steps across streams is left for a GPU
            try:
                results.append(one(r))
            except ValueError as exc:  # this request's state is wrong: fail it alone, not the batch
                results.append(exc)
        return results
    return run


class SharedModels:
    def __init__(self, settings: Settings, models: ModelSet | None = None, services=None):
        """``services``: the names (``SERVICES``) this one serves, loading only their models (one
        deployment per model on a GPU); None serves them all."""
        unknown = set(services or ()) - SERVICES.keys()
        if unknown:
            raise UnknownService(f"unknown model services {sorted(unknown)}; known: {', '.join(SERVICES)}")
        self.settings = settings
        self.wanted = tuple(services) if services is not None else tuple(SERVICES)
        self._set = models or ModelSet(settings)
        self._lock = threading.Lock()
        self._services: dict[str, MicroBatcher] | None = None
        self._facts: ServiceFacts | None = None

    def _batcher(self, name: str, fn, in_flight: int = 4, max_batch: int | None = None) -> MicroBatcher:
        s = self.settings
        return MicroBatcher(fn, max_batch=max_batch or s.service_max_batch,
                            max_wait_s=0.0 if max_batch == 1 else s.service_max_wait_s,
                            max_in_flight=in_flight, name=name)

    def start(self) -> ServiceFacts:
        """Load the models (once) and start the services; returns what clients need to know."""
        with self._lock:
            if self._services is None:
                part, s = self._set.part, self.settings
                need = {p for name in self.wanted for p in SERVICES[name]}
                m = {p: part(p) if p in need else None for p in PARTS}
                asr, embedder, vision, reader = m["asr"], m["embedder"], m["vision"], m["reader"]
                b = self._batcher
                services = {}
                if "speech" in self.wanted:
                    asrs = {"main": asr, "fallback": m["fallback"]}
                    # faster-whisper: one recognition at a time (see the module docstring); a
                    # backend that batches (transformers on a GPU) takes every stream's piece at once.
                    services["speech"] = b("speech", _speech_batched(asrs), 2) \
                        if hasattr(asr, "transcribe_batch") else b("speech", _speech(asrs), 2, max_batch=1)
                if m["provisional"] is not None and "provisional" in self.wanted:
                    fast = m["provisional"]
                    run = _speech_batched({"provisional": fast}) if hasattr(fast, "transcribe_batch") \
                        else _speech({"provisional": fast})
                    services["provisional"] = MicroBatcher(
                        run, max_batch=s.service_max_batch if hasattr(fast, "transcribe_batch") else 1,
                        max_wait_s=0.0, max_in_flight=1, name="provisional", stale_s=s.provisional_stale_s)
                if "vad" in self.wanted:
                    services["vad"] = b("vad", lambda audios: [asr.speech_spans(a) for a in audios])
                if "text" in self.wanted:
                    services["text"] = b("text", _flat(embedder.encode))
                if vision is not None:
                    services["frames"] = b("frames", _frames(vision))
                if reader is not None:
                    services["ocr"] = b("ocr", lambda frames: [reader.read(f) for f in frames])
                if m["stream_model"] is not None:
                    services["stream"] = b("stream", _stream(m["stream_model"]))
                clip, captioner = m["clip"], m["captioner"]
                if clip is not None and "clip_frames" in self.wanted:
                    services["clip_frames"] = b("clip_frames", _flat(clip.encode_frames))
                if clip is not None and "clip_text" in self.wanted:
                    services["clip_text"] = b("clip_text", _flat(clip.encode_text))
                if captioner is not None:
                    services["caption"] = b("caption", _flat(captioner.caption))
                if m["speaker"] is not None and "voice" in self.wanted:
                    services["voice"] = b("voice", _flat(m["speaker"].embed))
                self._facts = ServiceFacts(
                    tuple(services), embedder.dim if embedder is not None else None,
                    vision.dim if vision is not None else None,
                    asr.configured_language if asr is not None else None, m["fallback"] is not None,
                    "provisional" in services)
                self._services = services
            return self._facts

    def submit(self, service: str, item, key: str = "", priority: int = LIVE) -> Future:
        """Queue one request for a service; blocks while stream ``key`` has too many in flight."""
        self.start()
        try:
            batcher = self._services[service]
        except KeyError:
            raise UnknownService(f"no model service {service!r} (this configuration serves "
                                 f"{', '.join(self._services)})") from None
        return batcher.submit(item, key, priority)

    def call(self, service: str, item, key: str = "", priority: int = LIVE):
        result = self.submit(service, item, key, priority).result()
        if isinstance(result, Exception):  # one request's own error (a batch's other requests went on)
            raise result
        return result

    def for_stream(self, stream_id: str, live: bool = False) -> Models:
        """The models for one stream: clients of these services; ``live``: a live or real-time-paced
        stream, served ahead of files read fast."""
        from manta_models.serving.clients import stream_models

        return stream_models(self.call, self.start(), stream_id, LIVE if live else FILE)

    def stats(self) -> list[BatchStats]:
        return [b.stats() for b in (self._services or {}).values()]

    def close(self) -> None:
        for b in (self._services or {}).values():
            b.close()
