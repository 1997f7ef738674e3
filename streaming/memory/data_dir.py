"""Where a stream's data lives on disk, who may read it, and how it is deleted.

``data_dir/streams/<id>.sqlite`` (with SQLite's ``-wal`` and ``-shm`` beside it) holds everything a
stream indexed: transcripts of what was said and shown, so other local users must not read it. The
folders are made 0700 and the files 0600 with explicit chmods, whatever the process's umask.

A stream's store is deleted in two steps: ``trash_store`` first renames its files into
``data_dir/trash/<id>-<timestamp>/`` (a rename within one file system is atomic), and only then is the
old actor ended and ``empty_trash`` deletes them. Once renamed, the store's path is free: a new stream
with the same name creates a fresh file there, and nothing that finishes the old removal can touch it.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
# SQLite's files of one database: the main file, its write-ahead log and its shared-memory index.
SUFFIXES = ("", "-wal", "-shm")


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner can enter (made when missing, tightened when not)."""
    path = Path(path)
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIR)  # mkdir's mode is masked by the umask, and an old folder keeps its own
    return path


def streams_dir(data_dir: Path) -> Path:
    """``data_dir/streams``, made private together with ``data_dir``."""
    return private_dir(private_dir(data_dir) / "streams")


def store_path(data_dir: Path, stream_id: str) -> Path:
    return Path(data_dir) / "streams" / f"{stream_id}.sqlite"


def store_files(path: Path) -> list[Path]:
    """The files of the store at ``path`` that exist now."""
    return [f for f in (Path(str(path) + s) for s in SUFFIXES) if f.exists()]


def store_exists(data_dir: Path, stream_id: str) -> bool:
    """Whether anything of a stream's store is on disk (a leftover log alone counts: a new database
    beside it would replay the old pages in it)."""
    return bool(store_files(store_path(data_dir, stream_id)))


def trash_store(data_dir: Path, stream_id: str, into: Path | None = None) -> Path | None:
    """Move a stream's store files into a new folder under ``data_dir/trash`` (or into ``into``, one
    it made before); returns that folder, or ``into`` (None) when there were no files. The main file
    goes first: from then on the store cannot be found (a restoring replica skips it) even if the
    service dies before its log follows."""
    files = store_files(store_path(data_dir, stream_id))
    if not files:
        return into
    folder = into
    if folder is None:
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}"
        folder = private_dir(Path(data_dir) / "trash") / f"{stream_id}-{stamp}"
        folder.mkdir(mode=PRIVATE_DIR)  # exist_ok False: two removals never share a folder
    for f in files:
        try:
            os.replace(f, folder / f.name)
        except FileNotFoundError:  # SQLite deleted its log in the meantime (the last connection closed)
            pass
    return folder


def empty_trash(folder: Path | None) -> None:
    """Delete a folder ``trash_store`` made (once no actor has the files open for writing)."""
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
