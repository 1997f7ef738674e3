"""Questions about a window rather than one thing in it: an overview gets the window's summaries
(mesos when few enough, else the densest macros); a language question gets what Whisper detected."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from streaming.records import LabelSpan, Parent, ShownText, StreamStatus
from streaming.search.retrieve import language, overview
from streaming.search.view import StreamView


class Levels:
    """The one call ``overview`` makes of StreamLevels: parents of a level overlapping a window."""

    def __init__(self, parents: list[Parent]):
        self.all = parents

    def parents(self, level, start=None, end=None):
        return [p for p in self.all if p.level == level
                and (start is None or p.t1 > start) and (end is None or p.t0 < end)]


def meso(i: int, text: str, density: float = 0.5) -> Parent:
    return Parent("meso", i, i * 30.0, i * 30.0 + 30.0, (i,), text, density)


def macro(i: int, text: str, density: float) -> Parent:
    return Parent("macro", i, i * 180.0, i * 180.0 + 180.0, (i,), text, density)


def view(parents) -> StreamView:
    return StreamView("s", StreamStatus("s", "s", "file.mp4", False), levels=Levels(parents) if parents is not None else None)


def test_few_mesos_give_their_summaries_in_time_order_clipped_to_the_window():
    v = view([meso(0, "the opening"), meso(1, "the middle"), meso(2, "the end")])
    got = overview(v, 5, 10.0, 70.0)
    assert [e.text for e in got] == ["the opening", "the middle", "the end"]
    assert [(e.start, e.end) for e in got] == [(10.0, 30.0), (30.0, 60.0), (60.0, 70.0)]
    assert {e.kind for e in got} == {"meso"} and all(e.stream == "s" for e in got)


def test_too_many_mesos_give_the_densest_macros_in_time_order():
    parents = [meso(i, f"meso {i}") for i in range(30)]
    parents += [macro(0, "first part", 0.2), macro(1, "second part", 0.9), macro(2, "third part", 0.5)]
    got = overview(view(parents), 2, None, None)
    assert [e.text for e in got] == ["second part", "third part"]
    assert got[0].kind == "macro" and (got[0].start, got[0].end) == (180.0, 360.0)


def test_no_levels_or_no_summary_text_gives_nothing_so_the_window_is_listed():
    assert overview(view(None), 5, None, None) == []
    assert overview(view([meso(0, "  ")]), 5, None, None) == []


# -- "what language is this in?" -------------------------------------------------------------------

class Spoken:
    """The two things ``language`` reads of a StreamView: the detected code and the segments."""

    def __init__(self, code, spans, shown=(), changes=()):
        self.id, self.language = "s", code
        self.languages = tuple(changes) or ((0.0, code),) if code else ()
        self.visual = _stage_with(list(shown)) if shown else None
        self._segs = [SimpleNamespace(t0=a, t1=b, words=(1,) if said else ()) for a, b, said in spans]

    def segments(self, start=None, end=None):
        return [s for s in self._segs if (start is None or s.t1 > start) and (end is None or s.t0 < end)]


def test_the_language_is_named_and_cited_from_the_first_to_the_last_speech_in_the_window():
    got = language(Spoken("en", [(0, 3, False), (3, 6, True), (6, 9, True), (9, 12, False)]), None, None)
    assert len(got) == 1 and got[0].text.startswith("English") and got[0].kind == "language"
    assert (got[0].start, got[0].end) == (3, 9)
    assert language(Spoken("yue", [(0, 3, True)]), None, None)[0].text.startswith("Cantonese")


def test_a_change_of_spoken_language_is_told_with_where_each_language_is_spoken():
    """An English news bulletin that goes on in Spanish at 0:30: both, each cited where spoken."""
    spans = [(t, t + 3, True) for t in range(0, 60, 3)]
    got = language(Spoken("es", spans, changes=[(0.2, "en"), (30.4, "es")]), None, None)
    assert [e.text.split(" (")[0] for e in got] == ["English", "Spanish"]
    assert [(e.start, e.end) for e in got] == [(0, 30), (30, 60)]
    assert "changes" in got[1].text and "English" in got[1].text
    # Asked about the first half only: one language, no change.
    first = language(Spoken("es", spans, changes=[(0.2, "en"), (30.4, "es")]), 0.0, 29.0)
    assert len(first) == 1 and first[0].text.startswith("English")


def test_subtitles_are_answered_in_the_language_they_are_written_in():
    cues = [ShownText(i, "subtitle", text, 10.0 + 3 * i, 12.0 + 3 * i) for i, text in enumerate(
        ["Ohh! Let me go! Let me go!", "Nonono! Don't drop me now!", "Well, that was a nice ship we had once"])]
    no_audio = Spoken(None, [], cues)
    got = language(no_audio, None, None, {"ocr", "subtitle"})
    assert len(got) == 1 and got[0].text.startswith("English") and got[0].modality == "shown"
    assert (got[0].start, got[0].end) == (10.0, 18.0)
    # A film dubbed in French with English subtitles: the question says which one it asks about.
    dubbed = Spoken("fr", [(0, 3, True)], cues)
    assert language(dubbed, None, None, {"speech", "ocr", "subtitle"})[0].text.startswith("French")
    assert language(dubbed, None, None, {"ocr", "subtitle"})[0].text.startswith("English")
    # Too few words to tell: nothing, so the window is listed instead of a guess.
    assert language(Spoken(None, [], [ShownText(0, "subtitle", "[squawk]", 1.0, 2.0)]), None, None,
                    {"subtitle"}) == []


def test_which_language_a_question_asks_about():
    from streaming.answer.decide import plan_question

    assert "speech" not in plan_question("What language are the subtitles in?").kinds
    assert "speech" not in plan_question("Which language is the on-screen dialogue written in?").kinds
    assert "speech" in plan_question("What language is spoken?").kinds
    assert "speech" in plan_question("What language is this in?").kinds
    assert "speech" in plan_question("In what language is this passage read?").kinds  # read aloud


def test_no_language_before_speech_so_the_window_is_listed():
    assert language(Spoken(None, [(0, 3, True)]), None, None) == []
    assert language(Spoken("en", [(0, 3, False)]), None, None) == []


# -- "what is on screen at 0:13?" where no text is shown ---------------------------------------------

def _stage_with(items):
    from streaming.ingest.visual import VisualStage

    stage = VisualStage(lambda texts: np.ones((len(texts), 4), np.float32) / 2, 4)
    stage._upsert(items)
    return stage


def test_a_window_without_text_lists_what_the_picture_shows_one_line_a_shot():
    meadow = [LabelSpan(i, 3.0 * i, 3.0 * i + 3, (("hay", 0.4), ("valley", 0.2))) for i in range(4)]
    bird = LabelSpan(4, 12.0, 15.0, (("bird", 0.6), ("kite (bird of prey)", 0.3)))
    title = ShownText(5, "ocr", "THE PEACH OPEN MOVIE PROJECT", 15.0, 17.0)
    v = StreamView("s", StreamStatus("s", "s", "file.mp4", False), visual=_stage_with(meadow + [bird, title]))
    got = v.evidence(None, 10, 4.0, 16.0, {"ocr", "subtitle", "label"})
    assert [(e.kind, e.start, e.end) for e in got] == [("label", 3.0, 12.0), ("label", 12.0, 15.0),
                                                       ("ocr", 15.0, 17.0)]
    assert "bird" in got[1].text and got[1].modality == "seen"
    # A question about text alone still lists only text.
    assert [e.kind for e in v.evidence(None, 10, 4.0, 16.0, {"ocr", "subtitle"})] == ["ocr"]
