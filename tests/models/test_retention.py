"""Retention by age and by disk budget: whole macros go, repeats of what went stay findable, the
disk stays bounded, and a restart rebuilds exactly what was left."""

from __future__ import annotations

import pytest

from streaming.memory.retention import RetentionPolicy
from streaming.settings import Settings
from streaming.search.view import StreamView

from tests.models.test_hierarchy import composed_signoffs


def test_policy_limits_by_age_and_by_bytes() -> None:
    assert not RetentionPolicy().active
    assert RetentionPolicy().limit(1e6, 10**9, lambda f: 5.0) is None
    by_age = RetentionPolicy(hours=1.0)
    assert by_age.limit(3600.0 + 42.0, 0, lambda f: None) == pytest.approx(42.0)
    assert by_age.limit(3000.0, 0, lambda f: None) is None  # younger than the limit: nothing goes
    seen = []
    by_size = RetentionPolicy(max_bytes=1000)
    assert by_size.limit(500.0, 900, lambda f: 1.0) is None  # inside the budget
    assert by_size.limit(500.0, 2000, lambda f: seen.append(f) or 250.0) == 250.0
    assert seen == [pytest.approx(0.6)]  # the excess (half) plus a margin
    both = RetentionPolicy(hours=0.1, max_bytes=1000)
    assert both.limit(1000.0, 2000, lambda f: 100.0) == pytest.approx(1000.0 - 360.0)  # the stricter


def test_settings_validate_retention() -> None:
    with pytest.raises(ValueError, match="retention_hours"):
        Settings(retention_hours=0)
    with pytest.raises(ValueError, match="retention_mb"):
        Settings(retention_mb=-1)
    s = Settings(retention_hours=24, retention_mb=512)
    assert RetentionPolicy.from_settings(s) == RetentionPolicy(24.0, 512 * 1024 * 1024, 60.0)


def _run(path: str, settings: Settings, models):
    from streaming.ingest.pipeline import StreamPipeline
    from streaming.source.media import parse_source
    from streaming.memory.store import StreamStore

    store = StreamStore(settings.data_dir / "c.sqlite")
    pipe = StreamPipeline("c", "c", parse_source(path), settings, models.for_stream, store=store)
    pipe.probe()
    pipe.start()
    assert pipe.join(timeout=300) and pipe.status.state == "finished", pipe.status.last_error
    return pipe, store


def _answers(pipe, texts):
    out = []
    for text in texts:
        ev = StreamView.of(pipe).evidence(pipe.embedder.encode([text])[0], 3, kinds={"speech"})
        out.append([(e.start, e.end, e.text, round(e.score, 5), e.also) for e in ev])
    return out


@pytest.mark.slow
def test_age_retention_keeps_the_newest_whole_macros_and_every_repeat_findable(tmp_path) -> None:
    """Real speech through PyAV, Whisper base, MiniLM and FAISS, with short levels (meso 6 s,
    macro 12 s) and 30 s of retention, checked every 5 s of media."""
    from manta_models.loader import ModelSet
    from streaming.ingest.pipeline import StreamPipeline
    from streaming.source.media import parse_source
    from streaming.memory.store import StreamStore

    path, length, _, _ = composed_signoffs(tmp_path)
    s = Settings(data_dir=tmp_path / "data", meso_min_s=6, meso_target_s=6, meso_max_s=6, macro_min_s=12,
                 macro_target_s=12, macro_max_s=12, retention_hours=30 / 3600, retention_every_s=5)
    models = ModelSet(s)
    pipe, store = _run(path, s, models)
    cut = pipe.retention.cut
    held = StreamView.of(pipe).segments()
    assert cut is not None and held[0].seq == cut.seq and held[0].t0 == cut.t
    assert length - 30 - 12 - 6 <= cut.t <= length - 30  # whole macros: at most one more than needed
    macros = pipe.levels.parents("macro")
    assert macros[0].t0 == cut.t and macros[0].id == cut.macro_id > 0
    assert all(p.t1 > cut.t for level in ("meso", "macro") for p in pipe.levels.parents(level))
    # The store holds what memory holds, nothing older.
    restored = store.load("c")
    assert [x.seq for x in restored.segments] == [x.seq for x in held]
    assert restored.checkpoint.info["retained"]["seq"] == cut.seq

    # The sign-off is still answered, at the times it was said after the cut, all of them.
    repeats = [x for x in held if "young man" in x.text.lower()]
    answers = _answers(pipe, ["he was not an ill disposed young man", "ask what you can do for your country"])
    top = answers[0][0]
    assert "young man" in top[2].lower() and top[0] >= cut.t
    found = {span for e in answers[0] if "young man" in e[2].lower() for span in ((e[0], e[1]), *e[4])}
    assert found == {(x.t0, x.t1) for x in repeats}
    assert pipe.retention.promoted >= 1  # a repeat of a sign-off before the cut now stands for it
    assert all(x.merged_into is None or x.merged_into >= cut.seq for x in held)  # nothing points at a gap

    # A restart rebuilds the same levels and answers the same.
    before = {level: pipe.levels.parents(level) for level in ("meso", "macro")}
    store.close()
    store2 = StreamStore(s.data_dir / "c.sqlite")
    again = StreamPipeline("c", "c", parse_source(path), s, models.for_stream, store=store2)
    again.start()
    assert again.join(timeout=120) and again.wait_ready(1)
    assert {level: again.levels.parents(level) for level in ("meso", "macro")} == before
    assert _answers(again, ["he was not an ill disposed young man", "ask what you can do for your country"]) \
        == answers
    store2.close()


@pytest.mark.slow
def test_a_disk_budget_bounds_the_stream_file(tmp_path) -> None:
    from manta_models.loader import ModelSet

    path, length, _, _ = composed_signoffs(tmp_path)
    levels = dict(meso_min_s=6, meso_target_s=6, meso_max_s=6, macro_min_s=12, macro_target_s=12,
                  macro_max_s=12, retention_every_s=5)
    budget = 96 * 1024  # about 50 KB is the floor: schema pages and the checkpoint (the Mamba state)
    s = Settings(data_dir=tmp_path / "data", retention_mb=budget / 1024 / 1024, **levels)
    pipe, store = _run(path, s, ModelSet(s))
    assert pipe.retention.cut is not None and pipe.retention.dropped > 0
    # After the last check the file may have grown by at most one check's worth (5 s of 67).
    assert store.nbytes <= budget * 1.25, store.nbytes
    assert StreamView.of(pipe).segments()[-1].t1 >= length - 3.0  # the newest is always kept
    store.close()
