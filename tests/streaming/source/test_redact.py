"""Source URIs as shown: credentials masked, everything else kept byte for byte."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streaming.source.redact import MASK, redact_text, redact_uri, secret_key

# Secrets are upper case and everything around them lower case, so a secret can only show up in
# the output by leaking, never by coincidence.
lower = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
secret = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=16)
schemes = st.sampled_from(["rtsp", "rtsps", "srt", "http", "https", "rtmp", "udp"])
secret_names = st.sampled_from(["passphrase", "password", "pass", "pwd", "token", "access_token", "key",
                                "api_key", "apikey", "secret", "client_secret", "sig", "signature",
                                "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "auth", "Auth"])
plain_names = st.sampled_from(["latency", "mode", "streamid", "channel", "w", "format"])


@given(schemes, lower, secret, lower, lower, secret_names, secret, plain_names, lower)
def test_passwords_and_secret_parameters_never_show(scheme, user, password, host, path, name, value,
                                                     plain, kept):
    uri = f"{scheme}://{user}:{password}@{host}:554/{path}?{plain}={kept}&{name}={value}"
    shown = redact_uri(uri)
    assert password not in shown and value not in shown
    assert shown == f"{scheme}://{user}:{MASK}@{host}:554/{path}?{plain}={kept}&{name}={MASK}"


@given(st.text(max_size=200))
def test_redaction_is_idempotent_and_leaves_text_without_a_uri_alone(text):
    once = redact_uri(text)
    assert redact_uri(once) == once
    assert redact_text(redact_text(text)) == redact_text(text)
    if "://" not in text:
        assert once == text and redact_text(text) == text


@given(schemes, lower, lower, plain_names, lower)
def test_a_uri_without_credentials_is_unchanged(scheme, host, path, plain, kept):
    uri = f"{scheme}://{host}:9000/{path}?{plain}={kept}#{kept}"
    assert redact_uri(uri) == uri


@pytest.mark.parametrize("uri, shown", [
    ("https://TOKEN@github.com/x.m3u8", "https://***@github.com/x.m3u8"),  # a lone userinfo is a token
    ("rtsp://admin:p@ss/w@cam/live", "rtsp://admin:***@cam/live"),  # unencoded "@" and "/" in a password
    ("http://cdn/a.m3u8?user=a@b.com&token=T0K", "http://cdn/a.m3u8?user=a@b.com&token=***"),
    ("https://player/#access_token=ABC&t=3", "https://player/#access_token=***&t=3"),
    ("/home/me/clip.mp4", "/home/me/clip.mp4"),
    ("udp://127.0.0.1:5000", "udp://127.0.0.1:5000"),
])
def test_examples(uri, shown):
    assert redact_uri(uri) == shown


def test_uris_inside_messages_are_redacted():
    msg = "cannot open rtsp://u:HUNTER2@cam/x: Connection refused (was 'srt://h?passphrase=PHRASE')"
    assert redact_text(msg) == "cannot open rtsp://u:***@cam/x: Connection refused (was 'srt://h?passphrase=***')"


def test_secret_key_names():
    assert all(map(secret_key, ["passphrase", "Token", "X-Amz-Signature", "hdnts_auth", "streamKey"]))
    assert not any(map(secret_key, ["latency", "mode", "t", "format", "channel"]))
