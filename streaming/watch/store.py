"""Where watches and alerts are kept: ``data_dir/monitor.sqlite`` (0600, like the streams' stores),
so both survive a restart of the service, and an SSE client resuming after a restart finds the
alerts it missed under the same ids.

Alerts are kept up to ``max_alerts``; older ones go first. Each alert has the delivery state of its
webhook (none, pending, delivered, failed) beside it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from streaming.memory.data_dir import PRIVATE_FILE, private_dir
from streaming.records import Alert, Watch

SCHEMA = """
CREATE TABLE IF NOT EXISTS watches (id TEXT PRIMARY KEY, watch TEXT NOT NULL, vector BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, watch TEXT NOT NULL, stream TEXT NOT NULL,
    alert TEXT NOT NULL, webhook TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS alerts_watch ON alerts (watch, id);
CREATE INDEX IF NOT EXISTS alerts_stream ON alerts (stream, id);
"""
NO_WEBHOOK = {"state": "none", "attempts": 0, "last_error": None}


def monitor_path(data_dir: Path) -> Path:
    return Path(data_dir) / "monitor.sqlite"


class MonitorStore:
    def __init__(self, path: Path, max_alerts: int = 100_000):
        self.path = Path(path)
        self.max_alerts = max_alerts
        private_dir(self.path.parent)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE))
        os.chmod(self.path, PRIVATE_FILE)
        self._lock = threading.Lock()  # the desk's event loop writes alerts, the webhook thread states
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    # -- watches -----------------------------------------------------------------------------------
    def add_watch(self, watch: Watch, vector: np.ndarray) -> None:
        blob = np.asarray(vector, dtype=np.float32).tobytes()
        with self._lock:
            self._db.execute("INSERT INTO watches VALUES (?, ?, ?)", (watch.id, json.dumps(watch.to_dict()), blob))

    def remove_watch(self, watch_id: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM watches WHERE id = ?", (watch_id,)).rowcount > 0

    def watches(self) -> list[tuple[Watch, np.ndarray]]:
        with self._lock:
            rows = self._db.execute("SELECT watch, vector FROM watches ORDER BY rowid").fetchall()
        out = []
        for text, blob in rows:
            d = json.loads(text)
            d["streams"] = tuple(d["streams"])
            out.append((Watch(**d), np.frombuffer(blob, dtype=np.float32).copy()))
        return out

    def alert_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT watch, COUNT(*) FROM alerts GROUP BY watch").fetchall())

    # -- alerts ------------------------------------------------------------------------------------
    def add_alerts(self, alerts: list[Alert], webhook_states: list[dict]) -> list[Alert]:
        """Record ``alerts``; returns them with their ids (increasing, never reused)."""
        out = []
        with self._lock:
            self._db.execute("BEGIN")
            for alert, state in zip(alerts, webhook_states):
                d = asdict(alert)
                d.pop("id")
                cur = self._db.execute("INSERT INTO alerts (watch, stream, alert, webhook) VALUES (?, ?, ?, ?)",
                                       (alert.watch, alert.stream, json.dumps(d), json.dumps(state)))
                out.append(replace(alert, id=cur.lastrowid))
            if out:
                self._db.execute("DELETE FROM alerts WHERE id <= ?", (out[-1].id - self.max_alerts,))
            self._db.execute("COMMIT")
        return out

    def set_webhook(self, alert_id: int, state: dict) -> None:
        with self._lock:
            self._db.execute("UPDATE alerts SET webhook = ? WHERE id = ?", (json.dumps(state), alert_id))

    def alerts(self, since: int = 0, stream: str | None = None, watch: str | None = None,
               limit: int = 100) -> list[dict]:
        """Alerts after id ``since``, oldest first, each with its ``webhook`` delivery state."""
        sql, args = "SELECT id, alert, webhook FROM alerts WHERE id > ?", [since]
        if stream is not None:
            sql, args = sql + " AND stream = ?", args + [stream]
        if watch is not None:
            sql, args = sql + " AND watch = ?", args + [watch]
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY id LIMIT ?", args + [limit]).fetchall()
        return [{"id": i, **json.loads(a), "webhook": json.loads(w)} for i, a, w in rows]

    def last_id(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'alerts'").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        with self._lock:
            self._db.close()
