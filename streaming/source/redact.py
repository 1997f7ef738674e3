"""Source URIs as they may be shown: status, listings, error messages and logs.

A camera's URL often carries its credentials (``rtsp://admin:pw@cam/…``, SRT's ``?passphrase=``,
a signed HLS URL's ``?token=``/``&sig=``). Anyone who may read the API or the logs must not learn
them, so every URI shown goes through ``redact_uri``; only the stream's checkpoint keeps the real one
(a restart has to open the source again). Over-redacting costs nothing: the result is never opened.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"
# Query keys are compared lower-cased with "-", "_" and "." removed ("X-Amz-Signature" → "xamzsignature").
SECRET_KEYS = frozenset({"key", "sig", "pass", "pwd", "auth", "code", "session", "sessionid", "hmac", "jwt",
                         "apikey", "accesskey", "privatekey", "secretkey", "streamkey"})
SECRET_PARTS = ("pass", "pwd", "token", "secret", "signature", "auth", "credential", "apikey")
# A URI inside free text (an error message, a log line): scheme:// up to a space, quote or bracket.
URI_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")


def secret_key(name: str) -> bool:
    """Whether a query parameter's name looks like it holds a credential."""
    k = re.sub(r"[-_.\s]", "", unquote(name)).lower()
    return k in SECRET_KEYS or k.endswith(("key", "sig")) or any(p in k for p in SECRET_PARTS)


# A query or fragment parameter: after "?", "&", ";" or "#", a name, "=", and its value.
PARAM = re.compile(r"(?<=[?&;#])([^=&;#?/]+)=([^&;#]*)")


def _redact_params(tail: str) -> str:
    # Parameter by parameter, keeping the others byte for byte (re-encoding would change what is shown).
    return PARAM.sub(lambda m: f"{m.group(1)}={MASK}" if secret_key(m.group(1)) else m.group(0), tail)


def redact_uri(uri: str) -> str:
    """``uri`` with its userinfo password and secret-looking query (or fragment) values replaced by
    ``***``. A userinfo without a password goes whole (``https://TOKEN@host`` is a common way to pass
    a token). A plain file path comes back unchanged."""
    if not isinstance(uri, str) or "://" not in uri:
        return uri
    scheme, rest = uri.split("://", 1)
    # Userinfo ends at the last "@" before the query. RFC 3986 also ends the authority at "/", but a
    # password with an unencoded "/" must not show either: a path with an "@" is only over-masked.
    query_at = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, query_at)
    if at >= 0:
        user, colon, _ = rest[:at].partition(":")
        rest = (f"{user}:{MASK}" if colon and "/" not in user else MASK) + rest[at:]
    return f"{scheme}://{_redact_params(rest)}"


def redact_text(text: str) -> str:
    """Every URI inside ``text`` redacted (an error message or log line that quotes a source)."""
    if not isinstance(text, str) or "://" not in text:
        return text
    return URI_IN_TEXT.sub(lambda m: redact_uri(m.group(0)), text)
