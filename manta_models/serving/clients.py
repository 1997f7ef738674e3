"""A stream's side of the shared model services: clients that implement streaming/interfaces.py's
Protocols over a ``call(service, item, stream, priority)``, so the pipeline cannot tell them from
its own models. In-process the call goes straight to ``SharedModels``; in a stream actor it goes
through a Ray Serve handle (actors/model_service.py). What is the stream's own stays here: its
language once detected, its place in the queues, and its stream-model state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from streaming.interfaces import Models
from streaming.records import Word

Call = Callable[[str, object, str, int], object]


class Step(NamedTuple):
    """One stream-model step's output (StreamStepper.step's StepOutput, as plain values)."""

    surprise: float | None
    coherence: float | None
    summary: np.ndarray


class SpeechClient:
    """A stream's speech recogniser: VAD and recognition in the services, its own language."""

    def __init__(self, call: Call, which: str, language: str | None, key: str, priority: int,
                 service: str = "speech"):
        self.call, self.which, self.key, self.priority = call, which, key, priority
        self.service = service
        self.language = language  # never another stream's detection
        self.configured_language = language  # what the operator set (None: detect, and detect again)

    def speech_spans(self, audio: np.ndarray) -> list[tuple[int, int]]:
        return [tuple(s) for s in self.call("vad", audio, self.key, self.priority)]

    def transcribe_window(self, audio: np.ndarray, prompt: str | None = None,
                          one_window: bool = True, fit: bool = False) -> tuple[list[Word], bool]:
        words, complete, self.language = self.call(
            self.service, (self.which, audio, prompt, one_window, self.language, fit), self.key, self.priority)
        return words, complete


class TextClient:
    def __init__(self, call: Call, dim: int, key: str, priority: int):
        self.call, self.dim, self.key, self.priority = call, dim, key, priority

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(self.call("text", list(texts), self.key, self.priority), dtype=np.float32)


class FrameClient:
    def __init__(self, call: Call, dim: int, key: str, priority: int):
        self.call, self.dim, self.key, self.priority = call, dim, key, priority

    def encode(self, frames: Sequence[np.ndarray]) -> tuple[np.ndarray, list]:
        if not frames:
            return np.zeros((0, self.dim), dtype=np.float32), []
        results = self.call("frames", list(frames), self.key, self.priority)
        return np.stack([v for v, _ in results]).astype(np.float32), [lab for _, lab in results]


class ReaderClient:
    def __init__(self, call: Call, key: str, priority: int):
        self.call, self.key, self.priority = call, key, priority

    def read(self, frame: np.ndarray) -> list:
        return self.call("ocr", frame, self.key, self.priority)


class StepperClient:
    """A stream's recurrent state, kept here and sent with every step: the service keeps nothing
    of a stream, so a replaced replica, or another one, continues the same state exactly."""

    def __init__(self, call: Call, key: str, priority: int):
        self.call, self.key, self.priority = call, key, priority
        self._state: dict[str, np.ndarray] = {}

    def step(self, blocks: dict[str, np.ndarray | None]):
        out, self._state = self.call("stream", ("step", self._state, blocks), self.key, self.priority)
        return Step(*out)

    def state_dict(self) -> dict[str, np.ndarray]:
        return dict(self._state)

    def load_state_dict(self, d: dict[str, np.ndarray]) -> None:
        self.call("stream", ("check", dict(d), None), self.key, self.priority)  # ValueError if it does not fit
        self._state = dict(d)


class ClipClient:
    def __init__(self, call: Call, key: str, priority: int):
        self.call, self.key, self.priority = call, key, priority

    def encode_frames(self, frames: list[np.ndarray]) -> np.ndarray:
        return np.asarray(self.call("clip_frames", list(frames), self.key, self.priority), dtype=np.float32)

    def encode_text(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.call("clip_text", list(texts), self.key, self.priority), dtype=np.float32)


class CaptionClient:
    def __init__(self, call: Call, key: str, priority: int):
        self.call, self.key, self.priority = call, key, priority

    def caption(self, frames: list[np.ndarray]) -> list[str]:
        return list(self.call("caption", list(frames), self.key, self.priority))


class VoiceClient:
    def __init__(self, call: Call, key: str, priority: int):
        self.call, self.key, self.priority = call, key, priority

    def embed(self, clips: list[np.ndarray]) -> np.ndarray:
        if not clips:
            return np.zeros((0, 256), dtype=np.float32)
        return np.asarray(self.call("voice", list(clips), self.key, self.priority), dtype=np.float32)


def stream_models(call: Call, facts, stream_id: str, priority: int) -> Models:
    """One stream's ``Models`` over the services ``facts`` (a ServiceFacts) lists."""
    has = set(facts.services)
    lang = facts.speech_language
    return Models(
        asr=SpeechClient(call, "main", lang, stream_id, priority),
        embedder=TextClient(call, facts.text_dim, stream_id, priority),
        vision=FrameClient(call, facts.frame_dim, stream_id, priority) if "frames" in has else None,
        ocr=ReaderClient(call, stream_id, priority) if "ocr" in has else None,
        clip=ClipClient(call, stream_id, priority) if "clip_frames" in has else None,
        captioner=CaptionClient(call, stream_id, priority) if "caption" in has else None,
        stepper=StepperClient(call, stream_id, priority) if "stream" in has else None,
        asr_fallback=SpeechClient(call, "fallback", lang, stream_id, priority) if facts.speech_fallback else None,
        asr_provisional=SpeechClient(call, "provisional", lang, stream_id, priority, "provisional")
        if getattr(facts, "speech_provisional", False) else None,
        speaker=VoiceClient(call, stream_id, priority) if "voice" in has else None)
