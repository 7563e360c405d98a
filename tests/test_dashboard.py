"""The analyst's dashboard (/dashboard) end to end in a real headless Chromium.

A server with synthetic demo sessions (`affectline demo-data`, 40 sessions x 30 s, two
variants) and an analytics:read key; the page signs in (a wrong key is refused with a clear
message), draws the demo video's curves from the API's own numbers (read back from the
charts and compared with GetVideoCurves fetched here over native gRPC), follows the playing
and scrubbed video with the chart cursor, seeks on a chart click and a key-moment click,
puts a filter in the URL (and restores it on reload), shows the A/B and segment views, and
counts a viewer session pushed while the live panel is open. Screenshots of every view go to
artifacts/dashboard/.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from affectline.serve_process import start_serve
from api_client import GrpcPartner, frames_of
from browser_support import REPO, Browser, missing_prerequisites, write_y4m

BUNDLE = REPO / "server/affectline/static/app/dashboard.js"
_missing = missing_prerequisites() or (None if BUNDLE.exists() else "dashboard bundle not built (bash scripts/build_client.sh)")
pytestmark = pytest.mark.skipif(_missing is not None, reason=str(_missing))

SHOTS = REPO / "artifacts" / "dashboard"
VIDEO = "synthetic-demo"
SECONDS = 30


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from affectline.auth.issuing import issue_key
    from affectline.config import Settings
    from affectline.demo_data import TITLE
    from affectline.storage.api_key_store import ApiKeyStore
    from affectline.storage.database import make_engine
    from affectline.storage.timeline_store import TimelineStore
    from affectline.videos import add_video, make_demo_video

    data = tmp_path_factory.mktemp("dashboard-data")
    env = {**os.environ, "AFFECTLINE_DATABASE_URL": ""}  # the data dir's SQLite
    demo = subprocess.Popen([sys.executable, "-m", "affectline", "demo-data", "--data-dir", str(data), "--sessions", "40",
                             "--seconds", str(SECONDS), "--video", VIDEO], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    # Meanwhile: demo-data writes sessions only, so give its video a film of the same length to play.
    film = data / "media" / f"{VIDEO}.webm"
    make_demo_video(film, seconds=SECONDS)
    _, err = demo.communicate(timeout=120)
    assert demo.returncode == 0, err
    engine = make_engine(Settings(data_dir=data, database_url="").resolved_database_url)
    try:
        add_video(TimelineStore(engine), film, TITLE, VIDEO)  # as `affectline videos add` does
        key = issue_key(ApiKeyStore(engine), "dashboard-test", ["analytics:read"]).token  # as `affectline keys create`
    finally:
        engine.dispose()
    srv = start_serve(data, data / "server.log", env=env, timeout_s=60)
    partner = GrpcPartner(srv.grpc_target, api_key=key)
    yield srv, key, partner
    partner.close()
    srv.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    y4m = tmp_path_factory.mktemp("cam") / "blank.y4m"  # the bridge wants a camera file; no camera is used
    write_y4m(y4m, [(np.zeros((48, 64, 3), np.uint8), 2)])
    b = Browser(y4m)
    b.call("viewport", width=1280, height=800)
    yield b
    b.close()


def ready(browser: Browser, view: str, timeout_s: float = 30) -> None:
    browser.wait(f"window.affectlineDashboard && affectlineDashboard.view === '{view}' && "
                 "affectlineDashboard.status !== 'loading'", timeout_s)
    status = browser.js("[affectlineDashboard.status, affectlineDashboard.error]")
    assert status[0] == "ready", status


def drawn(browser: Browser, chart: str) -> dict:
    return browser.js(f"affectlineDashboard.drawn({json.dumps(chart)})")


def as_drawn(values) -> list:
    """The API's doubles as the chart holds them: NaN (suppressed) is a gap (null)."""
    return [None if math.isnan(v) else v for v in values]


def curves(partner: GrpcPartner, **filter_fields):
    from affectline.v1 import analytics_pb2

    request = analytics_pb2.GetVideoCurvesRequest(video_id=VIDEO, filter=analytics_pb2.AnalyticsFilter(**filter_fields))
    return partner.analytics.GetVideoCurves(request).curves


def assert_drawn_from(browser: Browser, c) -> None:
    emotions = drawn(browser, "emotions")
    assert emotions["x"] == [s + 0.5 for s in c.seconds]
    metrics = {m.metric: m for m in c.metrics}
    for name, line in emotions["lines"].items():
        m = metrics[name]
        assert line["values"] == as_drawn(m.mean), name
        assert line["low"] == as_drawn(m.ci_low) and line["high"] == as_drawn(m.ci_high), name
    assert drawn(browser, "valence")["lines"]["valence"]["values"] == as_drawn(metrics["valence"].mean)
    engagement = drawn(browser, "engagement")["lines"]
    assert engagement["engagement"]["values"] == as_drawn(metrics["engagement"].mean)
    assert engagement["attention share"]["values"] == as_drawn(metrics["attention"].mean)
    assert drawn(browser, "viewers")["lines"]["viewers"]["values"] == list(c.viewers)


def cursor_at(browser: Browser) -> list[float]:
    times = browser.js("affectlineDashboard.cursorTimes()")
    assert None not in times, times
    return times


def shot(browser: Browser, name: str, full_page: bool = False) -> Path:
    path = SHOTS / f"{name}.png"
    browser.call("shot", path=str(path), fullPage=full_page)
    return path


class LiveViewers(threading.Thread):
    """n viewer sessions, each pushing a 5-frame batch every 400 ms until stopped (native gRPC).
    Five of them: the live emotion mix is shown from the analytics floor (5 viewers) up."""

    def __init__(self, partner: GrpcPartner, n: int = 5) -> None:
        super().__init__(daemon=True)
        self.partner, self.n, self.stop, self.batches, self.error = partner, n, threading.Event(), 0, None

    def run(self) -> None:
        try:
            sessions = [self.partner.start(video_id=VIDEO, viewer_id=f"dashboard-test-viewer-{i}", variant_id="ab"[i % 2])
                        for i in range(self.n)]
            w, h = sessions[0].crop_spec.width, sessions[0].crop_spec.height
            rng = np.random.default_rng(0)
            while not self.stop.is_set():
                for s in sessions:
                    crops = [rng.integers(0, 255, (h, w), np.uint8) for _ in range(5)]
                    self.partner.sessions.PushCrops(s.push_request(frames_of(crops, start_ms=self.batches * 400, step_ms=80)))
                self.batches += 1
                time.sleep(0.4)
            for s in sessions:
                self.partner.sessions.EndSession(s.end_request())
        except Exception as exc:  # noqa: BLE001 - reported by the test, not lost in the thread
            self.error = exc


def test_dashboard_end_to_end(served, browser):
    srv, key, partner = served
    SHOTS.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()

    # Sign-in: a wrong key gets the UNAUTHENTICATED message, the right one the campaign list.
    browser.call("goto", url=f"{srv.base}/dashboard")
    browser.wait("window.affectlineDashboard && affectlineDashboard.status === 'signed-out'")
    wrong = "afk_" + "0" * 16 + "_" + "A" * 43  # well formed, never issued
    browser.js(f"document.getElementById('api-key').value = {json.dumps(wrong)}")
    browser.call("click", sel="#signin-button")
    browser.wait("document.getElementById('signin-error').textContent.includes('not accepted')")
    assert browser.js("sessionStorage.length") == 0, "a refused key is not kept"
    shot(browser, "signin-refused")
    browser.js(f"document.getElementById('api-key').value = {json.dumps(key)}")
    browser.call("click", sel="#signin-button")
    ready(browser, "campaigns")
    assert browser.js("Object.keys(sessionStorage).length") == 1 and key not in browser.js("location.href")
    row = browser.js(f"document.querySelector('a[data-video=\"{VIDEO}\"][data-view=\"video\"]').closest('tr').textContent")
    assert "synthetic data" in row and "40" in row, row
    shot(browser, "campaigns")

    # Video view: the curves are the API's numbers.
    browser.call("click", sel=f"a[data-video='{VIDEO}'][data-view='video']")
    ready(browser, "video")
    assert browser.js("location.search") == f"?view=video&video={VIDEO}"
    everyone = curves(partner)
    assert everyone.sessions == 40
    assert_drawn_from(browser, everyone)
    assert browser.js("document.documentElement.scrollWidth") <= 1280, "no sideways scrolling at 1280x800"

    # Playing moves every chart's cursor with the video; scrubbing too.
    browser.js("affectlineDashboard.video.play()")
    browser.wait("affectlineDashboard.video.currentTime > 1.5", 20)
    now, times = browser.js("[affectlineDashboard.video.currentTime, affectlineDashboard.cursorTimes()]")
    assert all(t is not None and abs(t - now) < 0.75 for t in times), (now, times)
    browser.js("affectlineDashboard.video.pause(); affectlineDashboard.video.currentTime = 17.3")
    browser.wait("!affectlineDashboard.video.seeking && Math.abs(affectlineDashboard.video.currentTime - 17.3) < 0.05")
    assert all(abs(t - 17.3) < 0.15 for t in cursor_at(browser))

    # A click on a chart seeks the video to the time under the mouse.
    browser.wait("affectlineDashboard.video.readyState >= 1")  # no layout shift between measuring and clicking
    browser.js("affectlineDashboard.charts.engagement.plot.over.scrollIntoView({block: 'center'})")
    box = browser.js("(() => { const r = affectlineDashboard.charts.engagement.plot.over.getBoundingClientRect();"
                     " return [r.left, r.top, r.width, r.height]; })()")
    x, y = box[0] + box[2] * 0.25, box[1] + box[3] / 2
    browser.call("clickAt", x=x, y=y)
    browser.wait("Math.abs(affectlineDashboard.video.currentTime - 7.5) < 0.6")

    # Key moments: listed with a frame of the film, and a click seeks to the moment.
    moments = browser.js("affectlineDashboard.moments")
    assert moments, "the demo plants a surprise at 10-11 s and a smile at 20-30 s (variant b)"
    target = max(range(len(moments)), key=lambda i: abs(moments[i]["startS"] - 7.5))
    browser.call("click", sel=f".moment[data-index='{target}']")
    browser.wait(f"Math.abs(affectlineDashboard.video.currentTime - {moments[target]['startS']}) < 0.1")
    browser.wait("[...document.querySelectorAll('canvas.thumb')].every((c) => c.dataset.drawn === '1')", 20)
    lit = browser.js("(() => { const c = document.querySelector('canvas.thumb');"
                     " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                     " let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i] + d[i + 1] + d[i + 2]; return s; })()")
    assert lit > 0, "the thumbnail holds a frame of the film"
    browser.js("window.scrollTo(0, 0)")
    shot(browser, "video")
    shot(browser, "video-full", full_page=True)

    # A filter goes into the URL; the curves are redrawn from the filtered answer; reload restores it.
    browser.js("document.getElementById('f-variant').value = 'b'")
    browser.call("click", sel="#apply-filters")
    ready(browser, "video")
    assert "variant=b" in browser.js("location.search")
    only_b = curves(partner, variant_ids=["b"])
    assert only_b.sessions == 20
    assert_drawn_from(browser, only_b)
    def happy(c) -> list:
        return as_drawn(next(m for m in c.metrics if m.metric == "happy").mean)

    assert happy(only_b) != happy(everyone)
    browser.call("goto", url=browser.js("location.href"))
    ready(browser, "video")
    assert browser.js("document.getElementById('f-variant').value") == "b"
    assert_drawn_from(browser, only_b)

    # A segment under the viewer floor is withheld, and the page says why.
    browser.call("goto", url=f"{srv.base}/dashboard?view=video&video={VIDEO}&region=JP")
    ready(browser, "video")
    few = curves(partner, regions=["JP"])
    assert few.suppressed and few.sessions < few.min_viewers
    reasons = browser.js("document.getElementById('suppressed').textContent")
    assert all(span.reason in reasons for span in few.suppressed), reasons
    assert_drawn_from(browser, few)

    # Report and export buttons fetch with the key (GET /api/report, /api/export) and save the file.
    browser.call("click", sel="#report-html")
    browser.wait("/Downloaded|endpoint/.test(document.getElementById('download-status').textContent)", 30)
    browser.call("click", sel="#export-csv")
    browser.wait(f"document.getElementById('download-status').textContent.includes('Downloaded {VIDEO}-curves.csv')", 30)

    # A/B: the verdict, the table and the difference band as CompareVariants sends them.
    from affectline.v1 import analytics_pb2

    browser.call("goto", url=f"{srv.base}/dashboard?view=ab&video={VIDEO}")
    ready(browser, "ab")
    cmp = partner.analytics.CompareVariants(analytics_pb2.CompareVariantsRequest(
        video_id=VIDEO, variant_a="a", variant_b="b", filter=analytics_pb2.AnalyticsFilter(), curve_metric="engagement"))
    assert browser.js("document.getElementById('ab-verdict').textContent") == cmp.verdict
    assert browser.js("document.querySelectorAll('#ab-table tbody tr').length") == len(cmp.metrics)
    if cmp.sample_size_warning:
        assert cmp.sample_size_warning in browser.js("document.getElementById('ab-warning').textContent")
    diff = drawn(browser, "difference")["lines"]["B − A"]
    assert diff["values"] == as_drawn(cmp.curve_difference.difference)
    assert diff["low"] == as_drawn(cmp.curve_difference.ci_low)
    shot(browser, "ab")
    shot(browser, "ab-full", full_page=True)

    # Segments: one line per segment shown, the others named with their reason.
    browser.call("goto", url=f"{srv.base}/dashboard?view=segments&video={VIDEO}&segment=gender")
    ready(browser, "segments")
    segs = browser.js("affectlineDashboard.answers.segments.segments")
    assert browser.js("document.querySelectorAll('#segments-table tbody tr').length") == len(segs)
    shown = [s for s in segs if not s.get("suppressed")]
    assert len(drawn(browser, "segments")["lines"]) == len(shown)
    shot(browser, "segments")
    shot(browser, "segments-full", full_page=True)

    # Live: a viewer session running now is counted within a few snapshots.
    viewer = LiveViewers(GrpcPartner(srv.grpc_target))
    viewer.start()
    try:
        browser.call("goto", url=f"{srv.base}/dashboard?view=live")
        ready(browser, "live")
        browser.wait("affectlineDashboard.live.last && affectlineDashboard.live.last.activeSessions >= 5 && "
                     "document.getElementById('live-active').textContent === String(affectlineDashboard.live.last.activeSessions)", 20)
        before = browser.js("affectlineDashboard.live.snapshots")
        browser.wait(f"affectlineDashboard.live.snapshots >= {before + 2}", 5)  # one a second
        assert browser.js(f"!!document.querySelector('.live-video[data-video=\"{VIDEO}\"]')")
        # The mix bar appears once five viewers' faces share a second (best effort on a busy host).
        try:
            browser.wait("!!document.querySelector('.live-video .mix')", 8)
        except AssertionError:
            print("live emotion mix still withheld (fewer than 5 viewers with a face in one second)")
        shot(browser, "live")
    finally:
        viewer.stop.set()
        viewer.join(10)
    assert viewer.error is None, viewer.error

    # Phone width: one column, nothing wider than the screen.
    browser.call("viewport", width=390, height=844)
    browser.call("goto", url=f"{srv.base}/dashboard?view=video&video={VIDEO}")
    ready(browser, "video")
    wide = browser.js("[...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > 391)"
                      ".slice(0, 5).map((e) => e.tagName + '.' + e.className + '#' + e.id)")
    assert browser.js("document.documentElement.scrollWidth") <= 390, wide
    shot(browser, "video-phone")
    browser.call("viewport", width=1280, height=800)
    print(f"dashboard end to end in {time.monotonic() - t0:.1f} s")
