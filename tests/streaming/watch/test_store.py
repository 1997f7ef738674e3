"""Watches and alerts on disk (streaming/watch/store.py): they survive reopening, ids only grow."""

import os
import stat

import numpy as np

from streaming.records import Alert, Watch
from streaming.watch.store import NO_WEBHOOK, MonitorStore


def alert(watch="w-1", stream="s", start=1.0):
    return Alert(watch, "text", stream, start, start + 3, "said", "speech", "the text", "text", 0.8, 100.0)


def test_watches_and_alerts_survive_reopening_with_the_same_ids(tmp_path):
    path = tmp_path / "data" / "monitor.sqlite"
    store = MonitorStore(path)
    store.add_watch(Watch("w-1", "goal", streams=("cam-*",), webhook_url="http://h/x"), np.ones(4))
    ids = [a.id for a in store.add_alerts([alert(), alert(stream="t", start=9)], [NO_WEBHOOK] * 2)]
    store.set_webhook(ids[1], {"state": "delivered", "attempts": 2, "last_error": None})
    store.close()
    again = MonitorStore(path)
    [(watch, vector)] = again.watches()
    assert watch.streams == ("cam-*",) and watch.webhook_url == "http://h/x" and vector.tolist() == [1.0] * 4
    got = again.alerts()
    assert [a["id"] for a in got] == ids and ids[0] < ids[1]
    assert got[1]["webhook"] == {"state": "delivered", "attempts": 2, "last_error": None}
    assert [a["stream"] for a in again.alerts(stream="t")] == ["t"] and again.alerts(since=ids[1]) == []
    assert again.alert_counts() == {"w-1": 2} and again.last_id() == ids[1]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # transcripts' words: its owner's only
    assert again.remove_watch("w-1") and not again.remove_watch("w-1") and again.watches() == []


def test_old_alerts_go_first_and_ids_are_never_reused(tmp_path):
    store = MonitorStore(tmp_path / "m.sqlite", max_alerts=3)
    for i in range(5):
        store.add_alerts([alert(start=i)], [NO_WEBHOOK])
    assert [a["start"] for a in store.alerts()] == [2, 3, 4]
    store.add_alerts([alert(start=9)], [NO_WEBHOOK])
    assert store.last_id() == 6 and [a["id"] for a in store.alerts()] == [4, 5, 6]
