"""The source policy: where a user's source may lead the service (no server-side request forgery).

Nothing here connects anywhere: addresses are literals or come from a stand-in resolver (host
names would need DNS, which these machines do not have), and the HLS whitelist test plays a
playlist from disk. The same policy against the real service runs in a network namespace
(tests/service/test_security.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streaming.settings import Settings
from streaming.source.media import MediaSource, SourceError, open_container, parse_source
from streaming.source.policy import SourcePolicy, SourceRefused

from tests.support.synth import make_wav

LOCAL = Settings(host="127.0.0.1")
EXPOSED = Settings(host="0.0.0.0")


def policy(settings: Settings = LOCAL, names: dict[str, list[str]] | None = None, **changes) -> SourcePolicy:
    settings = settings.model_copy(update=changes) if changes else settings
    names = names or {}
    return SourcePolicy.from_settings(settings, resolver=lambda h: names.get(h, [h]))


@pytest.mark.parametrize("url, why", [
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[fe80::1]/live.m3u8", "link-local"),
    ("http://[::ffff:169.254.169.254]/live.m3u8", "link-local"),  # the metadata address, mapped to IPv6
    ("http://10.0.0.5:8080/live.m3u8", "private"),
    ("https://192.168.1.1/admin.mp4", "private"),
    ("rtsp://172.16.0.9/stream", "private"),
    ("rtmp://100.64.0.1/live/x", "private"),  # shared address space (carrier NAT) is not public either
    ("tcp://0.0.0.0:9999", "not a routable"),
    ("http://224.0.0.1/x.m3u8", "multicast"),
])
def test_non_public_destinations_are_refused_with_the_setting_that_allows_them(url: str, why: str) -> None:
    for p in (policy(LOCAL), policy(EXPOSED)):
        with pytest.raises(SourceRefused, match=why) as caught:
            p.parse(url)
        assert "source_allow" in str(caught.value)


def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    names = {"cdn.example": ["93.184.216.34"], "sneaky.example": ["93.184.216.34", "169.254.169.254"]}
    assert policy(names=names).parse("https://cdn.example/live.m3u8").live
    with pytest.raises(SourceRefused, match=r"sneaky.example \(169.254.169.254\) is a link-local"):
        policy(names=names).parse("https://sneaky.example/live.m3u8")


def test_loopback_is_allowed_only_while_the_api_is_loopback_only() -> None:
    assert policy(LOCAL).parse("http://127.0.0.2:8080/live.m3u8").live  # local trials keep working
    with pytest.raises(SourceRefused, match="loopback"):
        policy(EXPOSED).parse("http://127.0.0.2:8080/live.m3u8")


def test_the_operator_allow_list_takes_networks_and_names() -> None:
    names = {"cam.lan": ["192.168.7.20"]}
    p = policy(EXPOSED, names=names, source_allow=["10.1.0.0/16", "cam.lan"])
    assert p.parse("rtsp://10.1.2.3/stream").live
    assert p.parse("rtsp://cam.lan/stream").live
    with pytest.raises(SourceRefused):
        p.parse("rtsp://10.2.0.1/stream")


def test_a_bad_allow_list_entry_fails_when_settings_load() -> None:
    with pytest.raises(ValueError, match="neither a network"):
        Settings(source_allow=["10.0.0.0/99"])


@pytest.mark.parametrize("url, option", [
    ("tcp://93.184.216.34:9999?listen=1", "listen"),  # would open a listening port on the server
    ("udp://127.0.0.1:5000?localport=22", "localport"),
    ("udp://239.1.1.1:5000?connect=1&fifo_size=100", "connect"),
    ("srt://93.184.216.34:9000?mode=caller&bindtodevice=eth0", "bindtodevice"),
])
def test_url_options_that_open_or_pick_ports_are_refused(url: str, option: str) -> None:
    with pytest.raises(SourceRefused, match=f"option\\(s\\) {option} are not allowed"):
        policy().parse(url)


def test_options_a_broadcast_needs_pass() -> None:
    assert policy().parse("udp://239.1.1.1:5000?fifo_size=1000000&overrun_nonfatal=1").live
    assert policy().parse("srt://93.184.216.34:9000?latency=200000&passphrase=0123456789ab").live


def test_listeners_bind_this_machine_or_join_a_group_and_never_name_a_destination() -> None:
    assert policy().parse("udp://127.0.0.1:5000").live
    assert policy().parse("udp://0.0.0.0:5000").live
    assert policy(EXPOSED).parse("rtp://239.0.0.7:5004").live
    assert policy().parse("srt://0.0.0.0:9000?mode=listener").live
    with pytest.raises(SourceRefused, match="address of this machine or a multicast group"):
        policy().parse("udp://93.184.216.34:5000")  # rtp would send its receiver reports there


def test_file_sources_stay_inside_the_media_roots_once_exposed(tmp_path: Path) -> None:
    inside = tmp_path / "media"
    inside.mkdir()
    clip = make_wav(inside / "clip.wav", seconds=1.0)
    elsewhere = make_wav(tmp_path / "private.wav", seconds=1.0)
    (inside / "folder.mp4").mkdir()
    link = inside / "escape.wav"
    link.symlink_to(elsewhere)

    assert policy(LOCAL).parse(str(elsewhere)).uri == str(elsewhere.resolve())  # local: as today
    exposed = policy(EXPOSED, media_roots=[inside])
    assert exposed.parse(str(clip)).uri == str(clip.resolve())
    assert exposed.parse(f"file://{clip}").uri == str(clip.resolve())
    answers = set()
    for refused in (elsewhere, link, inside / "missing.mp4", inside / "folder.mp4", Path("/etc/shadow"),
                    inside / ".." / "private.wav"):
        with pytest.raises(SourceRefused) as caught:
            exposed.parse(str(refused))
        answers.add(str(caught.value))
    assert len(answers) == 1  # missing, unreadable, outside: one answer, the API maps no disk

    with pytest.raises(SourceRefused):  # exposed without roots: no file at all
        policy(EXPOSED).parse(str(clip))


def test_every_reconnect_is_checked_again(tmp_path: Path) -> None:
    """A name may resolve elsewhere later: the policy runs before each open, not only at POST."""
    clip = make_wav(tmp_path / "clip.wav", seconds=1.0)
    calls = []

    def check(spec):
        calls.append(spec.uri)
        raise SourceRefused("source refused: test")

    source = MediaSource(parse_source(str(clip)), check=check)
    with pytest.raises(SourceError, match="refused"):
        list(source)
    assert calls == [str(clip.resolve())]


def test_ffmpeg_gets_a_protocol_whitelist_per_scheme(tmp_path: Path) -> None:
    """An HLS playlist could name ``file:``, ``concat:`` or other protocols for its segments; each
    scheme's whitelist goes to FFmpeg, which enforces it on nested opens too. Shown with a local
    file opened under the http whitelist: FFmpeg refuses it."""
    http = policy()(parse_source("http://93.184.216.34/live.m3u8"))
    assert "file" not in http["protocol_whitelist"].split(",")
    clip = make_wav(tmp_path / "clip.wav", seconds=1.0)
    spec = parse_source(str(clip))
    open_container(spec, 2.0, 2.0, policy()(spec)).close()  # its own whitelist: fine
    with pytest.raises(SourceError):
        open_container(spec, 2.0, 2.0, http).close()
