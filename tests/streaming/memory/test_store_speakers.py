"""A segment's speaker label and voice are stored with it and come back on a restart; a store
written before speakers existed still opens, its segments unlabelled."""

from __future__ import annotations

import sqlite3

import numpy as np

from streaming.memory.store import Checkpoint, StreamStore
from streaming.records import MicroSegment, Word

OLD_SCHEMA = """
CREATE TABLE segments (
    seq INTEGER PRIMARY KEY, t0 REAL NOT NULL, t1 REAL NOT NULL, wall REAL NOT NULL,
    words TEXT NOT NULL, surprise REAL, surprise_raw REAL, novelty REAL, boundary INTEGER NOT NULL,
    coherence REAL, summary BLOB, vector BLOB, features BLOB, density REAL, merged_into INTEGER
);
"""


def seg(seq: int, speaker: str | None) -> MicroSegment:
    return MicroSegment("s", seq, 3.0 * seq, 3.0 * seq + 3.0, (Word(" hi", 3.0 * seq, 3.0 * seq + 1.0),),
                        wall=1.0, speaker=speaker)


def checkpoint(next_seq: int) -> Checkpoint:
    return Checkpoint(next_seq, 3.0 * next_seq, 3.0 * next_seq, 1.0, info={"speakers_next": 3})


def test_labels_and_voices_come_back(tmp_path):
    store = StreamStore(tmp_path / "s.sqlite", new=True)
    voice = np.arange(256, dtype=np.float32) / 256
    store.commit([seg(0, "S1"), seg(1, None)], [None, None], [None, None], checkpoint(2), voices=[voice, None])
    store.commit([seg(2, "S2")], [None], [None], checkpoint(3))  # no voices given: none stored
    store.close()
    got = StreamStore(tmp_path / "s.sqlite").load("s")
    assert [s.speaker for s in got.segments] == ["S1", None, "S2"]
    assert list(got.voices) == [0] and np.array_equal(got.voices[0], voice)
    assert got.checkpoint.info["speakers_next"] == 3


def test_a_store_from_before_speakers_opens_and_takes_labels(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    db.execute("INSERT INTO segments VALUES (0, 0.0, 3.0, 1.0, '[[\" hi\", 0.0, 1.0, 1.0]]', "
               "NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL)")
    db.commit()
    db.close()
    store = StreamStore(path)
    old = store.load("s")
    assert [(s.seq, s.speaker, s.text) for s in old.segments] == [(0, None, "hi")] and old.voices == {}
    store.commit([seg(1, "S1")], [None], [None], checkpoint(2), voices=[np.ones(256, np.float32)])
    assert [s.speaker for s in store.load("s").segments] == [None, "S1"]
    store.close()
