"""The proper names of a window, each cited where it first comes up."""

from __future__ import annotations

from types import SimpleNamespace

from streaming.search.names import names_evidence, names_in


def seg(t0, text):
    return SimpleNamespace(t0=t0, t1=t0 + 3.0, text=text)


def test_names_with_titles_and_joined_words_are_found_and_sentence_starts_are_not():
    lower = {"and", "had", "then", "leisure", "party", "you", "for", "calling"}
    assert names_in("And Mr. John Dashwood had then leisure", lower) == ["Mr. John Dashwood"]
    assert names_in("the Communist Party by Karl Marx and Frederick Engels", lower) == [
        "Communist", "Karl Marx", "Frederick Engels"]
    assert names_in("Pope and Tsar, Metternich and Guizot", lower) == ["Pope", "Tsar", "Metternich", "Guizot"]
    assert names_in("H-H-Help! P-P-Popeye!", set()) == ["Popeye"]  # a stutter in the subtitle
    assert names_in("Ohh! Let me go! Let me go! Don't drop me now!", set()) == []


def test_a_word_the_stream_also_writes_in_lower_case_is_no_name():
    said = [seg(0.0, "Thank you for calling Super Awesome Company."), seg(3.0, "For a company directory, press four.")]
    got = names_evidence("ivr", said, [])
    assert [e.text.split(" — ")[0] for e in got] == ["Super Awesome"]


def test_each_name_is_cited_where_it_first_comes_up_said_or_shown():
    said = [seg(0.0, "Manifesto of the Communist Party by Karl Marx and Frederick Engels."),
            seg(6.0, "Karl Marx wrote it with Engels in London.")]
    shown = [SimpleNamespace(t0=1.0, t1=80.0, text="Karl Marx Friedrich Engels", kind="ocr")]
    got = names_evidence("manifesto", said, shown)
    assert [(e.start, e.modality, e.kind) for e in got] == [(0.0, "said", "names"), (1.0, "shown", "names"),
                                                           (6.0, "said", "names")]
    assert got[0].text.startswith("Manifesto of the Communist Party, Karl Marx, Frederick Engels — ")
    assert got[1].text.startswith("Karl Marx Friedrich Engels — ")  # a line of on-screen text has no commas
    assert got[2].text.startswith("London — ")  # Engels was named already
    assert names_evidence("empty", [], []) == []
