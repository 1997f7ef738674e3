"""A live piece in a fitted Whisper window: cost and word error rate, side by side in one run.

Live and real-time-paced streams cut their audio into short pieces (<= 8 s, at pauses) for
freshness, and each Whisper call used to encode a whole 30 s window for them. With
``asr_live_fit_window`` (the default) a piece is encoded in one window that is only as long as it
needs (the piece plus 1 s, at least 10 s; ``WhisperASR.transcribe_as(fit=True)``), without a prompt
(in a fitted window Whisper echoes it); provisional passes do the same. Both ways run
here on the same audio with the same model: the manifesto through ``IncrementalTranscriber`` with
the live profile (as fast as it goes, no pacing), and the five LibriVox clips whole. Word error
rate against the LibriVox human transcripts, and against the manifesto's captions (machine
captions: there is no human transcript for it).
"""

from __future__ import annotations

import time


from streaming.ingest.transcript import IncrementalTranscriber
from streaming.records import SAMPLE_RATE, AudioChunk
from streaming.source.audio_chunks import decode_audio

from .common import MEDIA, emit, parse_args, section, table
from .freshness import CLIP_S, _norm as norm, caption_words, wer

KEY = "live-window"
CLIP = MEDIA / "manifesto_audiobook_titlecard.mp4"
LIBRIVOX = ("0870", "0880", "0890", "0920", "0930")


def _norm(words: list[str]) -> list[str]:
    return [x for x in map(norm, words) if x]


def librivox_truth() -> dict[str, list[str]]:
    truth = {}
    for line in (MEDIA / "librivox_sense_and_sensibility.transcription").read_text().splitlines():
        text, _, clip = line.rpartition("(")
        truth[clip.strip(") ").rsplit("-", 1)[1]] = _norm(text.replace("<s>", "").replace("</s>", "").split())
    return truth


def measure(model: str) -> list[dict]:
    from manta_models.perception.asr import WhisperASR

    asr = WhisperASR(model)
    audio = decode_audio(CLIP)
    truth = librivox_truth()
    clips = {c: decode_audio(MEDIA / f"librivox_sense_and_sensibility_{c}.wav") for c in LIBRIVOX}
    asr.transcribe_window(clips["0870"])  # warm-up, outside the clock
    rows = []
    for fit in (False, True):  # the way before (30 s windows, second pass allowed), then fitted
        tr = IncrementalTranscriber(asr, max_buffer_s=8.0, min_piece_s=1.5, check_every_s=0.5,
                                    one_window=fit, fit=fit)
        words, t = [], time.perf_counter()
        step = SAMPLE_RATE // 2
        for i in range(0, len(audio), step):
            words += tr.push(AudioChunk(audio[i:i + step], i / SAMPLE_RATE, 0.0))
        words += tr.flush()
        manifesto_s = time.perf_counter() - t
        errors = refs = 0
        t = time.perf_counter()
        for clip, samples in clips.items():
            got, _ = asr.transcribe_window(samples, one_window=fit, fit=fit)
            errors += wer(truth[clip], _norm([w.text for w in got])) * len(truth[clip])
            refs += len(truth[clip])
        librivox_s = time.perf_counter() - t
        rows.append(dict(model=model, fit=fit, manifesto_s=manifesto_s, librivox_s=librivox_s,
                         captions_wer=wer(caption_words(), _norm([w.text for w in words if w.end <= CLIP_S])),
                         librivox_wer=errors / refs, refs=refs, words=len(words),
                         transcribed=tr.transcribed_seconds))
    return rows


def main() -> None:
    args = parse_args(__doc__, [("--models", dict(default="base,tiny.en", help="comma-separated Whisper sizes"))])
    rows = [r for m in args.models.split(",") for r in measure(m)]
    out = []
    for r in rows:
        before = next(x for x in rows if x["model"] == r["model"] and not x["fit"])
        out.append([f"`{r['model']}`", "fitted, no prompt (default)" if r["fit"] else "30 s windows (before)",
                    f"{r['manifesto_s']:.1f} s", f"{before['manifesto_s'] / r['manifesto_s']:.2f}×",
                    f"{r['transcribed']:.0f} s", f"{100 * r['captions_wer']:.1f} %",
                    f"{100 * r['librivox_wer']:.1f} % of {r['refs']}", f"{r['librivox_s']:.2f} s"])
    body = [
        f"Same process, same model object, both ways in one run. Manifesto: `{CLIP.name}` ({CLIP_S:g} s) "
        "pushed in 0.5 s chunks through `IncrementalTranscriber` with the live profile (max buffer 8 s, "
        "min piece 1.5 s, checked every 0.5 s), as fast as it goes. LibriVox: the five clips "
        f"({', '.join(LIBRIVOX)}), each one call. WER = (substitutions + deletions + insertions) / "
        "reference words, after lower-casing and dropping punctuation.",
        "",
        *table(["Whisper", "live pieces", "manifesto time", "speed-up", "audio transcribed",
                "WER vs captions", "WER vs LibriVox human transcripts", "LibriVox time"], out),
    ]
    emit(KEY, section("Live pieces in a fitted Whisper window (bench/live_window.py)", body), args.write)


if __name__ == "__main__":
    main()
