"""The viewer pages without a browser: demo made on first start, catalogue CLI, media with Range."""

from __future__ import annotations

import subprocess
import sys

import httpx

from affectline.config import Settings
from server_harness import running_server


def test_demo_video_page_and_media(tmp_path):
    with running_server(Settings(data_dir=tmp_path / "data")) as s:
        page = httpx.get(f"{s.http_base}/watch/demo")
        assert page.status_code == 200 and "AI Act, art. 5" in page.text and "/app/viewer.js" in page.text
        info = httpx.get(f"{s.http_base}/api/videos/demo").json()
        assert info["videoId"] == "demo" and info["mediaUrl"] == "/media/demo"
        media = httpx.get(f"{s.http_base}/media/demo", headers={"range": "bytes=0-99"})
        assert media.status_code == 206 and media.headers["content-type"] == "video/webm" and len(media.content) == 100
        assert media.content[:4] == b"\x1a\x45\xdf\xa3"  # EBML header: a real WebM file
        assert httpx.get(f"{s.http_base}/watch/nope").status_code == 404


def test_videos_add_and_list(tmp_path):
    clip = tmp_path / "trailer.webm"
    clip.write_bytes(b"\x1a\x45\xdf\xa3 not really a video")
    cli = [sys.executable, "-m", "affectline", "videos"]
    data = ["--data-dir", str(tmp_path / "data")]
    added = subprocess.run([*cli, "add", str(clip), "--title", "Trailer 1", "--id", "t1", "--variant", "b", *data],
                           capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "t1\t/watch/t1"
    listed = subprocess.run([*cli, "list", *data], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "t1\tTrailer 1\tvideo/webm\t,b\t" in listed.stdout
    missing = subprocess.run([*cli, "add", str(tmp_path / "none.webm"), "--title", "x", *data],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no such file" in missing.stderr
