"""Questions about the language of a stream: "What language is this in?", "Which language is spoken?".

Whisper detects a stream's language from its first speech (manta_models/perception/asr.py) and keeps
it; the stream's status shows it, and such a question is answered from it rather than searched for
(the word "language" is in no transcript). Speech in another language later in the stream is not
detected again: each detection costs an encoder pass of its own.
"""

from __future__ import annotations

import re

_LANGUAGE_RE = re.compile(
    r"\b(?:what|which)\s+(?:(?:spoken|main|other)\s+)?languages?\b"
    r"|\bin\s+(?:what|which)\s+(?:\w+\s+)?languages?\b"
    r"|\blanguages?\s+(?:is|are|was|were)\s+(?:being\s+)?(?:spoken|used|heard)\b"
    r"|\bwhat\s+(?:is|was)\s+the\s+(?:spoken\s+)?language\b"
    r"|\b(?:is|was)\s+(?:it|this|that|the\s+\w+)\s+(?:in\s+)?(?:english|spanish|french|german|italian|"
    r"portuguese|russian|chinese|japanese|arabic|hindi)\b",
    re.IGNORECASE)

# Languages as a topic of what was said ("which languages is it published in?") are a search.
_TOPIC_RE = re.compile(r"\b(?:mention(?:s|ed)?|nam(?:e|es|ed)|list(?:s|ed)?|publish(?:ed)?|translat(?:e|ed|ion)|"
                       r"refer(?:s|red)?|cit(?:e|es|ed)|say|says|said|learn(?:s|ed)?|teach(?:es)?|taught)\b",
                       re.IGNORECASE)

# Whisper's language codes and their English names (Whisper's own list).
NAMES = dict(pair.split(":") for pair in """
en:English zh:Chinese de:German es:Spanish ru:Russian ko:Korean fr:French ja:Japanese pt:Portuguese
tr:Turkish pl:Polish ca:Catalan nl:Dutch ar:Arabic sv:Swedish it:Italian id:Indonesian hi:Hindi fi:Finnish
vi:Vietnamese he:Hebrew uk:Ukrainian el:Greek ms:Malay cs:Czech ro:Romanian da:Danish hu:Hungarian
ta:Tamil no:Norwegian th:Thai ur:Urdu hr:Croatian bg:Bulgarian lt:Lithuanian la:Latin mi:Maori
ml:Malayalam cy:Welsh sk:Slovak te:Telugu fa:Persian lv:Latvian bn:Bengali sr:Serbian az:Azerbaijani
sl:Slovenian kn:Kannada et:Estonian mk:Macedonian br:Breton eu:Basque is:Icelandic hy:Armenian ne:Nepali
mn:Mongolian bs:Bosnian kk:Kazakh sq:Albanian sw:Swahili gl:Galician mr:Marathi pa:Punjabi si:Sinhala
km:Khmer sn:Shona yo:Yoruba so:Somali af:Afrikaans oc:Occitan ka:Georgian be:Belarusian tg:Tajik
sd:Sindhi gu:Gujarati am:Amharic yi:Yiddish lo:Lao uz:Uzbek fo:Faroese ht:Haitian_Creole ps:Pashto
tk:Turkmen nn:Nynorsk mt:Maltese sa:Sanskrit lb:Luxembourgish my:Myanmar bo:Tibetan tl:Tagalog
mg:Malagasy as:Assamese tt:Tatar haw:Hawaiian ln:Lingala ha:Hausa ba:Bashkir jw:Javanese su:Sundanese
yue:Cantonese""".split())


def asks_language(question: str) -> bool:
    if not isinstance(question, str):
        raise ValueError("question must be a string")
    q = " ".join(question.split())
    return _LANGUAGE_RE.search(q) is not None and _TOPIC_RE.search(q) is None


def language_name(code: str | None) -> str | None:
    """"en" → "English"; an unknown code is shown as it is; None stays None."""
    if not code:
        return None
    return NAMES.get(code.lower(), code).replace("_", " ")
