"""Build the models one stream needs from Settings; shared weights, per-stream state."""

from __future__ import annotations

import logging
import threading

from streaming.interfaces import Models
from streaming.settings import Settings

log = logging.getLogger("manta.models")


class ModelSet:
    """Loads each model once per process; ``for_stream`` adds a fresh stream-model state.

    Loading is lazy and locked, so the first stream pays for it and concurrent streams in one
    process (tests, the training extractor) share the weights.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._shared: tuple | None = None

    def _load(self) -> tuple:
        from manta_models.perception.asr import WhisperASR
        from manta_models.perception.embed import TextEmbedder

        s = self.settings
        if s.asr_backend == "transformers":  # a local Hugging Face Whisper folder, through torch
            from manta_models.perception.asr_hf import HFWhisperASR as recogniser
        else:
            recogniser = WhisperASR
        asr = recogniser.from_settings(s)
        fallback = None
        if s.asr_fallback_model:
            fallback = recogniser.from_settings(s.model_copy(update={"asr_model": s.asr_fallback_model}))
        embedder = TextEmbedder(s.embed_model, threads=s.torch_threads)
        vision = None
        if s.visual_model != "off" and s.frame_fps > 0:
            from manta_models.perception.vision import VisualEmbedder

            vision = VisualEmbedder(threads=s.torch_threads)
        reader = None
        if s.ocr != "off" and (s.frame_fps > 0 or s.subtitles):
            from manta_models.perception.ocr import TextReader

            reader = TextReader(threads=s.torch_threads, side=s.ocr_side)
        clip = captioner = None
        if s.clip_model:
            from manta_models.perception.clip import ClipEncoder

            clip = ClipEncoder(s.clip_model, threads=s.torch_threads)
        if s.caption_model:
            from manta_models.perception.captioner import Captioner

            captioner = Captioner(s.caption_model, threads=s.torch_threads)
        stream_model = None
        if s.stream_model != "off":
            from manta_models.statespace.stream_model import load_stream_model

            stream_model = load_stream_model(s.stream_model)
        return asr, embedder, vision, reader, clip, captioner, stream_model, fallback

    def shared(self) -> tuple:
        """(asr, embedder, vision, reader, clip, captioner, stream_model, asr_fallback), loaded once."""
        with self._lock:
            if self._shared is None:
                self._shared = self._load()
        return self._shared

    def for_stream(self) -> Models:
        asr, embedder, vision, reader, clip, captioner, stream_model, fallback = self.shared()
        stepper = None
        if stream_model is not None:
            from manta_models.statespace.stream_model import StreamStepper

            stepper = StreamStepper(stream_model)
        return Models(asr=asr, embedder=embedder, vision=vision, ocr=reader, clip=clip, captioner=captioner,
                      stepper=stepper, asr_fallback=fallback)
