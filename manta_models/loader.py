"""Build the models one stream needs from Settings; shared weights, per-stream state."""

from __future__ import annotations

import logging
import threading

from streaming.interfaces import Models
from streaming.settings import Settings

log = logging.getLogger("manta.models")

# Every model a stream may use, in the order ``shared`` returns them.
PARTS = ("asr", "embedder", "vision", "reader", "clip", "captioner", "stream_model", "fallback", "provisional",
         "speaker")


def _recogniser(s: Settings):
    if s.asr_backend == "transformers":  # a local Hugging Face Whisper folder, through torch
        from manta_models.perception.asr_hf import HFWhisperASR

        return HFWhisperASR
    from manta_models.perception.asr import WhisperASR

    return WhisperASR


def enabled(part: str, s: Settings) -> bool:
    """Whether the settings use this model (without loading anything)."""
    return {"asr": True, "embedder": True, "fallback": bool(s.asr_fallback_model),
            "provisional": s.asr_provisional_model != "off",
            "vision": s.visual_model != "off" and s.frame_fps > 0,
            "reader": s.ocr != "off" and (s.frame_fps > 0 or s.subtitles),
            "clip": bool(s.clip_model), "captioner": bool(s.caption_model),
            "stream_model": s.stream_model != "off", "speaker": s.speaker_model != "off"}[part]


def _load(part: str, s: Settings):
    """One model from the settings; None when the settings turn it off."""
    if not enabled(part, s):
        return None
    if part == "asr":
        return _recogniser(s).from_settings(s)
    if part == "fallback":
        return _recogniser(s).from_settings(s.model_copy(update={"asr_model": s.asr_fallback_model}))
    if part == "provisional":
        from manta_models.perception.asr import BUNDLED, WhisperASR

        # A bundled model is a CTranslate2 one whatever the final recogniser's backend is.
        cls = WhisperASR if s.asr_provisional_model in BUNDLED else _recogniser(s)
        return cls.from_settings(s.model_copy(update={"asr_model": s.asr_provisional_model,
                                                      "asr_threads": s.provisional_threads}))
    if part == "embedder":
        from manta_models.perception.embed import TextEmbedder

        return TextEmbedder(s.embed_model, threads=s.torch_threads)
    if part == "vision":
        from manta_models.perception.vision import VisualEmbedder

        return VisualEmbedder(threads=s.torch_threads)
    if part == "reader":
        from manta_models.perception.ocr import TextReader

        return TextReader(threads=s.torch_threads, side=s.ocr_side)
    if part == "clip":
        from manta_models.perception.clip import ClipEncoder

        return ClipEncoder(s.clip_model, threads=s.torch_threads)
    if part == "captioner":
        from manta_models.perception.captioner import Captioner

        return Captioner(s.caption_model, threads=s.torch_threads)
    if part == "speaker":
        from manta_models.perception.speaker import SpeakerEncoder

        return SpeakerEncoder(threads=s.torch_threads)
    if part == "stream_model":
        from manta_models.statespace.stream_model import load_stream_model

        return load_stream_model(s.stream_model)
    raise KeyError(f"no model part {part!r}")


class ModelSet:
    """Loads each model once per process, when first asked for; ``for_stream`` adds a fresh
    stream-model state.

    Loading is lazy and locked, so the first stream pays for it and concurrent streams in one
    process (tests, the training extractor) share the weights; a shared model service that serves
    only some models (``part``) loads only those.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._parts: dict[str, object] = {}

    def part(self, name: str):
        """One model (``PARTS``), loaded once; None when the settings turn it off."""
        with self._lock:
            if name not in self._parts:
                self._parts[name] = _load(name, self.settings)
            return self._parts[name]

    def loaded(self) -> set[str]:
        """The parts asked for so far (loaded, or off in the settings)."""
        with self._lock:
            return set(self._parts)

    def shared(self) -> tuple:
        """(asr, embedder, vision, reader, clip, captioner, stream_model, asr_fallback,
        asr_provisional, speaker), loaded once."""
        return tuple(self.part(p) for p in PARTS)

    def for_stream(self) -> Models:
        asr, embedder, vision, reader, clip, captioner, stream_model, fallback, provisional, speaker = self.shared()
        stepper = None
        if stream_model is not None:
            from manta_models.statespace.stream_model import StreamStepper

            stepper = StreamStepper(stream_model)
        return Models(asr=asr, embedder=embedder, vision=vision, ocr=reader, clip=clip, captioner=captioner,
                      stepper=stepper, asr_fallback=fallback, asr_provisional=provisional, speaker=speaker)
