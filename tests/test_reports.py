"""Reports (docs/reports.md): `affectline report` writes the demo campaign's HTML and PDF, and
`GET /api/report` serves them behind an analytics:read key.

The campaign is `affectline demo-data`'s generator at a small size (40 sessions x 30 s, two
variants; b happier in seconds 20-30) with a film of the same length, plus a second video so
that norms exist. The PDF's pages are rendered to PNG (pdftoppm) and must each carry content;
the numbers the charts plot (the report's JSON data block) must equal GetVideoCurves',
CompareVariants' and GetKeyMoments' answers over native gRPC, and the PDF's text must hold the
headline figures as GetNorms gives them. Page images go to artifacts/reports/.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from affectline.config import Settings, settings_from_env
from affectline.demo_data import TITLE, DemoSpec, write_demo
from affectline.reports.params import parse_filter, report_request, split_pairs
from affectline.storage.timeline_store import open_store
from affectline.v1 import analytics_pb2 as pb
from affectline.videos import add_video, make_demo_video

from api_client import GrpcPartner, bearer
from server_harness import running_server

REPO = Path(__file__).resolve().parents[1]
PAGES = REPO / "artifacts" / "reports"
VIDEO = "synthetic-demo"
SECONDS = 30
POPPLER = shutil.which("pdftoppm") and shutil.which("pdftotext")
needs_poppler = pytest.mark.skipif(not POPPLER, reason="pdftoppm/pdftotext missing (poppler-utils: scripts/system_deps.sh)")


def _weasyprint_missing() -> str | None:
    try:
        import weasyprint  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"WeasyPrint cannot run here ({exc}): scripts/system_deps.sh reports"
    return None


needs_weasyprint = pytest.mark.skipif(_weasyprint_missing() is not None, reason=str(_weasyprint_missing()))


@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> Path:
    """A data dir holding the demo campaign (sessions, film) and a second video for the norms."""
    data = tmp_path_factory.mktemp("report-data")
    with open_store(f"sqlite:///{data / 'affectline.db'}", migrate=True) as store:
        write_demo(store, DemoSpec(sessions=40, seconds=SECONDS, fps=10.0, video_id=VIDEO, seed=5))
        write_demo(store, DemoSpec(sessions=10, seconds=20, fps=4.0, video_id="synthetic-other", seed=6))
        film = data / "media" / f"{VIDEO}.webm"
        make_demo_video(film, seconds=SECONDS, fps=10)
        add_video(store, film, TITLE, VIDEO)  # as `affectline videos add` does
    return data


def report_cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AFFECTLINE_DATABASE_URL": ""}  # the data dir's SQLite
    return subprocess.run([sys.executable, "-m", "affectline", "report", *args, "--data-dir", str(data)],
                          capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture(scope="module")
def files(campaign) -> dict[str, Path]:
    out = {fmt: campaign / f"report.{fmt}" for fmt in ("html", "pdf")}
    for path in out.values():
        done = report_cli(campaign, VIDEO, "--out", str(path))
        assert done.returncode == 0, done.stderr
        assert f"wrote {path}" in done.stdout
    return out


@pytest.fixture(scope="module")
def server(campaign):
    with running_server(Settings(data_dir=campaign, database_url="")) as s:
        yield s


def data_block(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S)
    assert m, "the report embeds its plotted numbers"
    return json.loads(m.group(1))


def same(plotted: list, api) -> None:
    """Plotted values (None for gaps) equal the API's (NaN for gaps), exactly."""
    expected = [None if math.isnan(v) else v for v in api]
    assert plotted == expected


def lines_of(chart: dict) -> dict[str, dict]:
    return {line["label"]: line for panel in chart["panels"] for line in panel["lines"]}


@needs_weasyprint
def test_html_report_is_self_contained_and_plots_the_apis_numbers(files, server) -> None:
    html = files["html"].read_text()
    # Self-contained: no scripts to run, nothing fetched from anywhere.
    assert not re.search(r"<script(?![^>]*type=\"application/json\")", html)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert not re.search(r"<link|@import|url\(", html, re.I)
    assert all(src.startswith("data:image/") for src in re.findall(r'<img[^>]*\ssrc="([^"]*)"', html))
    assert html.count('class="thumb"') >= 1, "key moments carry frames of the film"
    assert "SYNTHETIC DATA" in html and data_block(html)["synthetic"] is True

    data = data_block(html)
    partner = GrpcPartner(server.grpc_target, api_key=server.analyst_key)
    try:
        curves = partner.analytics.GetVideoCurves(pb.GetVideoCurvesRequest(video_id=VIDEO)).curves
        moments = partner.analytics.GetKeyMoments(pb.GetKeyMomentsRequest(video_id=VIDEO))
        ab = partner.analytics.CompareVariants(pb.CompareVariantsRequest(video_id=VIDEO, variant_a="a", variant_b="b",
                                                                         curve_metric="engagement"))
        norms = partner.analytics.GetNorms(pb.GetNormsRequest(video_id=VIDEO)).norms
    finally:
        partner.close()
    metric = {m.metric: m for m in curves.metrics}
    assert data["sessions"] == curves.sessions == 40
    for key in ("emotions", "engagement"):
        chart = data["charts"][key]
        assert chart["seconds"] == list(curves.seconds) == list(range(SECONDS))
        assert chart["suppressed"] == [[s.start_s, s.end_s] for s in curves.suppressed]
    emotions = lines_of(data["charts"]["emotions"])
    assert set(emotions) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    for name, line in emotions.items():
        same(line["values"], metric[name].mean)
        same(line["low"], metric[name].ci_low)
        same(line["high"], metric[name].ci_high)
    other = lines_of(data["charts"]["engagement"])
    for label, name in (("valence", "valence"), ("engagement", "engagement"), ("attention share", "attention")):
        same(other[label]["values"], metric[name].mean)
        same(other[label]["low"], metric[name].ci_low)
    assert other["viewers"]["values"] == [float(v) for v in curves.viewers]

    # Key moments and the A/B section: the answers as given, and the difference band as plotted.
    assert moments.moments, "the demo plants a surprise at 10.5 s"
    assert len(data["moments"]) == len(moments.moments)
    assert {(m["metric"], m["kind"], int(m["peak_s"])) for m in data["moments"]} == \
        {(m.metric, m.kind, m.peak_s) for m in moments.moments}
    assert data["ab"]["verdict"] == ab.verdict and ab.verdict in html.replace("&#39;", "'")
    band = lines_of(data["charts"]["ab"])["difference"]
    same(band["values"], ab.curve_difference.difference)
    same(band["low"], ab.curve_difference.ci_low)
    same(band["high"], ab.curve_difference.ci_high)
    assert [(h["metric"], h["score"], h["percentile"]) for h in data["headline"]] == \
        [(n.metric, n.score, n.percentile if n.HasField("percentile") else None) for n in norms]


@needs_weasyprint
@needs_poppler
def test_pdf_pages_all_carry_content_and_the_headline_figures(files, server) -> None:
    pdf = files["pdf"]
    assert pdf.read_bytes().startswith(b"%PDF-")
    out = pdf.parent / "pages"
    out.mkdir(exist_ok=True)
    subprocess.run(["pdftoppm", "-r", "60", "-png", str(pdf), str(out / "page")], check=True, timeout=60)
    pages = sorted(out.glob("page-*.png"))
    assert len(pages) >= 3
    for page in pages:
        gray = np.asarray(Image.open(page).convert("L"))
        inked = (gray < 200).mean()
        assert inked > 0.01, f"{page.name} is (nearly) blank: {inked:.4f} of its pixels inked"
    PAGES.mkdir(parents=True, exist_ok=True)
    for page in pages:
        shutil.copy(page, PAGES / page.name)

    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    partner = GrpcPartner(server.grpc_target, api_key=server.analyst_key)
    try:
        norms = partner.analytics.GetNorms(pb.GetNormsRequest(video_id=VIDEO)).norms
        campaigns = partner.analytics.ListCampaigns(pb.ListCampaignsRequest()).campaigns
    finally:
        partner.close()
    assert [n.metric for n in norms] == ["engagement", "sentiment", "attention_share", "expressiveness"]
    for n in norms:  # docs/reports.md, "Numbers": scores to 3 decimals, percentiles to whole percents
        row = re.search(rf"^[ \t]*{n.metric.replace('_', ' ')}[ \t].*$", text, re.M)
        assert row, f"no headline row for {n.metric}"
        assert f"{n.score:.3f}" in row.group(0)
        assert n.HasField("percentile") and f"{n.percentile:.0f} %" in row.group(0)
        assert n.norm_size == 1
    viewers = next(c for c in campaigns if c.video_id == VIDEO).variants
    assert ", ".join(f"{v.variant_id}: {v.viewers}" for v in viewers) in text  # "a: 20, b: 20"
    assert "SYNTHETIC DATA" in text and "Article 5(1)(f)" in text


@needs_weasyprint
def test_report_route_needs_an_analytics_key_and_serves_both_formats(server) -> None:
    url = f"{server.http_base}/api/report"
    params = {"video": VIDEO, "format": "html", "region": "US,DE", "start": "5", "end": "25"}
    anonymous = httpx.get(url, params=params, timeout=60)
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "UNAUTHENTICATED"
    writer = httpx.get(url, params=params, headers=bearer(server.create_key("sessions:write")), timeout=60)
    assert writer.status_code == 403 and writer.json()["code"] == "PERMISSION_DENIED"

    key = bearer(server.analyst_key)
    html = httpx.get(url, params=params, headers=key, timeout=120)
    assert html.status_code == 200, html.text
    assert html.headers["content-type"] == "text/html; charset=utf-8"
    assert html.headers["content-disposition"] == f'attachment; filename="{VIDEO}-report.html"'
    assert "default-src 'none'" in html.headers["content-security-policy"]
    data = data_block(html.text)
    assert data["filter"] == {"regions": ["US", "DE"], "start_s": 5, "end_s": 25}
    assert data["charts"]["emotions"]["seconds"] == list(range(5, 25))

    pdf = httpx.get(url, params={"video": VIDEO, "format": "pdf", "a": "b", "b": "a"}, headers=key, timeout=120)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")

    unknown = httpx.get(url, params={"video": "no-such-video"}, headers=key, timeout=60)
    assert unknown.status_code == 404 and unknown.json()["code"] == "NOT_FOUND"
    for bad, says in (({"video": VIDEO, "format": "docx"}, "format must be html or pdf"),
                      ({"video": VIDEO, "passes": "most"}, "passes='most'"),
                      ({"video": VIDEO, "emotions": "joy"}, "unknown emotion 'joy'"),
                      ({"video": VIDEO, "a": "a"}, "give both or neither")):
        answer = httpx.get(url, params=bad, headers=key, timeout=60)
        assert answer.status_code == 400 and says in answer.json()["message"], answer.text


def test_cli_errors_are_one_line(campaign, tmp_path, capsys) -> None:
    from affectline.cli import main

    for args, says in (((VIDEO, "--out", str(tmp_path / "r.docx")), "must end in .html or .pdf"),
                       (("no-such-video", "--out", str(tmp_path / "r.html")), "unknown video 'no-such-video'"),
                       ((VIDEO, "--filter", "colour=red", "--out", str(tmp_path / "r.html")), "unknown filter 'colour'"),
                       ((VIDEO, "--compare", "a", "a", "--out", str(tmp_path / "r.html")), "two different variants")):
        assert main(["report", *args, "--data-dir", str(campaign), "--database-url", ""]) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not list(tmp_path.iterdir())


def test_filter_pairs_read_as_the_dashboards_url() -> None:
    f = parse_filter(split_pairs(["variant=b", "age=25-34,35-44", "age=35-44", "gender=f", "region=DE",
                                  "emotions=happy", "start=10", "end=30", "from=2026-11-01", "to=2026-11-30",
                                  "minAttention=0.5", "passes=all"]))
    assert list(f.variant_ids) == ["b"] and list(f.age_bands) == ["25-34", "35-44"]
    assert (f.start_s, f.end_s, f.min_attention_share, f.passes) == (10, 30, 0.5, pb.PASS_SELECTION_ALL)
    assert f.sessions_from.ToJsonString() == "2026-11-01T00:00:00Z"
    assert f.sessions_to.ToJsonString() == "2026-12-01T00:00:00Z"  # "to" is the whole day
    r = report_request("v", [], variant="a", compare=("a", "b"))
    assert list(r.filter.variant_ids) == ["a"] and r.compare == ("a", "b")
    for bad in (["start=-1"], ["from=yesterday"], ["minAttention=2"], ["nokey"]):
        with pytest.raises(ValueError):
            parse_filter(split_pairs(bad))


@pytest.mark.parametrize("failure", ["no package", "no pango"])
def test_pdf_without_weasyprint_or_pango_names_the_packages(failure, monkeypatch, tmp_path) -> None:
    from affectline.reports import PdfUnavailable
    from affectline.reports.render import render_pdf

    for name in [m for m in sys.modules if m == "weasyprint" or m.startswith("weasyprint.")]:
        monkeypatch.delitem(sys.modules, name)
    if failure == "no package":
        monkeypatch.setitem(sys.modules, "weasyprint", None)  # import fails as without the package
    else:  # what WeasyPrint raises when it cannot dlopen Pango
        (tmp_path / "weasyprint").mkdir()
        (tmp_path / "weasyprint" / "__init__.py").write_text("raise OSError(\"cannot load library 'libpango-1.0-0'\")\n")
        monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PdfUnavailable, match="libpango-1.0-0 libpangoft2-1.0-0"):
        render_pdf("<p>x</p>")


def test_demo_campaign_on_first_start_is_synthetic_and_once(tmp_path) -> None:
    from affectline.demo_campaign import VIDEO_ID, ensure_demo_campaign

    assert settings_from_env({}).demo_data == 1
    assert settings_from_env({"AFFECTLINE_DEMO_DATA": "0"}).demo_data == 0
    with open_store(f"sqlite:///{tmp_path / 'a.db'}", migrate=True) as store:
        assert ensure_demo_campaign(store, tmp_path, sessions=10) == 10
        assert ensure_demo_campaign(store, tmp_path, sessions=10) == 0  # a later start adds nothing
        video = store.get_video(VIDEO_ID)
        assert "synthetic" in video["title"].lower() and video["variants"] == ["", "a", "b"]
        assert Path(video["media_path"]).is_file()
        assert store.count_sessions(VIDEO_ID, "a") == store.count_sessions(VIDEO_ID, "b") == 5
        with store._engine.connect() as conn:
            viewers = [r[0] for r in conn.exec_driver_sql("SELECT viewer_id FROM sessions")]
        assert len(viewers) == 10 and all(v.startswith("synthetic-") for v in viewers)


def test_report_request_needs_a_video() -> None:
    with pytest.raises(ValueError, match="video id"):
        report_request("", [])
    with pytest.raises(ValueError, match="two different variants"):
        report_request("v", [], compare=("a", "a"))
