"""Merging evidence from many streams and phrasing an extractive answer with its time span."""

from __future__ import annotations

from collections.abc import Iterable

from streaming.records import Answer, Evidence

WEAK_SCORE = 0.25  # below this cosine, MiniLM matches are mostly topical noise


def merge_evidence(per_stream: Iterable[Iterable[Evidence]], k: int, by_time: bool = False) -> list[Evidence]:
    """Best ``k`` across streams, best first (or in time order); ties broken by stream then time."""
    merged = [e for stream in per_stream for e in stream]
    merged.sort(key=(lambda e: (e.start, e.stream)) if by_time else (lambda e: (-e.score, e.stream, e.start)))
    return merged[:k]


def clock(seconds: float) -> str:
    """Media seconds as H:MM:SS.s or M:SS.s."""
    seconds = max(0.0, seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h)}:{int(m):02d}:{s:04.1f}" if h >= 1 else f"{int(m)}:{s:04.1f}"


def cite(e: Evidence) -> str:
    return f"[{e.stream} {clock(e.start)}–{clock(e.end)}]"


# How an answer names where its quote came from: a user must never mistake a caption for speech.
SOURCE_NAMES = {"speech": "Said", "ocr": "On screen", "subtitle": "Subtitle", "label": "Seen",
                "chunk": "Said and shown", "meso": "Summary", "macro": "Summary",
                "language": "Language", "speakers": "Speakers", "speaker": "Speaker", "names": "Named"}  # the eval baseline's 30 s chunks mix both


AGAIN_LISTED = 5  # repeats named in an answer; the evidence carries all of them


def quote(e: Evidence) -> str:
    # Provisional: heard seconds ago by the fast recogniser, not the final transcript yet.
    name = "Just said (provisional)" if e.provisional else SOURCE_NAMES.get(e.kind, e.kind)
    text = f"{name}: “{e.text}” {cite(e)}"
    if e.also:  # a repeat (a sign-off, a title card coming back): say when else, not just once
        times = [clock(t0) for t0, _ in sorted(e.also)]
        more = f" and {len(times) - AGAIN_LISTED} more" if len(times) > AGAIN_LISTED else ""
        text += f", again at {', '.join(times[:AGAIN_LISTED])}{more}"
    return text


def extractive_answer(question: str, evidence: list[Evidence],
                      warnings: Iterable[str] = (), listing: bool = False) -> Answer:
    if not evidence:
        return Answer("Nothing ingested so far matches this question.", (), tuple(warnings))
    if listing:  # the question named no content: say everything that was shown, in time order
        return Answer("; ".join(quote(e) for e in evidence), tuple(evidence), tuple(warnings))
    best = evidence[0]
    prefix = "Closest match (weak): " if best.score < WEAK_SCORE else ""
    return Answer(f"{prefix}{quote(best)}", tuple(evidence), tuple(warnings))
