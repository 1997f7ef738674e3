"""One record type per stage of the ingest and query flow.

All times are media seconds from the stream's start (monotonic across reconnects) unless the field
name says ``wall`` (Unix seconds on the ingesting machine).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Union

import numpy as np

SAMPLE_RATE = 16_000


@dataclass(frozen=True, slots=True)
class AudioChunk:
    samples: np.ndarray  # float32 mono at SAMPLE_RATE
    t0: float
    wall: float  # when the chunk was decoded

    @property
    def t1(self) -> float:
        return self.t0 + len(self.samples) / SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class VideoFrame:
    image: np.ndarray  # H x W x 3 uint8 RGB
    t: float
    wall: float
    # Set on the frame that revealed a shot cut: the media time the new shot began (the detector
    # confirms a cut a few frames after it, so this is slightly before ``t``).
    cut: float | None = None


@dataclass(frozen=True, slots=True)
class SubtitleCue:
    """A cue of a subtitle track in the container: text, or a bitmap that OCR reads."""

    t0: float
    t1: float
    text: str | None
    image: np.ndarray | None = field(compare=False)  # H x W x 3 uint8, light text on black (PGS, DVB)
    track: int
    language: str | None = None


MediaChunk = Union[AudioChunk, VideoFrame, SubtitleCue]


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    start: float
    end: float
    probability: float = 1.0


@dataclass(frozen=True, slots=True)
class ProvisionalText:
    """What a live stream has heard past its committed transcript: words a fast recogniser agreed
    on twice (LocalAgreement), searchable at once, dropped span by span as final words replace
    them. ``wall``: when this text was published; ``vector``: its embedding (None: not embedded)."""

    stream_id: str
    t0: float
    t1: float
    words: tuple[Word, ...]
    wall: float
    vector: object = None  # np.ndarray; object so this module needs no numpy at import

    @property
    def text(self) -> str:
        return "".join(w.text for w in self.words).strip()

    def after(self, t: float) -> "ProvisionalText | None":
        """The part not yet covered by final text ending at ``t`` (None when nothing is left)."""
        words = tuple(w for w in self.words if w.start >= t - 0.05)
        if not words:
            return None
        if len(words) == len(self.words):
            return self
        return ProvisionalText(self.stream_id, words[0].start, words[-1].end, words, self.wall, None)

    def to_dict(self) -> dict:
        return {"start": self.t0, "end": self.t1, "text": self.text, "wall": self.wall,
                "words": [{"text": w.text, "start": w.start, "end": w.end} for w in self.words]}


@dataclass(frozen=True, slots=True)
class Gap:
    """A stretch where a live source was unreachable."""

    media_t: float
    wall_start: float
    wall_end: float
    reason: str


@dataclass(frozen=True, slots=True)
class ShownText:
    """Text that was on screen (OCR) or in a subtitle track, for as long as it stayed the same.

    A title card or score bug read in many frames is ONE record whose span grows; ``t1`` of a
    record still on screen is the last time it was seen.
    """

    id: int  # per stream, in order of first sight
    kind: str  # "ocr" or "subtitle"
    text: str
    t0: float
    t1: float
    confidence: float = 1.0
    box: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1 as fractions of the frame


@dataclass(frozen=True, slots=True)
class SeenLabels:
    """What a sampled frame shows, as ImageNet classes (name, probability), best first."""

    t: float
    labels: tuple[tuple[str, float], ...]
    cut: float | None = None  # a shot began at this media time (just before ``t``)

    @property
    def text(self) -> str:
        return ", ".join(name for name, _ in self.labels)


@dataclass(frozen=True, slots=True)
class LabelSpan:
    """The image classes seen during one micro segment: searchable text for "when is a plane shown"."""

    id: int
    t0: float
    t1: float
    labels: tuple[tuple[str, float], ...]  # best probability of each class within the span

    @property
    def text(self) -> str:
        return "shows " + ", ".join(name for name, _ in self.labels)


@dataclass(frozen=True, slots=True)
class Parent:
    """A meso (≈30 s) or macro (≈180 s) span of a stream, grown online from its children."""

    level: str  # "meso" or "macro"
    id: int  # per stream and level, in time order
    t0: float
    t1: float
    children: tuple[int, ...]  # micro segment seqs (meso) or meso ids (macro)
    summary: str  # extractive: the densest lines under a word budget, in time order
    density: float  # mean density of the children
    closed: bool = True  # False while it still grows (searchable all the same)


@dataclass(frozen=True, slots=True)
class RetentionCut:
    """Where retention cuts a stream: what came before goes, whole macros at a time."""

    seq: int  # the first micro segment kept
    t: float  # its start (media time): shown text, labels and frames that ended before it go
    meso_id: int  # the first meso kept
    macro_id: int  # the first macro kept


@dataclass(frozen=True, slots=True)
class Promotion:
    """A repeat that stands for itself once retention dropped the segment it repeated."""

    seq: int
    t0: float
    others: tuple[tuple[int, float, float], ...]  # later repeats (seq, t0, t1), now merged into seq
    vector: object = None  # the dropped representative's vector: a stand-in when none is stored


@dataclass(frozen=True, slots=True)
class MicroSegment:
    stream_id: str
    seq: int
    t0: float
    t1: float
    words: tuple[Word, ...]
    wall: float = 0.0  # when it became searchable
    # From the stream model (None/empty when it is off): surprise is z-scored per stream.
    surprise: float | None = None
    surprise_raw: float | None = None
    novelty: float | None = None  # z-scored feature change since the previous segment
    boundary: bool = False  # a proposed topic/shot boundary starts here
    coherence: float | None = None  # agreement of what is said with what is seen
    summary: tuple[float, ...] = ()  # compact summary of the stream state after this segment
    # What was shown during the span, each item with its own times (fused by media time).
    shown: tuple[ShownText, ...] = ()
    seen: tuple[SeenLabels, ...] = ()
    density: float | None = None  # streaming.memory.density: what summaries keep first
    merged_into: int | None = None  # seq of the earlier segment this one repeats (dedup)
    # Who spoke (S1, S2, … in order of first appearance; streaming/ingest/speakers.py); None when
    # the speaker model is off or the segment holds too little speech to tell.
    speaker: str | None = None

    @property
    def text(self) -> str:
        return "".join(w.text for w in self.words).strip()


MODALITIES = ("said", "shown", "seen")


@dataclass(frozen=True, slots=True)
class Evidence:
    stream: str
    start: float
    end: float
    text: str
    score: float
    modality: str = "said"  # said (speech), shown (on-screen text, subtitles) or seen (image labels)
    kind: str = "speech"  # speech, ocr, subtitle, label, caption, frame, meso, macro
    also: tuple[tuple[float, float], ...] = ()  # other spans with the same content (merged repeats)
    # Heard but not yet final: a small recogniser's words, replaced by the committed transcript
    # within seconds (streaming/ingest/provisional.py). Never both for the same span.
    provisional: bool = False
    speaker: str | None = None  # who said it (S1, S2, …), when the stream has speaker labels

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["speaker"] is None:  # absent, not null, where no speaker model runs
            del d["speaker"]
        return d


@dataclass(frozen=True, slots=True)
class Answer:
    answer: str
    evidence: tuple[Evidence, ...] = ()
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"answer": self.answer, "evidence": [e.to_dict() for e in self.evidence],
                "warnings": list(self.warnings)}


@dataclass(slots=True)
class StreamStatus:
    """What ``GET /v1/streams/{id}`` shows. Mutable: the pipeline updates it as it goes."""

    id: str
    name: str
    source: str
    live: bool
    state: str = "starting"  # starting, connecting, waiting, ingesting, reconnecting, finished, stopped, failed
    media_seconds: float = 0.0  # media time decoded so far
    committed_seconds: float = 0.0  # media time final and searchable
    lag_s: float = 0.0  # decoded but not yet searchable
    rtf: float = 0.0  # processing seconds per media second
    backlog_s: float = 0.0  # decoded media waiting for the worker (bounded by queue_seconds)
    degraded: int = 0  # backpressure level: 0 full quality (streaming.ingest.governor)
    degradation: dict | None = None  # the current level's knobs and why it was chosen
    dropped_frames: int = 0  # sampled frames a live stream shed because its queue was full
    segments: int = 0
    words: int = 0
    reconnects: int = 0
    last_error: str | None = None
    notes: list[str] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    started_wall: float = 0.0
    updated_wall: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


# -- what a question's search hands to the answer side ----------------------------------------------

# Where a piece of evidence comes from, by kind: what was said, shown on screen or seen.
KIND_MODALITY = {"speech": "said", "ocr": "shown", "subtitle": "shown", "label": "seen",
                 "caption": "seen", "frame": "seen"}
LEVELS = ("micro", "meso", "macro", "direct")  # where a candidate was found



@dataclass(frozen=True, slots=True)
class Candidate:
    evidence: Evidence  # score: the dense cosine to the question
    density: float | None = None  # the segment's MANTA density (None: no density, e.g. shown text)
    level: str = "micro"  # where it was found: micro, meso (coarse-to-fine), macro, direct
    parent: str = ""  # the meso summary the segment belongs to ("" if none)
    vector: np.ndarray | None = field(default=None, compare=False)  # unit-norm embedding
    words: tuple[Word, ...] = ()  # word times, to narrow "when" to the words that matched

    def __post_init__(self):
        if not isinstance(self.evidence, Evidence):
            raise ValueError("candidate evidence must be a streaming.records.Evidence")
        if self.density is not None and not math.isfinite(self.density):
            raise ValueError(f"candidate density must be finite or None, not {self.density}")
        if self.level not in LEVELS:
            raise ValueError(f"candidate level must be one of {', '.join(LEVELS)}, not {self.level!r}")
        if self.vector is not None and np.asarray(self.vector).ndim != 1:
            raise ValueError("candidate vector must be one-dimensional")


# -- the stream model's input -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SegmentFeatures:
    """The stream model's input for one micro segment (unit vectors, or None when absent)."""

    said: np.ndarray | None  # text embedding of the words
    shown: np.ndarray | None  # text embedding of on-screen text (OCR, subtitles)
    seen: np.ndarray | None  # mean visual embedding of the frames
    stats: np.ndarray  # float32 (len(STATS),), roughly within [-3, 3]

    def blocks(self) -> dict[str, np.ndarray | None]:
        return {"said": self.said, "shown": self.shown, "seen": self.seen, "stats": self.stats}


# -- monitoring: standing questions and the alerts they raise ---------------------------------------

WATCH_MODALITIES = ("any", "said", "shown", "seen")


@dataclass(frozen=True, slots=True)
class Watch:
    """A standing question, checked against every segment and shown item as it is committed."""

    id: str  # "w-" and 8 hex digits
    text: str
    streams: tuple[str, ...] = ()  # stream ids, names or glob patterns ("cam-*"); empty: every stream
    modality: str = "any"  # any, said, shown or seen
    threshold: float = 0.6  # score an item needs (streaming.watch.matcher)
    cooldown_s: float = 60.0  # media seconds of quiet on a stream after one of its alerts
    webhook_url: str | None = None
    created_wall: float = 0.0
    verify: bool = False  # the answer model confirms each alert first (streaming/watch/verify.py)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Alert:
    """A watch matched: where, what, how well, and when it was sent and noticed."""

    watch: str  # the watch's id
    watch_text: str
    stream: str
    start: float  # media seconds of the matching segment or item
    end: float
    modality: str  # said, shown or seen
    kind: str  # speech, ocr, subtitle, label
    text: str  # the evidence's whole text
    quote: str  # the part of it that matched (the watch's words, or the text when none match)
    score: float
    fired_wall: float  # when the stream committed it and the alert was raised
    sent_wall: float | None = None  # live: when the sender sent its end (arrival clock); None: a file
    verified: bool | None = None  # the answer model said yes; None: not asked, or no clear reply
    id: int = 0  # given by the alert log, increasing; 0 until recorded

    def to_dict(self) -> dict:
        return asdict(self)
