"""The dashboard (issue 17) in a real headless Chromium: Debian's ``chromium`` driven by Playwright's
Python API through its executable path (never a browser download of Playwright's own).

What a user sees is asserted: the streams listed, the transcript in the timeline, an answer with
a citation that seeks the player, a token-protected page that asks to sign in first, an alert that
arrives without a reload. Screenshots go to each test's tmp_path.
"""

from __future__ import annotations

import io
import math
import re
import shutil
import threading
import time

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image

from actors.serve import dashboard, guard as guard_module
from actors.serve.guard import COOKIE, Guard, GuardMiddleware, LOOPBACK_NAMES, token_digest
from tests.support.helpers import free_port, media

CHROMIUM = "/usr/bin/chromium"
TOKEN = "correct-horse-battery-staple-42"
JFK = "jfk_inaugural_1961.flac"  # 11 s of speech: the question and the citation
PLANE = "airplane_flyover_field.mp4"  # 11 s of video: thumbnails
MANIFESTO = "manifesto_audiobook_titlecard.mp4"  # sent live
SAID = "ask not what your country can do for you"


@pytest.fixture(scope="module")
def browser():
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


def clock_seconds(text: str) -> float:
    """'0:02.1' or '1:02:03.4' as seconds."""
    seconds = 0.0
    for part in text.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


# -- signing in: the guard and the dashboard's routes on a plain app, without Ray ------------------

@pytest.fixture
def protected(monkeypatch):
    """The guard with a token, the dashboard's router and a stand-in stream list, served by
    uvicorn on a loopback port in this process."""
    import uvicorn

    monkeypatch.setattr(guard_module, "_guard", Guard(token_digest(TOKEN), LOOPBACK_NAMES))
    app = FastAPI()
    app.add_middleware(GuardMiddleware)
    app.include_router(dashboard.router)

    @app.get("/v1/streams")
    async def streams():
        return {"streams": [{"id": "cam", "name": "cam", "live": True, "state": "ingesting", "media_seconds": 12.0,
                             "lag_s": 0.4, "rtf": 0.3, "degraded": 0, "gaps": []}],
                "total": {"streams": 1, "ingesting": 1, "rtf": 0.3, "max_lag_s": 0.4, "failed": 0, "degraded": 0}}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_a_token_protected_dashboard_asks_to_sign_in_and_sets_a_strict_cookie(protected):
    http = httpx.Client(base_url=protected, trust_env=False, follow_redirects=False)
    page = http.get("/ui")
    assert page.status_code == 401 and 'name="token"' in page.text and 'action="/ui/login"' in page.text
    assert http.get("/ui/static/app.js").status_code == 401  # only the form is open
    assert http.get("/v1/streams").status_code == 401

    wrong = http.post("/ui/login", data={"token": "not-the-token-at-all"})
    assert wrong.status_code == 401 and "Wrong token" in wrong.text and "set-cookie" not in wrong.headers
    assert TOKEN not in wrong.text
    empty = http.post("/ui/login", content=b"", headers={"content-type": "application/x-www-form-urlencoded"})
    assert empty.status_code == 401
    assert http.post("/ui/login", content=b"token=" + b"x" * 5000).status_code == 413

    right = http.post("/ui/login", data={"token": TOKEN})
    assert right.status_code == 303 and right.headers["location"] == "/ui"
    cookie = right.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert TOKEN not in cookie  # a value derived from the token, not the token
    value = cookie.split(";")[0].split("=", 1)[1]

    signed = httpx.Client(base_url=protected, trust_env=False, cookies={COOKIE: value})
    page = signed.get("/ui")
    assert page.status_code == 200 and "<title>Manta dashboard</title>" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert signed.get("/ui/static/app.js").headers["content-type"].startswith("text/javascript")
    assert signed.get("/ui/static/..%2Fdashboard.py").status_code == 404
    assert signed.get("/v1/streams").json()["streams"][0]["id"] == "cam"
    forged = httpx.Client(base_url=protected, trust_env=False, cookies={COOKIE: value[:-1] + "0"})
    assert forged.get("/v1/streams").status_code == 401
    odd = http.get("/v1/streams", headers={"Cookie": f"{COOKIE}=caf\u00e9; other=1".encode("latin-1")})
    assert odd.status_code == 401  # a header with non-ASCII bytes is refused, not a 500
    bearer = httpx.Client(base_url=protected, trust_env=False, headers={"Authorization": f"Bearer {TOKEN}"})
    assert bearer.get("/ui").status_code == 200  # the header still works as before
    out = signed.post("/ui/logout", follow_redirects=False)
    assert out.status_code == 303 and f'{COOKIE}=""' in out.headers["set-cookie"]


def test_the_browser_signs_in_then_sees_the_dashboard(protected, browser, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(f"{protected}/ui")
    expect(page.get_by_label("API token")).to_be_visible()
    page.screenshot(path=str(tmp_path / "login.png"))
    page.get_by_label("API token").fill("wrong-token-wrong-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong token.")
    page.get_by_label("API token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Streams")).to_be_visible()
    expect(page.get_by_role("button", name="cam")).to_be_visible()  # fetch() sent the cookie
    expect(page.locator("#streams tbody")).to_contain_text("ingesting")
    page.screenshot(path=str(tmp_path / "signed-in.png"))
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies[COOKIE]["httpOnly"] and cookies[COOKIE]["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script can read it
    page.close()


def test_the_media_route_serves_only_what_the_source_policy_accepts_now(monkeypatch, tmp_path):
    """A stream's file is checked again when it is served: media_roots set since, or a file swapped
    for a link out of them, gets the policy's one answer (403), never the bytes."""
    from fastapi.testclient import TestClient

    from streaming.settings import Settings
    from streaming.source.policy import GENERIC_FILE_REFUSAL, SourcePolicy

    roots = tmp_path / "media"
    roots.mkdir()
    inside = roots / "clip.flac"
    inside.write_bytes(bytes(range(256)) * 8)
    outside = tmp_path / "secret.flac"
    outside.write_bytes(b"not for you")
    (roots / "link.flac").symlink_to(outside)
    recordings = {"in": {"live": False, "path": str(inside)}, "out": {"live": False, "path": str(outside)},
                  "link": {"live": False, "path": str(roots / "link.flac")},
                  "gone": {"live": False, "path": str(roots / "gone.flac")},
                  "web": {"live": False, "path": None}, "cam": {"live": True, "path": None}}

    async def fake_call(stream_id, method, *args):
        assert method == "recording"
        return recordings[stream_id]

    settings = Settings()
    monkeypatch.setattr(dashboard, "_call", fake_call)
    monkeypatch.setattr(dashboard, "_replica", None)  # restored after the test, like _call
    dashboard.install(settings, SourcePolicy(media_roots=(roots.resolve(),)), None)
    app = FastAPI()
    app.include_router(dashboard.router)
    http = TestClient(app)
    r = http.get("/v1/streams/in/media", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == inside.read_bytes()[10:20]
    for sid in ("out", "link"):
        r = http.get(f"/v1/streams/{sid}/media")
        assert r.status_code == 403 and r.json()["detail"] == GENERIC_FILE_REFUSAL, sid
    assert http.get("/v1/streams/gone/media").status_code == 403  # missing looks like refused
    r = http.get("/v1/streams/web/media")
    assert r.status_code == 409 and "not recorded from a local file" in r.json()["detail"]
    r = http.get("/v1/streams/cam/media")
    assert r.status_code == 409 and "live" in r.json()["detail"]


# -- the real service ------------------------------------------------------------------------------

def jpeg_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "JPEG"
        return img.size


@pytest.mark.slow
def test_media_and_thumbnail_routes(service):
    clip, film = media(JFK), media(PLANE)
    jfk = service.add(str(clip), name="dash-media-jfk")
    plane = service.add(str(film), name="dash-media-plane")
    live = service.add(f"udp://127.0.0.1:{free_port()}", name="dash-media-live")
    data = clip.read_bytes()
    r = service.get(f"/v1/streams/{jfk}/media", headers={"Range": "bytes=100-1099"})
    assert r.status_code == 206 and r.content == data[100:1100]
    assert r.headers["content-range"] == f"bytes 100-1099/{len(data)}"
    assert r.headers["content-type"].startswith("audio/flac")
    whole = service.get(f"/v1/streams/{jfk}/media")
    assert whole.status_code == 200 and whole.content == data and whole.headers["accept-ranges"] == "bytes"
    r = service.get(f"/v1/streams/{plane}/media", headers={"Range": f"bytes={film.stat().st_size - 10}-"})
    assert r.status_code == 206 and r.content == film.read_bytes()[-10:]

    r = service.get(f"/v1/streams/{plane}/thumbnail", params={"at": 5})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert jpeg_size(r.content) == (320, 180) and abs(float(r.headers["x-manta-frame-time"]) - 5) < 0.1
    for bad in ("-1", "nan", "inf", "1e300", "soon"):
        r = service.get(f"/v1/streams/{plane}/thumbnail", params={"at": bad})
        assert r.status_code == 422 and "Traceback" not in r.text, (bad, r.text)
    assert service.get(f"/v1/streams/{plane}/thumbnail").status_code == 422  # at is required
    r = service.get(f"/v1/streams/{jfk}/thumbnail", params={"at": 1})
    assert r.status_code == 404 and "no video" in r.json()["detail"]
    for route in ("media", "thumbnail?at=1"):
        r = service.get(f"/v1/streams/no-such-stream/{route}")
        assert r.status_code == 404 and "unknown stream" in r.json()["detail"]
    r = service.get(f"/v1/streams/{live}/media")
    assert r.status_code == 409 and "live" in r.json()["detail"]
    r = service.get(f"/v1/streams/{live}/thumbnail", params={"at": 0})
    assert r.status_code == 404 and "kept no thumbnails" in r.json()["detail"]


@pytest.mark.slow
def test_the_dashboard_lists_answers_and_plays_the_cited_moment(service, browser, tmp_path):
    from playwright.sync_api import expect

    ids = service.ingest_all({"dash-jfk": JFK, "dash-plane": PLANE})
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    t0 = time.monotonic()
    page.goto(f"{service.base_url}/ui")
    rows = page.locator("#streams tbody")
    expect(rows.get_by_role("button", name="dash-jfk")).to_be_visible()
    expect(rows.locator("tr", has_text="dash-plane")).to_contain_text("finished")

    # The timeline: the transcript, and thumbnails of the sampled frames (a file's, decoded again).
    rows.get_by_role("button", name="dash-plane").click()
    thumb = page.locator("#timeline img").first
    expect(thumb).to_be_visible(timeout=30_000)
    page.wait_for_function("() => { const i = document.querySelector('#timeline img');"
                           " return i && i.complete && i.naturalWidth === 320; }", timeout=30_000)
    expect(page.locator("#timeline .badge.seen").first).to_be_visible()
    page.screenshot(path=str(tmp_path / "timeline-frames.png"), full_page=True)
    rows.get_by_role("button", name="dash-jfk").click()
    expect(page.locator("#timeline")).to_contain_text(re.compile(SAID, re.I), timeout=30_000)
    # One voice throughout (resemblyzer, installed by the test command): its segments say whose.
    expect(page.locator("#timeline .badge.said", has_text="said · S1").first).to_be_visible()
    expect(page.locator("#timeline .badge.said", has_text="S2")).to_have_count(0)
    player = page.locator("#player")
    expect(player).to_be_visible()
    assert player.get_attribute("src") == f"/v1/streams/{ids['dash-jfk']}/media"
    # Every seek the player makes is recorded where it lands: the test does not depend on playback.
    page.evaluate("""() => { window.__seeks = [];
        document.getElementById('player').addEventListener('seeked', (e) => window.__seeks.push(e.target.currentTime)); }""")
    page.locator("#timeline button.time", has_text=re.compile(r"^0:07")).first.click()  # a time in the timeline
    page.wait_for_function("() => window.__seeks.some((t) => Math.abs(t - 7.4) < 0.6)", timeout=15_000)

    # Ask: the answer streams in, then its sources; a click plays the recording from there.
    page.get_by_label("Question").fill("What does the speaker ask Americans to do?")
    page.get_by_label("Search in").select_option("dash-jfk")
    page.get_by_role("button", name="Ask", exact=True).click()
    citation = page.locator("#citations button").first
    expect(citation).to_be_visible(timeout=180_000)
    expect(page.locator("#answer")).to_contain_text(re.compile(r"\w"))
    label = citation.get_attribute("aria-label")
    match = re.fullmatch(r"Play dash-jfk from ([\d:.]+)", label or "")
    assert match, label
    start = clock_seconds(match.group(1))
    assert 0 <= start < 11
    page.evaluate("() => { const p = document.getElementById('player'); p.pause(); p.currentTime = 9.5; }")
    page.wait_for_function("() => window.__seeks.some((t) => t > 9.4)", timeout=15_000)
    page.evaluate("window.__seeks = []")
    citation.click()  # from 9.5 s back to where the cited words begin
    page.wait_for_function(f"() => window.__seeks.some((t) => Math.abs(t - {start}) < 0.15)", timeout=15_000)
    # Debian's Chromium decodes the FLAC: metadata loaded, no media error, and it plays on from there.
    assert page.evaluate("document.getElementById('player').readyState") >= 1
    assert page.evaluate("document.getElementById('player').error") is None
    page.screenshot(path=str(tmp_path / "cited.png"), full_page=True)
    # The overview (README's docs/dashboard.png): a video stream's timeline beside the answer.
    rows.get_by_role("button", name="dash-plane").click()
    page.wait_for_function("() => [...document.querySelectorAll('#timeline img')]"
                           ".filter((i) => i.complete && i.naturalWidth === 320).length >= 2", timeout=30_000)
    # Debian's Chromium decodes the H.264 film too: its first frame is on screen.
    page.wait_for_function("() => document.getElementById('player').readyState >= 2", timeout=15_000)
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    print(f"dashboard flow in the browser: {time.monotonic() - t0:.1f} s; screenshots in {tmp_path}")
    page.close()


@pytest.mark.slow
def test_a_live_stream_shows_its_nearest_kept_frames(service, browser, tmp_path):
    """A live source cannot be rewound: its pipeline keeps recent thumbnails, and a time of its
    timeline (as a citation would) shows the nearest ones instead of playing."""
    from playwright.sync_api import expect

    from streaming.tools import broadcast

    # 88 s of 320x180 video at broadcast pace: frames keep coming while the page looks at them.
    with broadcast.http_ts(media(MANIFESTO), free_port(), speed=1.0, max_seconds=60) as b:
        assert b.ready.wait(30)
        sid = service.add(b.url, name="dash-live-frames")
        deadline = time.monotonic() + 120
        while len(service.get(f"/v1/streams/{sid}/frames").json()["frames"]) < 4:
            assert time.monotonic() < deadline, service.get(f"/v1/streams/{sid}").json()
            time.sleep(0.5)
        first = service.get(f"/v1/streams/{sid}/frames").json()["frames"][1]["t"]
        r = service.get(f"/v1/streams/{sid}/thumbnail", params={"at": first + 0.2})
        assert r.status_code == 200 and jpeg_size(r.content) == (320, 180)
        assert abs(float(r.headers["x-manta-frame-time"]) - first) <= 1.0  # one kept per second
        assert r.headers["cache-control"] == "no-store"
        assert service.get(f"/v1/streams/{sid}/media").status_code == 409

        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{service.base_url}/ui")
        page.locator("#streams tbody").get_by_role("button", name="dash-live-frames").click()
        # What was just said, before it is final: one italic entry that grows and is replaced by
        # the committed transcript (issue 18).
        heard = page.locator("#timeline li.provisional")
        expect(heard).to_have_count(1, timeout=20_000)
        expect(heard.locator(".badge")).to_have_text("just said · provisional")
        assert heard.locator(".text").inner_text().strip()
        assert heard.evaluate("(li) => getComputedStyle(li.querySelector('.text')).fontStyle") == "italic"
        expect(page.locator("#player")).to_be_hidden()
        expect(page.locator("#player-note")).to_contain_text("live")
        page.locator("#timeline button.time").first.click()
        frames = page.locator("#source-frames img")
        expect(frames.first).to_be_visible(timeout=15_000)
        page.wait_for_function("() => [...document.querySelectorAll('#source-frames img')]"
                               ".some((i) => i.complete && i.naturalWidth === 320)", timeout=15_000)
        page.screenshot(path=str(tmp_path / "live-frames.png"), full_page=True)
        page.close()


# -- monitoring: watches and alerts on the page ----------------------------------------------------

@pytest.mark.slow
def test_watches_from_the_page_and_a_new_alert_without_a_reload(service, browser, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{service.base_url}/ui")
    # The service is shared with other test modules, so earlier alerts may exist: the feed shows them,
    # or says there are none.
    if service.get("/v1/alerts").json()["alerts"]:
        expect(page.locator("#alerts li").first).to_be_visible(timeout=15_000)
    else:
        expect(page.locator("#alerts-state")).to_contain_text("No alerts yet", timeout=15_000)

    # A watch created and removed from the page.
    page.get_by_label("Watch for").fill("a dashboard test watch")
    page.get_by_role("button", name="Add watch").click()
    expect(page.locator("#watches")).to_contain_text("a dashboard test watch")
    assert any(w["text"] == "a dashboard test watch" for w in service.get("/v1/watches").json()["watches"])
    page.get_by_role("button", name="Remove the watch “a dashboard test watch”").click()
    expect(page.locator("#watches")).not_to_contain_text("a dashboard test watch")
    assert not any(w["text"] == "a dashboard test watch" for w in service.get("/v1/watches").json()["watches"])

    # An alert raised while the page is open arrives through the feed, with no reload.
    r = service.post("/v1/watches", json={"text": "ask what you can do for your country", "modality": "said",
                                          "streams": ["dash-alert"]})
    assert r.status_code == 201, r.text
    watch = r.json()["watch"]["id"]
    try:
        page.evaluate("window.__notReloaded = true")
        service.add(str(media(JFK)), name="dash-alert")
        alert = page.locator("#alerts li", has_text="dash-alert")
        expect(alert.first).to_be_visible(timeout=240_000)
        expect(alert.first).to_contain_text("ask what you can do for your country")
        assert page.evaluate("window.__notReloaded") is True
        page.screenshot(path=str(tmp_path / "alert.png"), full_page=True)
    finally:
        service.delete(f"/v1/watches/{watch}")
        page.close()


def test_clock_seconds_reads_the_page_times():
    assert clock_seconds("0:02.1") == pytest.approx(2.1)
    assert clock_seconds("1:02:03.5") == pytest.approx(3723.5)
    assert math.isclose(clock_seconds("12:00.0"), 720.0)
