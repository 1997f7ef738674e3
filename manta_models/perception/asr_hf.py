"""Whisper through transformers (``asr_backend: transformers``): a local Hugging Face Whisper folder
(``save_pretrained`` layout, e.g. large-v3-turbo), batched across streams on a GPU.

Why a second backend: many GPU users hold HF-format checkpoints, and CTranslate2's 4.x wheels need
CUDA 12's libcublas.so.12, so on a CUDA 13 machine Whisper only runs through torch. The decode is
``manta_models.perception.torch_batch.WhisperBatch``: one encoder pass and one greedy decode for every
stream's window waiting, so the speech service batches this backend (``transcribe_batch``).

What differs from faster-whisper, by choice:
- every request starts with the same three tokens (<|startoftranscript|> <|lang|> <|transcribe|>)
  and no previous-text prompt, so a batch needs no padding and each stream's result is exactly what
  it gets alone; a stream's own language is kept per request;
- word times come from Whisper's timestamp tokens: each timestamped segment's words share its span
  in proportion to their length (no cross-attention alignment), good to a fraction of a segment;
- VAD is the same Silero VAD (faster-whisper's), so pieces are cut where they are today.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from streaming.records import Word

from manta_models.packaged import ModelError, check_model_dir, load_model

log = logging.getLogger("manta.asr")

RATE = 16_000
SECONDS_PER_TIMESTAMP = 0.02
LANGUAGE_TOKEN = re.compile(r"^<\|([a-z]{2,3}|haw|yue)\|>$")


def _device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


class HFWhisperASR:
    def __init__(self, folder: str | Path, *, device: str = "auto", language: str | None = None,
                 min_silence_s: float = 0.5, max_new_tokens: int = 224):
        import torch
        from faster_whisper.vad import VadOptions
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        from manta_models.perception.torch_batch import WhisperBatch

        self.path = check_model_dir(folder, "Whisper (transformers)")
        self.name = str(self.path)
        dev = _device(device)
        try:
            self.processor = WhisperProcessor.from_pretrained(self.path, local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - transformers raises OSError/ValueError/TypeError
            raise ModelError(f"{self.path} has no usable Whisper processor (preprocessor_config.json and "
                             f"tokenizer files): {exc}") from exc
        model = load_model(WhisperForConditionalGeneration, self.path, "Whisper model", dev)
        if dev == "cuda":
            model = model.to(torch.float16)
        self.model = model
        tok = self.processor.tokenizer
        ids = tok.convert_tokens_to_ids
        self.sot, self.transcribe_id, self.eot = ids("<|startoftranscript|>"), ids("<|transcribe|>"), tok.eos_token_id
        # Whisper's convention: the timestamp tokens follow <|notimestamps|> (<|0.00|> is the next id).
        self.timestamp_begin = ids("<|notimestamps|>") + 1
        self.languages = {m.group(1): i for t, i in tok.get_vocab().items() if (m := LANGUAGE_TOKEN.match(t))
                          and i < self.timestamp_begin}
        if language is not None and language not in self.languages:
            raise ModelError(f"language {language!r} is not one this Whisper knows")
        self.language = self.configured_language = language
        self.max_new_tokens = min(max_new_tokens, model.config.max_target_positions // 2)
        self.vad = VadOptions(min_silence_duration_ms=int(min_silence_s * 1000), speech_pad_ms=200)
        self._batch = WhisperBatch(model, (), eos_id=self.eot)

    @classmethod
    def from_settings(cls, s) -> "HFWhisperASR":
        return cls(s.asr_model, device=s.asr_device, language=s.language, min_silence_s=s.asr_min_silence_s)

    # -- the SpeechRecognizer protocol ---------------------------------------------------------------
    def speech_spans(self, audio: np.ndarray) -> list[tuple[int, int]]:
        from manta_models.perception.asr import speech_spans

        return speech_spans(audio, self.vad)

    def transcribe_window(self, audio: np.ndarray, prompt: str | None = None,
                          one_window: bool = True, fit: bool = False) -> tuple[list[Word], bool]:
        words, complete, self.language = self.transcribe_as(audio, prompt, one_window, self.language)
        return words, complete

    def transcribe_as(self, audio: np.ndarray, prompt: str | None, one_window: bool,
                      language: str | None, fit: bool = False) -> tuple[list[Word], bool, str | None]:
        """``fit`` is ignored: this backend batches windows of one shape (30 s)."""
        return self.transcribe_batch([(audio, language)])[0]

    # -- batched ------------------------------------------------------------------------------------
    def features(self, audios: list[np.ndarray]) -> np.ndarray:
        fe = self.processor.feature_extractor
        return fe([np.asarray(a, dtype=np.float32)[:fe.n_samples] for a in audios], sampling_rate=RATE,
                  return_tensors="np").input_features

    def detect(self, features: np.ndarray) -> list[str]:
        """The most likely language of each window: one decoder step after <|startoftranscript|>."""
        import torch

        m, codes = self.model, list(self.languages)
        allowed = torch.tensor([self.languages[c] for c in codes])
        with torch.inference_mode():
            x = torch.from_numpy(features).to(m.device, m.dtype)
            enc = m.model.encoder(x).last_hidden_state
            start = torch.full((len(features), 1), self.sot, device=m.device)
            logits = m.proj_out(m.model.decoder(input_ids=start, encoder_hidden_states=enc).last_hidden_state[:, -1])
            best = logits[:, allowed.to(m.device)].argmax(-1).tolist()
        return [codes[i] for i in best]

    def transcribe_batch(self, requests: list[tuple[np.ndarray, str | None]]) -> list[tuple[list[Word], bool, str | None]]:
        """Several streams' pieces (audio, the stream's language or None) in one encoder pass and one
        decode; returns (words, complete, language to use next) for each. A piece is at most 30 s."""
        from manta_models.perception.torch_batch import WindowRequest

        if not requests:
            return []
        feats = self.features([a for a, _ in requests])
        unknown = [i for i, (_, lang) in enumerate(requests) if lang is None]
        detected = dict(zip(unknown, self.detect(feats[unknown]))) if unknown else {}
        langs = [lang if lang is not None else detected[i] for i, (_, lang) in enumerate(requests)]
        windows = [WindowRequest(feats[i], self._budget(len(a)),
                                 (self.sot, self.languages[langs[i]], self.transcribe_id))
                   for i, (a, _) in enumerate(requests)]
        tokens = self._batch(windows)
        out = []
        for (audio, lang), toks, used in zip(requests, tokens, langs):
            words = self._words(toks, min(len(audio), RATE * 30) / RATE)
            # As faster-whisper: a stream's language is fixed by its first piece that had words.
            out.append((words, True, used if lang is not None or words else None))
        return out

    def _budget(self, samples: int) -> int:
        """Tokens a piece may need: speech runs ~3-4 tokens a second; plus timestamps."""
        return max(16, min(self.max_new_tokens, int(samples / RATE * 8) + 16))

    def _words(self, tokens: list[int], duration: float) -> list[Word]:
        """Timestamped segments → words, each segment's span shared by its words by length."""
        words: list[Word] = []
        start, text = 0.0, []
        for tok in tokens + [self.timestamp_begin + round(duration / SECONDS_PER_TIMESTAMP)]:
            if tok < self.timestamp_begin:
                if tok < self.eot:  # text, not a special token
                    text.append(tok)
                continue
            t = min(duration, (tok - self.timestamp_begin) * SECONDS_PER_TIMESTAMP)
            if text:
                words += self._spread(self.processor.tokenizer.decode(text), start, max(t, start))
                text = []
            start = t
        return words

    @staticmethod
    def _spread(text: str, t0: float, t1: float) -> list[Word]:
        parts = [w for w in text.split() if any(ch.isalnum() for ch in w)]
        total = sum(len(w) for w in parts)
        out, at = [], t0
        for w in parts:
            end = at + (t1 - t0) * len(w) / total
            out.append(Word(" " + w, round(at, 3), round(end, 3)))
            at = end
        return out
