"""What one stream's pipeline needs from the models: small protocols that manta_models implements.

The pipeline is pure logic; it sees models only through these, so tests and tools can hand it any
object that fits (manta_models.loader.ModelSet builds the real ones from Settings).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from streaming.records import Word


class StaleRequest(TimeoutError):
    """A model service dropped a request that waited too long to be worth answering (provisional
    text: its audio is old by then). Declared here, at the boundary both sides see."""


class Embedder(Protocol):
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


class FrameEmbedder(Protocol):
    def encode(self, frames: list[np.ndarray]) -> tuple[np.ndarray, list]: ...


class TextReader(Protocol):
    def read(self, frame: np.ndarray) -> list: ...


class Stepper(Protocol):
    """One stream's recurrent model state (manta_models.statespace.stream_model.StreamStepper)."""

    def step(self, blocks: dict[str, np.ndarray | None]) -> Any: ...

    def state_dict(self) -> dict[str, np.ndarray]: ...

    def load_state_dict(self, d: dict[str, np.ndarray]) -> None: ...


class VoiceEmbedder(Protocol):
    """Speaker vectors (manta_models.perception.speaker.SpeakerEncoder): one unit row per clip of
    16 kHz mono audio, a zero row for a clip too short to tell."""

    def embed(self, clips: list[np.ndarray]) -> np.ndarray: ...


class SpeechRecognizer(Protocol):
    def speech_spans(self, audio: np.ndarray) -> list[tuple[int, int]]: ...

    def transcribe_window(self, audio: np.ndarray, prompt: str | None = None,
                          one_window: bool = True, fit: bool = False) -> tuple[list[Word], bool]:
        """Word-timed text of ``audio`` (times relative to its start) and whether Whisper finished
        it. ``one_window``: at most one 30 s encoder pass (the caller keeps what is left);
        ``fit``: encode only as much as the audio needs (>= 10 s) rather than 30 s."""


@dataclass
class Models:
    asr: SpeechRecognizer
    embedder: Embedder
    vision: FrameEmbedder | None = None
    ocr: TextReader | None = None  # on-screen text and bitmap subtitles
    clip: Any = None  # manta_models.perception.clip.ClipEncoder: frames searchable by text
    captioner: Any = None  # manta_models.perception.captioner.Captioner
    stepper: Stepper | None = None  # the stream model, with this stream's state
    asr_fallback: SpeechRecognizer | None = None  # smaller ASR for a stream that falls behind
    asr_provisional: SpeechRecognizer | None = None  # fast ASR for live text not yet final
    speaker: VoiceEmbedder | None = None  # voices, for speaker labels (None: speaker_model off)


ModelLoader = Callable[[], Models]
