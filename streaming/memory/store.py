"""Durable per-stream storage: committed micro segments and the checkpoint that goes with them.

One SQLite file per stream (one writer each, so streams never wait on each other's locks). Every
commit writes the new segments, their vectors and model inputs, and the stream's checkpoint (the
Mamba state, the surprise tracker, where to resume the source) in ONE transaction: after a crash
the segments on disk and the state that produced them always agree, so a restarted stream neither
loses nor repeats a committed segment.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from streaming.memory.data_dir import PRIVATE_DIR, PRIVATE_FILE, store_files
from streaming.records import SegmentFeatures
from streaming.records import LabelSpan, MicroSegment, RetentionCut, SeenLabels, ShownText, Word

SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    seq INTEGER PRIMARY KEY, t0 REAL NOT NULL, t1 REAL NOT NULL, wall REAL NOT NULL,
    words TEXT NOT NULL, surprise REAL, surprise_raw REAL, novelty REAL, boundary INTEGER NOT NULL,
    coherence REAL, summary BLOB, vector BLOB, features BLOB, density REAL, merged_into INTEGER,
    speaker TEXT, voice BLOB
);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, text TEXT NOT NULL, t0 REAL NOT NULL, t1 REAL NOT NULL,
    confidence REAL, box TEXT, labels TEXT, vector BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS frames (
    t REAL NOT NULL, labels TEXT NOT NULL, cut REAL, vector BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 0), next_seq INTEGER NOT NULL, resume_t REAL NOT NULL,
    media_seconds REAL NOT NULL, wall REAL NOT NULL, model BLOB, tracker TEXT NOT NULL,
    info TEXT NOT NULL
);
"""


@dataclass
class Checkpoint:
    next_seq: int  # the next segment's number
    resume_t: float  # media time before which everything is committed
    media_seconds: float
    wall: float
    model: dict[str, np.ndarray] = field(default_factory=dict)  # the stream model's state
    tracker: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)  # source, name, state: what a restart needs to know


@dataclass
class Restored:
    segments: list[MicroSegment]
    vectors: list[np.ndarray | None]
    features: list[SegmentFeatures | None]
    checkpoint: Checkpoint | None
    items: list[tuple[ShownText | LabelSpan, np.ndarray]] = field(default_factory=list)
    frames: list[tuple[SeenLabels, np.ndarray]] = field(default_factory=list)
    voices: dict[int, np.ndarray] = field(default_factory=dict)  # seq → voice vector (labelled segments)


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _unnpz(blob: bytes | None) -> dict[str, np.ndarray]:
    if not blob:
        return {}
    with np.load(io.BytesIO(blob)) as z:
        return {k: z[k] for k in z.files}


def _vec(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(blob, dtype=np.float32).copy()


def _features_blob(f: SegmentFeatures | None) -> bytes | None:
    if f is None:
        return None
    return _npz({k: v for k, v in f.blocks().items() if v is not None})


def _features(blob: bytes | None) -> SegmentFeatures | None:
    d = _unnpz(blob)
    if not d:
        return None
    return SegmentFeatures(said=d.get("said"), shown=d.get("shown"), seen=d.get("seen"), stats=d["stats"])


def _item_row(it: ShownText | LabelSpan, vector: np.ndarray) -> tuple:
    blob = np.asarray(vector, dtype=np.float32).tobytes()
    if isinstance(it, LabelSpan):
        return (it.id, "label", it.text, it.t0, it.t1, None, None, json.dumps(it.labels), blob)
    return (it.id, it.kind, it.text, it.t0, it.t1, it.confidence,
            json.dumps(it.box) if it.box else None, None, blob)


def _item(row: tuple) -> tuple[ShownText | LabelSpan, np.ndarray]:
    id_, kind, text, t0, t1, confidence, box, labels, blob = row
    if kind == "label":
        item = LabelSpan(id_, t0, t1, tuple(tuple(x) for x in json.loads(labels)))
    else:
        item = ShownText(id_, kind, text, t0, t1, confidence, tuple(json.loads(box)) if box else None)
    return item, _vec(blob)


SEGMENT_COLUMNS = ("seq, t0, t1, wall, words, surprise, surprise_raw, novelty, boundary, coherence, summary, "
                   "vector, features, density, merged_into, speaker, voice")
_N_COLUMNS = SEGMENT_COLUMNS.count(",") + 1


class StreamStore:
    def __init__(self, path: Path, new: bool = False):
        """``new``: a new stream's store, which must not exist yet: FileExistsError when any of its
        files is there (a stream's data is deleted only by removing the stream, never by reusing its
        name). The file is created 0600 by this process, so the check and the creation are one step
        and no other process can slip its own file in between."""
        self.path = Path(path)
        self.path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        if new:
            if store_files(self.path):
                raise FileExistsError(f"a stream store already exists at {self.path}")
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
        # Before SQLite opens it: umask-independent, and tightens a file an older version left
        # readable. SQLite makes the -wal and -shm with the main file's mode, so they follow.
        for f in store_files(self.path):
            try:
                os.chmod(f, PRIVATE_FILE)
            except PermissionError:  # another user's file: its owner chose who may read it
                if new:
                    raise
        self._lock = threading.Lock()
        # check_same_thread off: the ingest thread writes, API calls read; the lock serialises them.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        # Pages retention frees go back to the file system (set before the first table is made;
        # an older file keeps reusing its free pages instead, so it stops growing all the same).
        self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL+NORMAL survives a process crash
        # The write-ahead log counts against a disk budget too: fold it back every ~1 MB, and cut it
        # back to 1 MB after (SQLite's default lets it sit at 4 MB and more).
        self._db.execute("PRAGMA wal_autocheckpoint=256")
        self._db.execute("PRAGMA journal_size_limit=1048576")
        self._db.executescript(SCHEMA)
        # Files written before density, dedup and speakers existed get the columns (NULL for old
        # rows: a segment with no speaker label, as when the speaker model is off).
        have = {row[1] for row in self._db.execute("PRAGMA table_info(segments)")}
        for column, kind in (("density", "REAL"), ("merged_into", "INTEGER"), ("speaker", "TEXT"), ("voice", "BLOB")):
            if column not in have:
                self._db.execute(f"ALTER TABLE segments ADD COLUMN {column} {kind}")

    def commit(self, segments: list[MicroSegment], vectors: list[np.ndarray | None],
               features: list[SegmentFeatures | None], checkpoint: Checkpoint,
               items: list[tuple[ShownText | LabelSpan, np.ndarray]] = (),
               frames: list[tuple[SeenLabels, np.ndarray]] = (),
               voices: list[np.ndarray | None] | None = None) -> None:
        """``voices``: each segment's voice vector (streaming/ingest/speakers.py), or None."""
        voices = voices if voices is not None else [None] * len(segments)
        rows = [(s.seq, s.t0, s.t1, s.wall,
                 json.dumps([[w.text, w.start, w.end, w.probability] for w in s.words]),
                 s.surprise, s.surprise_raw, s.novelty, int(s.boundary), s.coherence,
                 np.asarray(s.summary, dtype=np.float32).tobytes() if s.summary else None,
                 None if v is None else np.asarray(v, dtype=np.float32).tobytes(), _features_blob(f),
                 s.density, s.merged_into, s.speaker,
                 None if voice is None else np.asarray(voice, dtype=np.float32).tobytes())
                for s, v, f, voice in zip(segments, vectors, features, voices, strict=True)]
        item_rows = [_item_row(it, v) for it, v in items]
        frame_rows = [(f.t, json.dumps(f.labels), f.cut, np.asarray(v, dtype=np.float32).tobytes())
                      for f, v in frames]
        cp = checkpoint
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(f"INSERT INTO segments ({SEGMENT_COLUMNS}) VALUES ({','.join('?' * _N_COLUMNS)})", rows)
                # A title still on screen is written again each time its span grows.
                self._db.executemany("INSERT OR REPLACE INTO items VALUES (?,?,?,?,?,?,?,?,?)", item_rows)
                self._db.executemany("INSERT INTO frames VALUES (?,?,?,?)", frame_rows)
                self._db.execute(
                    "INSERT OR REPLACE INTO checkpoint VALUES (0,?,?,?,?,?,?,?)",
                    (cp.next_seq, cp.resume_t, cp.media_seconds, cp.wall, _npz(cp.model) if cp.model else None,
                     json.dumps(cp.tracker), json.dumps(cp.info)))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def update_info(self, **info) -> None:
        """Record a change of state (finished, stopped, failed) without a new segment."""
        with self._lock:
            row = self._db.execute("SELECT info FROM checkpoint WHERE id = 0").fetchone()
            if row is not None:
                merged = {**json.loads(row[0]), **info}
                self._db.execute("UPDATE checkpoint SET info = ? WHERE id = 0", (json.dumps(merged),))

    @property
    def nbytes(self) -> int:
        """Bytes the stream's data takes in the file (pages in use, free pages not counted)."""
        with self._lock:
            used = [self._db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count")]
            return (used[0] - used[1]) * self._db.execute("PRAGMA page_size").fetchone()[0]

    def file_bytes(self) -> int:
        """The file and its write-ahead log on disk."""
        files = (Path(str(self.path) + suffix) for suffix in ("", "-wal"))
        return sum(f.stat().st_size for f in files if f.exists())

    def time_at_fraction(self, fraction: float) -> float | None:
        """Media time by which ``fraction`` of the stored segments have ended (oldest first)."""
        with self._lock:
            n = self._db.execute("SELECT COUNT(*) FROM segments").fetchone()[0]
            row = self._db.execute("SELECT t1 FROM segments ORDER BY seq LIMIT 1 OFFSET ?",
                                   (min(n - 1, int(fraction * n)),)).fetchone() if n else None
        return row[0] if row else None

    def vectors(self, seqs: list[int]) -> dict[int, np.ndarray]:
        with self._lock:
            rows = self._db.execute(f"SELECT seq, vector FROM segments WHERE seq IN ({','.join('?' * len(seqs))})",
                                    seqs).fetchall()
        return {seq: _vec(blob) for seq, blob in rows if blob is not None}

    def remove_before(self, cut: RetentionCut, promoted: dict[int, list[int]]) -> None:
        """Retention, in one transaction: segments before ``cut.seq``, shown text, labels and frames
        that ended before ``cut.t``; repeats of a dropped representative point to their new one."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM segments WHERE seq < ?", (cut.seq,))
                self._db.execute("DELETE FROM items WHERE t1 < ?", (cut.t,))
                self._db.execute("DELETE FROM frames WHERE t < ?", (cut.t,))
                for rep, others in promoted.items():
                    self._db.execute("UPDATE segments SET merged_into = NULL WHERE seq = ?", (rep,))
                    self._db.executemany("UPDATE segments SET merged_into = ? WHERE seq = ?",
                                         [(rep, seq) for seq in others])
                row = self._db.execute("SELECT info FROM checkpoint WHERE id = 0").fetchone()
                if row is not None:
                    info = {**json.loads(row[0]), "retained": asdict(cut)}
                    self._db.execute("UPDATE checkpoint SET info = ? WHERE id = 0", (json.dumps(info),))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("PRAGMA incremental_vacuum")

    def load(self, stream_id: str) -> Restored:
        with self._lock:
            rows = self._db.execute(f"SELECT {SEGMENT_COLUMNS} FROM segments ORDER BY seq").fetchall()
            cp_row = self._db.execute(
                "SELECT next_seq, resume_t, media_seconds, wall, model, tracker, info FROM checkpoint"
            ).fetchone()
            item_rows = self._db.execute("SELECT * FROM items ORDER BY id").fetchall()
            frame_rows = self._db.execute("SELECT * FROM frames ORDER BY t").fetchall()
        segments, vectors, features, voices = [], [], [], {}
        for (seq, t0, t1, wall, words, surprise, raw, novelty, boundary, coherence, summary, vector, feats,
             density, merged_into, speaker, voice) in rows:
            segments.append(MicroSegment(
                stream_id, seq, t0, t1, tuple(Word(*w) for w in json.loads(words)), wall=wall,
                surprise=surprise, surprise_raw=raw, novelty=novelty, boundary=bool(boundary),
                coherence=coherence, density=density, merged_into=merged_into, speaker=speaker,
                summary=tuple(_vec(summary).tolist()) if summary else ()))
            vectors.append(_vec(vector))
            features.append(_features(feats))
            if voice is not None:
                voices[seq] = _vec(voice)
        checkpoint = None
        if cp_row is not None:
            next_seq, resume_t, media_s, wall, model, tracker, info = cp_row
            checkpoint = Checkpoint(next_seq, resume_t, media_s, wall, _unnpz(model), json.loads(tracker),
                                    json.loads(info))
        # What was seen after the last commit is seen again when the source resumes there.
        resume_t = checkpoint.resume_t if checkpoint else 0.0
        items = [_item(r) for r in item_rows if r[3] < resume_t]
        frames = [(SeenLabels(t, tuple(tuple(x) for x in json.loads(labels)), cut), _vec(vec))
                  for t, labels, cut, vec in frame_rows if t < resume_t]
        return Restored(segments, vectors, features, checkpoint, items, frames, voices)

    def close(self) -> None:
        with self._lock:
            self._db.close()

