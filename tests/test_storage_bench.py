"""The storage benchmark's short run (python -m affectline.bench.storage) on the local PostgreSQL.

The full run's figures are in docs/scaling.md; here it runs small so CI checks that the COPY
path, the 0009 layout it compares with, and migration 0010's conversion keep working.
"""

from __future__ import annotations

import re
import subprocess
import sys

from db_backends import pg_admin_url  # noqa: F401


# 40 sessions x 4 s x 2 writers: ~19,000 frames, enough PostgreSQL CPU to show in /proc's 10 ms ticks.
def test_storage_benchmark_short_run(pg_admin_url):  # noqa: F811 (skips without PostgreSQL)
    url = pg_admin_url.set(drivername="postgresql").render_as_string(hide_password=False)
    run = subprocess.run([sys.executable, "-m", "affectline.bench.storage", "--database-url", url, "--sessions", "40",
                          "--seconds", "4", "--repeats", "1", "--writers", "2", "--group", "40"],
                         capture_output=True, text=True, timeout=300)
    print(run.stdout)
    assert run.returncode == 0, run.stderr[-3000:]
    rates = re.findall(r"^\s+(10|30)\s+(on|off)\s+([\d,]+)\s+([\d.]+)\s+([\d.]+)$", run.stdout, re.M)
    assert {(b, r) for b, r, *_ in rates} == {("10", "on"), ("10", "off"), ("30", "on"), ("30", "off")}, run.stdout
    assert all(int(fps.replace(",", "")) > 0 and float(writer) > 0 and float(db) > 0 for *_, fps, writer, db in rates)
    before = int(re.search(r"before \(0009\).* = ([\d,]+) B per session-minute", run.stdout)[1].replace(",", ""))
    after = int(re.search(r"after \(0010\):.* = ([\d,]+) B per session-minute", run.stdout)[1].replace(",", ""))
    assert after < before / 1.5, (before, after)
    converted = re.search(r"converted ([\d,]+) frames .* frames after: ([\d,]+)", run.stdout)
    assert converted and converted[1] == converted[2]
