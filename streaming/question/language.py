"""Questions about the language of a stream: "What language is this in?", "Which language is spoken?".

Whisper detects a stream's language from its first speech (manta_models/perception/asr.py) and keeps
it; the stream's status shows it, and such a question is answered from it rather than searched for
(the word "language" is in no transcript). Speech in another language later in the stream is not
detected again: each detection costs an encoder pass of its own.

Subtitles and on-screen text have no Whisper: "What language are the subtitles in?" is answered from
their words, by which language's commonest words they use (``written_language``). That tells apart
the major languages written in Latin script, and says nothing when it is unsure.
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


# The commonest short words of each language: a few lines of subtitles hold several of them. A word
# in two lists counts for both; the winner must still lead clearly.
_COMMON = {
    "en": "the and you that was for are with his they this have from what don't can't i'm it's me my "
          "we your not is of to go let",
    "fr": "le la les et est une des pas que qui dans pour sur avec ce je tu nous vous il elle mais",
    "de": "der die das und ist nicht ein eine ich du wir sie mit auf für den dem zu auch",
    "es": "el la los las y en es una que por para con del se lo pero yo tú muy está no",
    "it": "il lo gli della che non per con una sono è io tu mi ti di del questo",
    "pt": "o os as e um uma não que com para por do da em eu você está são",
    "nl": "de het een en is niet ik je we zijn met voor op van dat wat",
}
_COMMON_SETS = {code: set(words.split()) for code, words in _COMMON.items()}
WRITTEN_MIN_HITS = 3  # common words of the winner at least, and twice the runner-up's
_WORD_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def written_language(texts: list[str]) -> str | None:
    """The language code of written text (subtitles, on-screen text) by its common words; None
    when too little of it is in any one language to say."""
    hits = dict.fromkeys(_COMMON_SETS, 0)
    for text in texts:
        for word in _WORD_RE.findall(text.lower().replace("’", "'")):
            for code, common in _COMMON_SETS.items():
                hits[code] += word in common
    ranked = sorted(hits.items(), key=lambda kv: -kv[1])
    (best, n), (_, second) = ranked[0], ranked[1]
    return best if n >= WRITTEN_MIN_HITS and n >= 2 * second else None


def language_name(code: str | None) -> str | None:
    """"en" → "English"; an unknown code is shown as it is; None stays None."""
    if not code:
        return None
    return NAMES.get(code.lower(), code).replace("_", " ")
