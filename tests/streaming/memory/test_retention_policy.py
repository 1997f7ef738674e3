"""Retention is on by default where it matters: a live source never ends, a file does."""

from streaming.memory.retention import RetentionPolicy
from streaming.settings import Settings


def test_live_streams_keep_a_day_by_default_and_files_everything():
    s = Settings()
    assert RetentionPolicy.from_settings(s, live=True).hours == 24.0
    assert RetentionPolicy.from_settings(s, live=True).active
    assert not RetentionPolicy.from_settings(s, live=False).active


def test_retention_hours_wins_and_live_retention_can_be_turned_off():
    s = Settings(retention_hours=2)
    assert RetentionPolicy.from_settings(s, live=True).hours == 2.0
    assert RetentionPolicy.from_settings(s, live=False).hours == 2.0
    assert not RetentionPolicy.from_settings(Settings(live_retention_hours=None), live=True).active
