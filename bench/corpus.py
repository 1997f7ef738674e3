"""Real sentences for a synthetic index: the test media's own texts plus Python's stdlib docstrings.

Nothing is downloaded: the media README, caption and transcript files lie in the shared media
folder, and docstrings come from modules already installed with Python.
"""

from __future__ import annotations

import importlib
import inspect
import re

from .common import MEDIA

STDLIB = ("os", "os.path", "json", "re", "collections", "itertools", "functools", "random", "math",
          "statistics", "string", "shutil", "pathlib", "datetime", "textwrap", "heapq", "bisect",
          "zipfile", "tarfile", "csv", "sqlite3", "socket", "threading", "subprocess", "hashlib")

QUESTIONS = (
    "What is haunting Europe?", "How do I reach an operator?", "Who wrote the Communist Manifesto?",
    "Where can I find the text version of this audiobook?", "Is the audiobook in the public domain?",
    "What did Kennedy ask his fellow Americans?", "In which languages was the manifesto published?",
    "How do I speak with a customer advocate?", "Was John Dashwood an ill disposed young man?",
    "How can I dial an extension?", "What does the bird do on the branch?",
    "How do I join two file system paths?", "Return the square root of a number",
    "How do I sort a list in place?", "When was this file last modified?",
    "Which powers entered into an alliance against communism?", "What is the sample rate?",
    "How do I compute a hash digest?", "Open a network connection to a host",
    "What does the company directory option do?",
)


def _sentences(text: str) -> list[str]:
    text = re.sub(r"[`*_#|>]+", " ", text)
    parts = re.split(r"(?<=[.!?])\s+|\n\s*\n|\n-\s", text)
    return [" ".join(p.split()) for p in parts]


def media_sentences() -> list[str]:
    out = _sentences((MEDIA / "README.md").read_text())
    srt = (MEDIA / "manifesto_audiobook_titlecard.autocaptions.srt").read_text()
    out += [line for line in srt.splitlines() if line and not line[0].isdigit()]
    transcript = (MEDIA / "librivox_sense_and_sensibility.transcription").read_text()
    out += re.findall(r"<s>(.*?)</s>", transcript)
    return out


def docstring_sentences() -> list[str]:
    out = []
    for name in STDLIB:
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module, callable):
            doc = inspect.getdoc(obj) or ""
            first = doc.split("\n\n", 1)[0].replace("\n", " ")
            if first:
                out.append(first)
    return out


def sentences(limit: int = 400) -> list[str]:
    """Distinct sentences of 4 to 40 words, media texts first."""
    seen, out = set(), []
    for s in media_sentences() + docstring_sentences():
        s = s.strip().lstrip("-• ").strip()
        if 4 <= len(s.split()) <= 40 and s.lower() not in seen:
            seen.add(s.lower())
            out.append(s)
        if len(out) >= limit:
            break
    return out
