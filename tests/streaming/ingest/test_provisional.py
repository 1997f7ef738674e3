"""LocalAgreement: what becomes provisional text from successive passes over the held audio."""

from __future__ import annotations

import pytest

from streaming.ingest.provisional import LocalAgreement, agreed_prefix
from streaming.records import ProvisionalText, Word


def words(text: str, t0: float = 0.0, step: float = 0.5, jitter: float = 0.0) -> list[Word]:
    return [Word(" " + w, t0 + i * step + jitter, t0 + (i + 1) * step - 0.05 + jitter)
            for i, w in enumerate(text.split())]


def said(ws: list[Word]) -> str:
    return "".join(w.text for w in ws).strip()


def test_a_word_is_searchable_only_once_two_passes_agree_on_it():
    la = LocalAgreement(2)
    assert la.add(words("a spectre is haunt")) == []  # one pass: nothing trusted yet
    new = la.add(words("a spectre is haunting Europe"))
    assert said(new) == "a spectre is"  # "haunt" vs "haunting": the cut word waits
    new = la.add(words("a spectre is haunting Europe, the spectre", jitter=0.15))
    assert said(new) == "haunting Europe,"  # the newer pass's spelling of the agreed words
    assert said(la.confirmed) == "a spectre is haunting Europe,"


def test_case_and_punctuation_do_not_break_agreement():
    assert agreed_prefix(words("A spectre, is"), words("a Spectre is.")) == 3
    assert agreed_prefix(words("a spectre"), words("a specter")) == 1


def test_a_word_heard_again_past_the_frontier_is_not_confirmed_twice():
    la = LocalAgreement(2)
    la.add(words("all the powers of old"))
    la.add(words("all the powers of old Europe"))
    assert said(la.confirmed) == "all the powers of old"
    # The next passes start a little later and hear "old" again, placed 0.2 s apart.
    la.add(words("of old Europe have entered", t0=1.5, jitter=0.2))
    la.add(words("of old Europe have entered into", t0=1.5, jitter=0.1))
    assert said(la.confirmed) == "all the powers of old Europe have entered"


def test_final_text_replaces_provisional_words_span_by_span():
    la = LocalAgreement(2)
    la.add(words("one two three four five six"))
    la.add(words("one two three four five six seven"))
    assert len(la.confirmed) == 6
    la.trim(1.5)  # the committed transcript now reaches 1.5 s: "one two three" are final
    assert said(la.confirmed) == "four five six"
    la.add(words("one two three four five six seven eight"))  # an old pass still hears them
    assert said(la.confirmed) == "four five six seven"  # never again before the final text


def test_agreement_one_trusts_every_pass_and_three_waits_for_a_third():
    one = LocalAgreement(1)
    assert said(one.add(words("a spectre is haunt"))) == "a spectre is haunt"
    cut = LocalAgreement(1)  # a word ending at the edge of the audio heard may be cut short: it waits
    assert said(cut.add(words("a spectre is haunt"), audio_end=2.0)) == "a spectre is"
    three = LocalAgreement(3)
    three.add(words("a spectre is"))
    assert three.add(words("a spectre is haunting")) == []
    assert said(three.add(words("a spectre is haunting Europe"))) == "a spectre is"
    with pytest.raises(ValueError):
        LocalAgreement(4)


def test_provisional_text_keeps_only_what_final_text_does_not_cover():
    ws = tuple(words("we have nothing to lose", t0=10.0))
    heard = ProvisionalText("s", 10.0, ws[-1].end, ws, wall=1.0)
    assert heard.after(5.0) is heard
    rest = heard.after(11.0)
    assert rest.text == "nothing to lose" and rest.t0 == pytest.approx(11.0)  # words at 10, 10.5, 11 …
    assert heard.after(20.0) is None
    assert heard.to_dict()["text"] == "we have nothing to lose"


def test_a_commit_landing_after_the_view_was_taken_is_not_answered_twice():
    """The service test caught it: a query's view took the provisional text, then a commit added the
    final segment for the same words (its index first, committed_seconds a moment later), and the
    answer cited both. The view trims the provisional text against the index when it is read."""
    import numpy as np

    from streaming.memory.index import SegmentIndex
    from streaming.records import MicroSegment, StreamStatus
    from streaming.search.view import StreamView

    ws = tuple(words("a spectre is haunting europe", t0=19.0))
    vec = np.ones(4, np.float32) / 2.0
    heard = ProvisionalText("s", ws[0].start, ws[-1].end, ws, wall=1.0, vector=vec)
    index = SegmentIndex(4)
    view = StreamView("s", StreamStatus("s", "s", "udp://127.0.0.1:5000", True), index=index, provisional=heard)
    assert view.heard(vec) is not None  # nothing final yet: the provisional text answers
    index.add([MicroSegment("s", 0, 19.0, ws[-1].end, ws)], vec[None, :])  # the commit lands
    assert view.heard(vec) is None and view.heard(None) is None
