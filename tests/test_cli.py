"""The `affectline` command line, run as a user would: real processes, real ports."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from PIL import Image

from conftest import DEFAULT_START_ENV, REPO_ROOT
from db_backends import pg_admin_url, pg_migrated_url  # noqa: F401

from affectline.models.registry import DEFAULT_MODEL, ModelRegistry
from affectline.serve_process import ServeProcess, free_port, free_ports, start_serve

AFFECTLINE = [sys.executable, "-m", "affectline"]


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*AFFECTLINE, *args], capture_output=True, text=True, timeout=120, **kw)


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"], ["db", "upgrade", "--help"], ["classify", "--help"]])
def test_help_everywhere(args):
    result = run(*args)
    assert result.returncode == 0 and "usage: affectline" in result.stdout


def test_serve_help_and_the_configuration_reference_document_every_env_var():
    from affectline.config import env_table

    out = run("serve", "--help").stdout
    reference = (REPO_ROOT / "docs" / "configuration.md").read_text()
    for name, _default in env_table():
        assert name in out, name
        assert f"`{name}`" in reference, f"{name} is missing from docs/configuration.md"


def test_db_upgrade_then_current(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    up = run("db", "upgrade", "--database-url", url)
    assert up.returncode == 0, up.stderr
    assert "(empty) ->" in up.stdout
    current = run("db", "current", "--database-url", url)
    assert current.returncode == 0 and current.stdout.strip() in up.stdout


def test_db_partitions_lists_and_makes_days_on_postgresql(pg_migrated_url, tmp_path):
    from datetime import UTC, datetime, timedelta

    days = [datetime.now(UTC).date() + timedelta(days=d) for d in range(4)]
    made = run("db", "partitions", "--ahead", "3", "--database-url", pg_migrated_url)
    assert made.returncode == 0, made.stderr
    listed = [line.split()[0] for line in made.stdout.splitlines()[1:]]
    assert {f"batches_d{d:%Y%m%d}" for d in days} | {"batches_default"} <= set(listed)
    sqlite = run("db", "partitions", "--database-url", f"sqlite:///{tmp_path / 'a.db'}")
    assert sqlite.returncode == 2 and "PostgreSQL only" in sqlite.stderr and "Traceback" not in sqlite.stderr


def test_bad_database_url_is_a_clear_error(tmp_path):
    result = run("db", "upgrade", "--database-url", "nosuchdb://x")
    assert result.returncode == 2 and "error" in result.stderr and "Traceback" not in result.stderr


def test_classify_prints_probabilities_as_json_and_csv(tmp_path, fer_faces):
    Image.fromarray(fer_faces["happy"][0]).save(tmp_path / "smile.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    result = run("classify", str(tmp_path / "smile.png"), str(tmp_path / "broken.png"), "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = {Path(r["file"]).name: r for r in json.loads(result.stdout)}
    assert rows["smile.png"]["label"] == "happy"
    assert sum(rows["smile.png"]["probs"].values()) == pytest.approx(1.0, abs=1e-4)
    assert rows["broken.png"]["error"]
    latest = ModelRegistry().get(DEFAULT_MODEL).key  # the default: the latest affectline-vgg
    assert f"2 images, 0 without a face, 1 unreadable (model {latest}, " in result.stderr
    csv_out = run("classify", str(tmp_path / "smile.png")).stdout.splitlines()
    assert csv_out[0].split(",")[:3] == ["file", "label", "angry"] and ",happy," in csv_out[1]


def test_models_lists_the_registry_and_marks_the_served_model():
    result = run("models")
    assert result.returncode == 0, result.stderr
    header, *rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert header[:3] == ["model", "served", "PrivateTest"]
    served = [r[0] for r in rows if r[1] == "*"]
    assert served == [ModelRegistry().get(DEFAULT_MODEL).key]
    by_key = {r[0]: r for r in rows}
    assert by_key["fer-mini-xception/1"][2] == "65.51 %"  # from its manifest


def test_classify_missing_path_is_a_clear_error(tmp_path):
    result = run("classify", str(tmp_path / "nope.png"))
    assert result.returncode == 2 and "no such file" in result.stderr


def serve(tmp_path: Path, database_url: str | None, env: dict[str, str] | None = None) -> ServeProcess:
    return start_serve(tmp_path / "data", tmp_path / "serve.log", ["--database-url", database_url] if database_url else [],
                       timeout_s=60, env=env)


def test_readme_partner_script_against_a_served_process(db_url, tmp_path, fer_faces):
    """Acceptance: `affectline serve` + the README's partner script, 300 frames, on SQLite and PostgreSQL.
    The server starts as a user's does, with its start-up probes."""
    server = serve(tmp_path, db_url, env=DEFAULT_START_ENV)
    try:
        admin_key = (tmp_path / "data" / "admin-key").read_text().strip()  # made by serve's first start
        demo = subprocess.run(
            [sys.executable, str(REPO_ROOT / "examples" / "partner_demo.py"), "--target", server.grpc_target,
             "--frames", "300", "--api-key", admin_key], capture_output=True, text=True, timeout=120,
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "pushed 300 frames in 30 encrypted batches; server accepted 300" in demo.stdout
        assert "timeline: 300 frames" in demo.stdout and "dominant EMOTION_HAPPY" in demo.stdout
        assert httpx.get(f"http://127.0.0.1:{server.http_port}/").status_code == 200  # the pages
    finally:
        returncode = server.stop()  # SIGTERM: graceful
    out = (tmp_path / "serve.log").read_text()
    assert returncode == 0, out
    assert "stopping" in out


def test_serve_on_a_taken_port_fails_cleanly(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", "--http-port", str(port), "--grpc-port", str(free_port()), "--data-dir", str(tmp_path))
    assert result.returncode == 2 and "error" in result.stderr and "Traceback" not in result.stderr


def test_free_ports_are_distinct():
    ports = free_ports(8)
    assert len(set(ports)) == 8 and all(1024 <= p < 65536 for p in ports)


def test_start_serve_chooses_new_ports_when_one_was_taken(tmp_path, monkeypatch):
    from affectline import serve_process

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        taken_port = taken.getsockname()[1]
        picks = iter([[free_port(), taken_port], free_ports(2)])  # first the taken HTTP port
        monkeypatch.setattr(serve_process, "free_ports", lambda n: next(picks))
        server = serve(tmp_path, None)
    try:
        assert server.http_port != taken_port
        assert httpx.get(f"http://127.0.0.1:{server.http_port}/healthz").status_code == 200
    finally:
        assert server.stop() == 0
    assert "Address already in use" in (tmp_path / "serve.log").read_text()  # the first try, logged


def test_privacy_erase_and_purge(tmp_path):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    erase = run("privacy", "erase", "--viewer-id", "nobody", "--database-url", url)
    assert erase.returncode == 0 and "0 sessions" in erase.stdout
    purge = run("privacy", "purge", "--older-than-days", "30", "--database-url", url)
    assert purge.returncode == 0 and "purged 0 sessions" in purge.stdout
    bad = run("privacy", "purge", "--older-than-days", "0", "--database-url", url)
    assert bad.returncode == 2 and "must be > 0" in bad.stderr
