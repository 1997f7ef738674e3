"""A stream's data on disk: private to its owner whatever the umask, never overwritten by a new stream
with the same name, and deleted by moving it to the trash first (streaming/memory/data_dir.py)."""

from __future__ import annotations

import os
import stat

import pytest

from streaming.memory.data_dir import empty_trash, store_path, streams_dir, trash_store
from streaming.memory.store import Checkpoint, StreamStore
from streaming.records import MicroSegment, Word


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask():
    """Umask 0: without explicit modes every file and folder would be world-readable (and writable)."""
    old = os.umask(0)
    yield
    os.umask(old)


def _commit(store: StreamStore, n: int, marker: str) -> None:
    segs = [MicroSegment("s", i, 3.0 * i, 3.0 * i + 3.0, (Word(f" {marker} {i}", 3.0 * i, 3.0 * i + 2.0),), wall=1.0)
            for i in range(n)]
    store.commit(segs, [None] * n, [None] * n,
                 Checkpoint(next_seq=n, resume_t=3.0 * n, media_seconds=3.0 * n, wall=1.0, info={"marker": marker}))


def test_data_dir_streams_and_trash_are_0700_and_store_files_0600_whatever_the_umask(tmp_path, open_umask):
    data = tmp_path / "data"
    streams_dir(data)
    path = store_path(data, "s")
    store = StreamStore(path, new=True)
    _commit(store, 2, "a")  # WAL mode: the -wal and -shm exist while the store is open
    assert (_mode(data), _mode(data / "streams")) == (0o700, 0o700)
    for suffix in ("", "-wal", "-shm"):
        assert _mode(f"{path}{suffix}") == 0o600, suffix
    store.close()
    assert _mode(trash_store(data, "s").parent) == 0o700


def test_an_older_readable_store_is_tightened_when_opened(tmp_path, open_umask):
    path = tmp_path / "streams" / "old.sqlite"
    StreamStore(path).close()
    os.chmod(path, 0o644)  # as an older version left it
    store = StreamStore(path)
    _commit(store, 1, "a")
    assert {_mode(f"{path}{s}") for s in ("", "-wal", "-shm")} == {0o600}
    store.close()


def test_a_new_store_never_replaces_an_existing_one(tmp_path):
    path = store_path(tmp_path, "s")
    store = StreamStore(path, new=True)
    _commit(store, 3, "old")
    store.close()
    with pytest.raises(FileExistsError):
        StreamStore(path, new=True)
    kept = StreamStore(path).load("s")
    assert [s.text for s in kept.segments] == ["old 0", "old 1", "old 2"]
    # A log left alone counts too: a fresh database beside it would replay the old pages.
    os.rename(path, tmp_path / "elsewhere.sqlite")
    (tmp_path / "streams" / "s.sqlite-wal").write_bytes(b"old log")
    with pytest.raises(FileExistsError):
        StreamStore(path, new=True)


def test_trash_takes_every_file_of_the_store_and_frees_its_path_at_once(tmp_path):
    path = store_path(tmp_path, "s")
    store = StreamStore(path, new=True)
    _commit(store, 2, "old")
    folder = trash_store(tmp_path, "s")  # while the old store is still open, as a live actor has it
    assert folder.parent == tmp_path / "trash" and folder.name.startswith("s-")
    assert list((tmp_path / "streams").iterdir()) == []
    new = StreamStore(path, new=True)  # the name is free: a new stream starts on a fresh file
    _commit(new, 1, "new")
    store.close()  # the old connection closing does not touch the new files
    empty_trash(folder)
    assert list((tmp_path / "trash").iterdir()) == []
    assert [s.text for s in new.load("s").segments] == ["new 0"]
    new.close()
    assert [s.text for s in StreamStore(path).load("s").segments] == ["new 0"]
    assert trash_store(tmp_path, "nothing") is None
