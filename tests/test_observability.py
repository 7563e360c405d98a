"""/metrics as SREs consume it: promtool lint, a real Prometheus scrape, and the shipped rules.

Needs Debian's `prometheus` package (promtool + prometheus); scripts/test.sh installs it via
scripts/system_deps.sh. Without it the tests skip and say so.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import pytest
from affectline.serve_process import free_port, start_serve
from affectline.partner_client import ClientSession, Frame, start_request
from affectline.v1 import session_pb2_grpc
from conftest import REPO_ROOT, served_crop_size
from cryptography.hazmat.primitives.asymmetric import ec

OBS = REPO_ROOT / "deploy" / "observability"
PROMTOOL, PROMETHEUS = shutil.which("promtool"), shutil.which("prometheus")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not found: apt-get install prometheus "
                                    "(scripts/system_deps.sh does it)")
needs_prometheus = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not found: apt-get install prometheus "
                                      "(scripts/system_deps.sh does it)")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[int, int]]:
    workdir = tmp_path_factory.mktemp("obs")
    served = start_serve(workdir, workdir / "server.log")
    yield served.grpc_port, served.http_port
    served.stop()


def push_traffic(grpc_port: int, seconds: float, sessions: int = 2) -> int:
    """Real sessions pushing 10-frame batches at ~30 fps each; returns frames acknowledged."""
    size = served_crop_size()
    faces = np.random.default_rng(0).integers(0, 255, (20, size, size), dtype=np.uint8)
    acked = 0
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        clients = []
        for i in range(sessions):
            key = ec.generate_private_key(ec.SECP256R1())
            clients.append(ClientSession.open(key, stub.StartSession(start_request(key, video_id="obs", viewer_id=f"o{i}"))))
        n, stop_at = 0, time.monotonic() + seconds
        while time.monotonic() < stop_at:
            for c in clients:
                ack = stub.PushCrops(c.push_request([Frame((n + k) * 33, faces[(n + k) % 20]) for k in range(10)]))
                acked += len(ack.results)
            n += 10
            time.sleep(0.33)
        for c in clients:
            stub.EndSession(c.end_request())
    return acked


@needs_promtool
def test_metrics_pass_promtool_lint_after_traffic(server):
    grpc_port, http_port = server
    assert push_traffic(grpc_port, 1.0) > 0
    text = httpx.get(f"http://127.0.0.1:{http_port}/metrics").text
    assert "affectline_frames_total" in text
    lint = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr


@needs_promtool
def test_alert_rules_are_valid_and_use_real_metrics(server):
    check = subprocess.run([PROMTOOL, "check", "rules", str(OBS / "alerts.yml")], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS" in check.stdout
    # Every metric named by the rules and the dashboard exists on /metrics (a renamed metric
    # would otherwise silently turn an alert or a panel into "no data").
    # TYPE lines list every family, also labelled ones with no samples yet.
    exposed = set(re.findall(r"^# TYPE (affectline_\w+)", httpx.get(f"http://127.0.0.1:{server[1]}/metrics").text, re.MULTILINE))
    dashboard = (OBS / "grafana-dashboard.json").read_text()
    json.loads(dashboard)
    used = {re.sub(r"_(bucket|count|sum)$", "", m)
            for m in re.findall(r"\b(affectline_[a-z_]+)", (OBS / "alerts.yml").read_text() + dashboard)}
    assert used and used <= exposed, f"unknown metrics: {sorted(used - exposed)}"


@needs_prometheus
def test_real_prometheus_scrapes_affectline_under_load(server, tmp_path):
    grpc_port, http_port = server
    prom_port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{OBS / 'alerts.yml'}']\n"
        "scrape_configs:\n  - job_name: affectline\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{http_port}']}}]\n"
    )
    prom = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"),
    )
    api = f"http://127.0.0.1:{prom_port}"

    def query(q: str) -> float | None:
        result = httpx.get(f"{api}/api/v1/query", params={"query": q}, timeout=5).json()
        assert result["status"] == "success", result
        rows = result["data"]["result"]
        return float(rows[0]["value"][1]) if rows else None

    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{api}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            pytest.fail("prometheus not ready in 30 s:\n" + (tmp_path / "prometheus.log").read_text()[-2000:])

        load = threading.Thread(target=push_traffic, args=(grpc_port, 6.0))
        load.start()
        frames = rate = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (frames and rate):
            time.sleep(1)
            frames = query("sum(affectline_frames_total)")
            rate = query("sum(rate(affectline_frames_total[10s]))")
        load.join()
        assert frames and frames > 0, "Prometheus never saw affectline_frames_total"
        assert rate and rate > 0, "rate(affectline_frames_total) stayed 0"
        assert query('up{job="affectline"}') == 1.0
        # The SLO recording rule evaluates on real data (a fraction between 0 and 1).
        slow = query("affectline:push_batches_slow:ratio_rate5m")
        assert slow is None or 0.0 <= slow <= 1.0
    finally:
        prom.terminate()
        prom.wait(timeout=20)
