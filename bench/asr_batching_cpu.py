"""Does batching several streams' Whisper windows into one CTranslate2 call pay on a CPU?

faster-whisper's CTranslate2 model takes a batch of log-mel windows (``generate`` over
[batch, mels, 3000]). Here B pieces of real speech (B = 1, 2, 4) are transcribed greedily
(``beam_size=1``, the service's setting) either one call each, one after another (what the speech
service does on a CPU: one recognition at a time, every thread to it), or in one batched call. Same
threads, same model, same pieces; best of 3 repeats. The answer decides whether the CPU speech
service batches (the GPU path, transformers, always does: docs/BENCHMARKS.md "Shared model services on
one GPU").
"""

from __future__ import annotations

import time

import numpy as np

from .common import MEDIA, emit, parse_args, section, table

KEY = "asr-batching-cpu"
CLIP = MEDIA / "manifesto_audiobook_titlecard.mp4"
PIECE_S = 6.0  # a live piece: asr_live_max_buffer_s is 8 s, pieces close at pauses before that


def main() -> None:
    args = parse_args(__doc__, [("--model", dict(default="base")), ("--threads", dict(type=int, default=2))])
    import ctranslate2

    from manta_models.perception.asr import WhisperASR
    from streaming.source.audio_chunks import decode_audio

    asr = WhisperASR(args.model, threads=args.threads)
    model, fe, tok = asr.model.model, asr.model.feature_extractor, asr.model.hf_tokenizer
    audio = decode_audio(CLIP)
    pieces = [audio[int(16000 * (10 + i * PIECE_S)):int(16000 * (10 + (i + 1) * PIECE_S))] for i in range(4)]
    prompt = [tok.token_to_id(t) for t in ("<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>")]
    feats = [fe(np.pad(p, (0, 16000 * 30 - len(p))))[:, :3000] for p in pieces]

    def run(batch: list[np.ndarray]) -> list[list[int]]:
        x = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.stack(batch), dtype=np.float32))
        return [r.sequences_ids[0] for r in model.generate(x, [prompt] * len(batch), beam_size=1, max_length=128)]

    rows = []
    run(feats[:1])  # warm-up
    for b in (1, 2, 4):
        one_by_one = batched = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            alone = [run([f])[0] for f in feats[:b]]
            one_by_one = min(one_by_one, time.perf_counter() - t)
            t = time.perf_counter()
            together = run(feats[:b])
            batched = min(batched, time.perf_counter() - t)
        same = sum(a == g for a, g in zip(alone, together))
        rows.append([b, f"{one_by_one:.2f} s", f"{batched:.2f} s", f"**{one_by_one / batched:.2f}×**", f"{same}/{b}"])
        print(rows[-1], flush=True)
    body = [f"Whisper `{args.model}` (CTranslate2 int8, {args.threads} threads), {PIECE_S:g} s pieces of "
            f"`{CLIP.name}`, greedy, one 30 s window each (padded, as faster-whisper does).", "",
            *table(["pieces", "one call each", "one batched call", "speed-up", "same tokens"], rows)]
    emit(KEY, section("Batching Whisper across streams on a CPU (bench/asr_batching_cpu.py)", body), args.write)


if __name__ == "__main__":
    main()
