"""Who speaks when: each micro segment's voice, clustered online into stable speaker labels.

A speaker model (manta_models/perception/speaker.py) turns the speech of a segment into a unit
vector; ``SpeakerClusters`` gives it the label of the nearest speaker heard so far when the cosine
to that speaker's centroid clears ``THRESHOLD``, and a new label (S1, S2, … in order of first
appearance) otherwise. Centroids are running sums, so a speaker's picture sharpens as they talk.
A label, once given and committed, never changes: an answer cited yesterday cites the same
speaker today. No torch here: the vectors come through a callable the pipeline hands in.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from streaming.records import SAMPLE_RATE, AudioChunk, MicroSegment

log = logging.getLogger("manta.speakers")

# Calibrated on the shared media, one 3 s clip (a micro segment) at a time, resemblyzer's GE2E
# encoder (manta_models/perception/speaker.py), 59 clips of five voices:
#   same speaker, clip vs clip: JFK 0.74-0.85 (mean 0.81), the LibriVox reader 0.72-0.91 (0.82),
#     the manifesto narrator 0.56-0.92 (0.80; 10th percentile 0.70), the Asterisk voice 0.80-0.94;
#   different speakers, clip vs clip: 0.34-0.66 (means 0.45-0.56; the highest, reader vs narrator);
#   a clip vs its own speaker's centroid (the others' mean): at least 0.79; vs another's: at most 0.66.
# Online clustering of those clips in order: thresholds 0.65-0.75 give every one-voice file one
# speaker and JFK+reader+JFK and narrator+Asterisk+reader two and three with the changes exactly at
# the joins; 0.60 merges the reader into the narrator, 0.80 splits the narrator into three. 0.70 is
# the middle of the range that worked: above every different-speaker centroid score (0.66) and
# below nearly every same-speaker one, a new voice must be clearly unlike every voice so far.
# 1.5 s clips still separate (reader vs reader at least 0.66, JFK vs reader at most 0.53); shorter
# speech is left unlabelled rather than guessed.
THRESHOLD = 0.70
MIN_SPEECH_S = 1.5  # shorter speech says too little about a voice: such a segment stays unlabelled
_LABEL = re.compile(r"^S([1-9][0-9]{0,5})$")


def _unit(v: np.ndarray) -> np.ndarray | None:
    v = np.asarray(v, dtype=np.float32).ravel()
    n = float(np.linalg.norm(v))
    return v / n if n > 0 and np.isfinite(n) else None


class SpeakerClusters:
    """Online clustering of voice vectors into labels S1, S2, …"""

    def __init__(self, threshold: float = THRESHOLD):
        if not 0.0 < threshold < 1.0:
            raise ValueError("threshold must be a cosine between 0 and 1")
        self.threshold = threshold
        self._sums: dict[str, np.ndarray] = {}
        self._counts: dict[str, int] = {}
        self.next = 1  # the number the next new speaker gets (kept across retention and restarts)

    def __len__(self) -> int:
        return len(self._sums)

    @property
    def labels(self) -> list[str]:
        return list(self._sums)

    def nearest(self, vector: np.ndarray) -> tuple[str | None, float]:
        v = _unit(vector)
        if v is None or not self._sums:
            return None, -1.0
        scores = {label: float(np.dot(_unit(s), v)) for label, s in self._sums.items()}
        best = max(scores, key=scores.get)
        return best, scores[best]

    def assign(self, vector: np.ndarray) -> str | None:
        """The label of ``vector``'s speaker (a new one when no centroid is near enough); None for
        a vector that is not a voice (zero or not finite)."""
        v = _unit(vector)
        if v is None:
            return None
        label, score = self.nearest(v)
        if label is None or score < self.threshold:
            label = f"S{self.next}"
            self.next += 1
        self.add(label, v)
        return label

    def add(self, label: str, vector: np.ndarray) -> None:
        """Count ``vector`` towards ``label``'s centroid (a restart replays its stored segments)."""
        m = _LABEL.match(label or "")
        v = _unit(vector)
        if m is None or v is None:
            raise ValueError(f"not a speaker label and voice: {label!r}")
        self._sums[label] = self._sums.get(label, np.zeros_like(v)) + v
        self._counts[label] = self._counts.get(label, 0) + 1
        self.next = max(self.next, int(m.group(1)) + 1)


def speech_span(seg: MicroSegment, min_speech_s: float = MIN_SPEECH_S) -> tuple[float, float] | None:
    """From the segment's first word to its last (silence around them says nothing of the voice);
    None when it holds less than ``min_speech_s`` of words."""
    if not seg.words:
        return None
    a = max(seg.t0, min(w.start for w in seg.words))
    b = min(seg.t1, max(w.end for w in seg.words))
    return (a, b) if b - a >= min_speech_s else None


class AudioRing:
    """The recent audio, kept until the segments covering it are committed (the transcriber drops
    its own copy as soon as words are final, which may be before the segment closes)."""

    def __init__(self, margin_s: float = 1.0):
        self.margin_s = margin_s  # a next segment's first word may start a little before its t0
        self._chunks: deque[AudioChunk] = deque()

    def add(self, chunk: AudioChunk) -> None:
        self._chunks.append(chunk)

    def clip(self, t0: float, t1: float) -> np.ndarray:
        parts = []
        for c in self._chunks:
            if c.t1 <= t0 or c.t0 >= t1:
                continue
            i = max(0, int(round((t0 - c.t0) * SAMPLE_RATE)))
            j = min(len(c.samples), int(round((t1 - c.t0) * SAMPLE_RATE)))
            parts.append(c.samples[i:j])
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)

    def trim(self, before: float) -> None:
        """Drop audio that only committed segments covered: what is kept is bounded by the
        transcriber's own buffer, however long the stream runs."""
        while self._chunks and self._chunks[0].t1 < before - self.margin_s:
            self._chunks.popleft()


class SpeakerStage:
    """One stream's speakers: cuts each committed segment's speech from the audio it kept, asks
    ``embed`` (clips → unit vectors, every clip of a commit in one call) for their voices and
    labels the segments. ``voices`` of the last ``label`` call are what the store keeps."""

    def __init__(self, embed: Callable[[list[np.ndarray]], np.ndarray], threshold: float = THRESHOLD,
                 min_speech_s: float = MIN_SPEECH_S):
        self.embed = embed
        self.clusters = SpeakerClusters(threshold)
        self.min_speech_s = min_speech_s
        self.audio = AudioRing()

    def on_audio(self, chunk: AudioChunk) -> None:
        self.audio.add(chunk)

    def label(self, segments: Sequence[MicroSegment]) -> tuple[list[MicroSegment], list[np.ndarray | None]]:
        """The segments with their ``speaker`` set (None where there is too little speech), and
        each one's voice vector (None likewise)."""
        spans = [speech_span(s, self.min_speech_s) for s in segments]
        wanted = [i for i, span in enumerate(spans) if span is not None]
        voices: list[np.ndarray | None] = [None] * len(segments)
        out = list(segments)
        vectors = None
        if wanted:
            try:
                vectors = np.asarray(self.embed([self.audio.clip(*spans[i]) for i in wanted]), dtype=np.float32)
            except Exception:  # noqa: BLE001 - labels are extra: the transcript must still be indexed
                log.exception("speaker model failed; %d segments stay unlabelled", len(wanted))
        if vectors is not None:
            for row, i in enumerate(wanted):
                label = self.clusters.assign(vectors[row])
                if label is not None:
                    voices[i] = vectors[row]
                    out[i] = replace(segments[i], speaker=label)
        if segments:
            self.audio.trim(max(s.t1 for s in segments))
        return out, voices

    def restore(self, segments: Sequence[MicroSegment], voices: dict[int, np.ndarray],
                next_label: int = 1) -> None:
        """Rebuild the centroids from a restarted stream's stored segments and voices."""
        for s in segments:
            v = voices.get(s.seq)
            if s.speaker and v is not None:
                self.clusters.add(s.speaker, v)
        self.clusters.next = max(self.clusters.next, int(next_label))

    def info(self) -> dict:
        """What the checkpoint keeps: the next new speaker's number (labels are never reused, even
        after retention dropped every segment of a speaker)."""
        return {"speakers_next": self.clusters.next}
