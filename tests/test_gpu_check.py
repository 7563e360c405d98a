"""`python -m affectline.bench.gpu_check` on a host without a GPU: it must stop at once with one
line naming the missing provider. Its report and serving parts run here on the CPU instead."""

from __future__ import annotations

import argparse
import subprocess
import sys

import onnxruntime as ort
import pytest

from affectline.bench import gpu_check
from affectline.config import Settings

no_gpu = pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(),
                            reason="onnxruntime here has CUDA: the no-GPU failure cannot be shown")


@no_gpu
@pytest.mark.parametrize("providers, missing", [(None, "CUDAExecutionProvider"),
                                                ("tensorrt", "TensorrtExecutionProvider")])
def test_without_a_gpu_it_fails_with_one_line_naming_the_provider(tmp_path, providers, missing):
    out = tmp_path / "report.md"
    cmd = [sys.executable, "-m", "affectline.bench.gpu_check", "--out", str(out)]
    result = subprocess.run(cmd + (["--providers", providers] if providers else []),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: ") and missing in lines[0], result.stderr
    assert "Traceback" not in result.stderr and not result.stdout and not out.exists()


@no_gpu
def test_a_provider_listed_but_not_starting_is_reported_not_run_on_the_cpu(monkeypatch):
    # onnxruntime-gpu on a host without a GPU lists CUDA but falls back to the CPU quietly.
    monkeypatch.setattr(gpu_check.ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    gpu_check.check_available(["cuda"])  # listed: passes the first check
    with pytest.warns(UserWarning), pytest.raises(gpu_check.ProviderMissing, match="CUDAExecutionProvider is listed .* did not start"):
        gpu_check.load_on("CUDAExecutionProvider", Settings().model)


def test_unknown_provider_name_is_a_usage_error():
    with pytest.raises(SystemExit) as exc:
        gpu_check.main(["--providers", "rocm"])
    assert exc.value.code == 2


def test_ceiling_report_with_the_cpu_standing_in_for_a_gpu(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(gpu_check, "PROVIDERS", {"cpu": "CPUExecutionProvider"})
    monkeypatch.setattr(gpu_check, "BATCH_SIZES", (1, 8))
    out = tmp_path / "report.md"
    assert gpu_check.main(["--providers", "cpu", "--skip-serving", "--ceiling-seconds", "0.05", "--out", str(out)]) == 0
    report = out.read_text()
    assert report in capsys.readouterr().out  # stdout and --out hold the same report
    assert report.startswith("# Affectline GPU check\n")
    rows = [ln for ln in report.splitlines() if ln.startswith("| CPUExecutionProvider |")]
    assert [ln.split("|")[3].strip() for ln in rows] == ["1", "8"]
    assert "Best on CPUExecutionProvider:" in report


def test_serving_part_stores_every_acked_frame_on_the_cpu(tmp_path):
    args = argparse.Namespace(model=Settings().model, server_arg=[], saturate_sessions=2, paced_sessions=2,
                              duration=2.0, frames_per_batch=5, clients=1)
    lines, ok = gpu_check.run_serving(args, tmp_path)
    text = "\n".join(lines)
    assert ok, text
    assert "Server providers: CPUExecutionProvider" in text and "(all acked frames stored)" in text
    assert [ln.split("|")[1].strip() for ln in lines if ln.startswith("| ") and ln[2] != "-"][1:] == ["saturated", "paced 30 fps"]


def test_server_providers_are_read_from_the_start_up_log_line():
    line = ("affectline serving: gRPC on 0.0.0.0:50051, HTTP on http://0.0.0.0:8080 (database sqlite:///x, "
            "model affectline-vgg/6 (int8) on TensorrtExecutionProvider,CUDAExecutionProvider,CPUExecutionProvider)")
    assert gpu_check.server_providers(line) == "TensorrtExecutionProvider,CUDAExecutionProvider,CPUExecutionProvider"
    assert gpu_check.server_providers("").startswith("unknown")
