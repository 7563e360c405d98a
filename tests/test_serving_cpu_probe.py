"""scripts/serving_cpu_probe.py: its parsers on exact examples, and one short real run (figures not asserted)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "serving_cpu_probe.py"


def _probe():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("serving_cpu_probe", SCRIPT)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules.setdefault("serving_cpu_probe", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_cpu_seconds_reads_user_and_system_ticks_even_with_spaces_in_the_name() -> None:
    tick = os.sysconf("SC_CLK_TCK")
    fields = ["S", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", str(3 * tick), str(tick), "0", "0"]
    assert _probe().cpu_seconds("123 (a (b) c) " + " ".join(fields)) == 4.0


def test_cpu_seconds_of_this_process_is_plausible() -> None:
    seconds = _probe().cpu_seconds(Path("/proc/self/stat").read_text())
    assert 0 < seconds < 3600


def test_parse_metrics_keeps_labels_and_skips_comments() -> None:
    text = ("# HELP x_total help\n# TYPE x_total counter\nx_total 3.0\n"
            'y_seconds_sum{method="PushCrops",code="OK"} 1.5\nz_bucket{le="+Inf"} 7\n')
    assert _probe().parse_metrics(text) == {
        "x_total": 3.0, 'y_seconds_sum{method="PushCrops",code="OK"}': 1.5, 'z_bucket{le="+Inf"}': 7.0}


def test_a_short_run_prints_every_figure() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--sessions", "2", "--seconds", "3", "--clients", "1",
                          "--server-arg=--time-variants=0", "--server-arg=--max-run-ms=0"],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr
    for text in ("2 sessions:", "frames/s acked", "crops/run", "ms/crop (wall)", "group commit", "CPU over",
                 "us/frame", "busiest server threads"):
        assert text in out.stdout, out.stdout


def test_too_short_a_step_is_refused() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--seconds", "1"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--seconds must be >= 2" in out.stderr
