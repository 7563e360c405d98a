"""`affectline analyze-video`: a short recording made from real face photos (npm
@vladmandic/face-api demo, MIT; the smiling middle face of sample3.jpg as in test_browser.py)
alternating with a face-free part of the same photo -> stored timeline; bad input stores nothing;
the stdin copy of a recording is deleted on success and on failure."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from browser_support import SAMPLES
from affectline.storage.timeline_store import open_store
from recording_support import sofa_frame, write_mp4, write_webcam_mp4

pytestmark = pytest.mark.skipif(not (SAMPLES / "sample3.jpg").exists(), reason="client_js not installed")
EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    return write_webcam_mp4(tmp_path_factory.mktemp("rec") / "webcam.mp4")


@pytest.fixture
def consent(tmp_path) -> Path:
    p = tmp_path / "consent.json"
    p.write_text(json.dumps({"notice_version": "2026-11", "consented_at": "2026-12-01T10:00:00Z", "scopes": ["emotion"]}))
    return p


def cli(tmp_path: Path, *args: str, stdin: bytes | None = None, tmpdir: Path | None = None):
    env = {**os.environ, "AFFECTLINE_DATABASE_URL": "", "AFFECTLINE_DATA_DIR": str(tmp_path / "data")}
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    return subprocess.run([sys.executable, "-m", "affectline", "analyze-video", *args, "--no-progress"],
                          input=stdin, capture_output=True, env=env, timeout=120)


def db(tmp_path: Path, sql: str) -> list[tuple]:
    path = tmp_path / "data" / "affectline.db"
    if not path.exists():
        return []
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def assert_nothing_stored(tmp_path: Path) -> None:
    for table in ("sessions", "batches", "rollups", "viewers"):
        assert db(tmp_path, f"SELECT count(*) FROM {table}") in ([], [(0,)]), table


def test_recording_becomes_a_time_aligned_timeline(tmp_path, recording, consent):
    out = tmp_path / "timeline.json"
    r = cli(tmp_path, str(recording), "--video", "ad-1", "--variant", "b", "--consent-file", str(consent),
            "--offset-ms", "5000", "--out", str(out), "--viewer-id", "panel-7")
    assert r.returncode == 0, r.stderr.decode()
    sid = r.stdout.decode().split("\t")[0]
    with open_store(f"sqlite:///{tmp_path / 'data' / 'affectline.db'}") as store:
        frames = [(f.video_time_ms, f.face_present, *(f.probs or (None,) * len(EMOTIONS)))
                  for f in store.session_frames(sid)]
    assert len(frames) == 60
    times = [f[0] for f in frames]
    assert times[0] == 5000 and times == sorted(times)
    assert all(abs(t - (5000 + i * 1000 / 30)) <= 1 for i, t in enumerate(times)), "frame timestamp + offset"
    present = [bool(f[1]) for f in frames]
    assert all(present[:28]) and not any(present[32:]), present
    tops = Counter(EMOTIONS[max(range(7), key=lambda i: f[2 + i])] for f in frames if f[1])
    assert tops.most_common(1)[0][0] == "happy", tops
    session = db(tmp_path, f"SELECT video_id, variant_id, viewer_id, consent_notice_version, consent_scopes, end_reason "
                           f"FROM sessions WHERE session_id='{sid}'")
    assert session == [("ad-1", "b", "panel-7", "2026-11", '["emotion"]', "completed")]
    data = json.loads(out.read_text())
    assert data["session_id"] == sid and len(data["frames"]) == 60 and data["frames"][0]["video_time_ms"] == 5000


def test_stdin_copy_is_deleted_and_csv_written(tmp_path, recording, consent):
    spool = tmp_path / "spool"
    spool.mkdir()
    out = tmp_path / "t.csv"
    r = cli(tmp_path, "-", "--video", "ad-1", "--consent-file", str(consent), "--out", str(out),
            stdin=recording.read_bytes(), tmpdir=spool)
    assert r.returncode == 0, r.stderr.decode()
    assert [p for p in spool.iterdir() if p.name.startswith("affectline-recording-")] == []
    lines = out.read_text().splitlines()
    assert len(lines) == 61 and lines[0].startswith("frame,recording_ms,video_time_ms,face_present,dominant")
    viewer = db(tmp_path, "SELECT viewer_id FROM sessions")[0][0]
    assert viewer.startswith("rec-"), "a generated pseudonymous id"
    assert str(recording) not in r.stderr.decode() + r.stdout.decode()


@pytest.mark.parametrize("case", ["truncated", "not_a_video", "no_face", "too_big", "no_consent"])
def test_bad_input_is_one_line_error_and_nothing_stored(tmp_path, recording, consent, case):
    spool = tmp_path / "spool"
    spool.mkdir()
    args, stdin = ["--video", "ad-1", "--consent-file", str(consent)], None
    src = str(tmp_path / "input.mp4")
    if case == "truncated":
        data = recording.read_bytes()
        Path(src).write_bytes(data[: len(data) // 2])
    elif case == "not_a_video":
        Path(src).write_bytes(b"this is not a video\n" * 1000)
    elif case == "no_face":
        write_mp4(Path(src), [sofa_frame()] * 20)
    elif case == "too_big":
        src, stdin = "-", recording.read_bytes()
        args += ["--max-size-mb", "0.01"]
    else:
        consent.write_text(json.dumps({"notice_version": "x", "consented_at": "2026-12-01T10:00:00Z", "scopes": ["demographics"]}))
        src = str(recording)
    r = cli(tmp_path, src, *args, stdin=stdin, tmpdir=spool)
    err = r.stderr.decode().strip()
    assert r.returncode == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("affectline analyze-video: error: "), err
    assert_nothing_stored(tmp_path)
    assert [p for p in spool.iterdir() if p.name.startswith("affectline-recording-")] == [], "the temporary copy is deleted on failure"


def test_cancel_deletes_the_copy_and_stores_nothing(tmp_path, recording, consent):
    import signal
    import time

    spool = tmp_path / "spool"
    spool.mkdir()
    env = {**os.environ, "AFFECTLINE_DATABASE_URL": "", "AFFECTLINE_DATA_DIR": str(tmp_path / "data"),
           "TMPDIR": str(spool)}
    # Ctrl-C at a terminal: SIGINT at its default disposition, even where this test itself runs as
    # a background job of a non-interactive shell (which starts its children with SIGINT ignored).
    p = subprocess.Popen([sys.executable, "-m", "affectline", "analyze-video", "-", "--video", "v",
                          "--consent-file", str(consent), "--no-progress"], stdin=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert p.stdin is not None
    p.stdin.write(recording.read_bytes()[:4096])  # the upload is still arriving
    p.stdin.flush()
    deadline = time.monotonic() + 20
    while not any(p.name.startswith("affectline-recording-") for p in spool.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(p.name.startswith("affectline-recording-") for p in spool.iterdir()), "the copy exists while the recording arrives"
    p.send_signal(signal.SIGINT)
    p.wait(20)
    assert p.returncode == 130
    assert [p for p in spool.iterdir() if p.name.startswith("affectline-recording-")] == []
    assert_nothing_stored(tmp_path)
