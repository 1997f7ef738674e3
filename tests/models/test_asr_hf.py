"""asr_backend: transformers — a local Hugging Face Whisper folder through torch, batched across
streams. The model here is a tiny randomly initialised WhisperForConditionalGeneration saved in a temp
folder with Whisper's real tokenizer (no weights can be downloaded): its words are noise, so these
tests check the loading path, the timing of words, each stream's language, and that a batch gives
every stream exactly what it gets alone — not what is said."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from manta_models.packaged import ModelError
from streaming.settings import Settings
from tests.support.helpers import media

RATE = 16_000


@pytest.fixture(scope="module")
def hf_whisper(tmp_path_factory):
    import torch
    from transformers import (WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration,
                              WhisperProcessor, WhisperTokenizerFast)

    from manta_models.perception.asr import resolve_whisper

    folder = tmp_path_factory.mktemp("hf-whisper")
    tokenizer = WhisperTokenizerFast(tokenizer_file=str(resolve_whisper("base", Settings().cache_dir) / "tokenizer.json"))
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer).save_pretrained(folder)
    torch.manual_seed(0)
    config = WhisperConfig(vocab_size=51865, num_mel_bins=80, d_model=64, encoder_layers=1, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=128,
                           decoder_ffn_dim=128, max_source_positions=1500, max_target_positions=448,
                           decoder_start_token_id=50258, eos_token_id=50257, pad_token_id=50257,
                           bos_token_id=50257)
    WhisperForConditionalGeneration(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def speech():
    from streaming.source.audio_chunks import decode_audio

    return decode_audio(media("jfk_inaugural_1961.flac"))


def test_a_hf_whisper_folder_gives_words_timed_within_the_piece(hf_whisper, speech):
    from manta_models.perception.asr_hf import HFWhisperASR

    asr = HFWhisperASR(hf_whisper, device="cpu")
    assert asr.configured_language is None and "en" in asr.languages
    piece = speech[:RATE * 8]
    assert asr.speech_spans(piece)  # the same Silero VAD as faster-whisper
    words, complete, language = asr.transcribe_as(piece, None, True, None)
    assert complete and language in asr.languages
    assert words, "no words at all"
    assert all(0.0 <= w.start <= w.end <= 8.0 + 1e-6 for w in words), words
    assert [w.start for w in words] == sorted(w.start for w in words)
    # The language found once is kept for the stream's next pieces.
    _, _, again = asr.transcribe_as(speech[RATE * 8:], None, True, language)
    assert again == language


def test_a_batch_gives_each_stream_what_it_gets_alone(hf_whisper, speech):
    from manta_models.perception.asr_hf import HFWhisperASR

    asr = HFWhisperASR(hf_whisper, device="cpu")
    requests = [(speech[:RATE * 3], "en"), (speech[RATE * 2:RATE * 9], None), (speech[RATE * 5:], "de")]
    together = asr.transcribe_batch(requests)
    alone = [asr.transcribe_batch([r])[0] for r in requests]
    assert together == alone
    assert together[0][2] == "en" and together[2][2] == "de"


def test_the_setting_picks_the_backend_and_the_speech_service_batches_streams(hf_whisper, speech):
    from manta_models.serving.shared import SharedModels

    settings = Settings(asr_backend="transformers", asr_model=str(hf_whisper), asr_device="cpu",
                        visual_model="off", ocr="off", stream_model="off", service_max_wait_s=0.5)
    shared = SharedModels(settings)
    try:
        streams = [shared.for_stream(f"s{i}", live=True) for i in range(3)]
        results = [None] * 3

        def run(i):
            results[i] = streams[i].asr.transcribe_window(speech[RATE * i:RATE * (i + 4)])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        stats = {s.name: s for s in shared.stats()}
    finally:
        shared.close()
    assert all(r is not None and r[1] for r in results)
    assert stats["speech"].items == 3 and stats["speech"].max_batch_seen >= 2, stats["speech"]
    assert all(s.asr.language is not None for s in streams)  # each found its own


@pytest.mark.parametrize("folder, message", [("/nonexistent/whisper", "does not exist"),
                                             (".", "no config.json")])
def test_a_wrong_folder_says_what_is_wrong(folder, message):
    from manta_models.perception.asr_hf import HFWhisperASR

    with pytest.raises(ModelError, match=message):
        HFWhisperASR(folder, device="cpu")


def test_a_piece_longer_than_a_window_is_cut_to_one(hf_whisper):
    from manta_models.perception.asr_hf import HFWhisperASR

    asr = HFWhisperASR(hf_whisper, device="cpu")
    feats = asr.features([np.zeros(RATE * 40, np.float32)])
    assert feats.shape == (1, 80, 3000)  # one 30 s window, whatever the piece
