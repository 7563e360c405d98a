"""python -m affectline.bench.analytics at a tiny size: it runs end to end and its checks hold."""

from __future__ import annotations

from affectline.bench.analytics import main


def test_analytics_bench_runs_and_finds_the_planted_effect(capsys) -> None:
    assert main(["--sessions", "60", "--seconds", "40", "--fps", "2", "--ingest-sessions", "3", "--repeats", "2",
                 "--aa-splits", "3"]) == 0
    out = capsys.readouterr().out
    for line in ("ingest (3 sessions per group commit): rollups off", "video curve, two filters: median",
                 "key moments: median", "A/B comparison: median", "segment breakdown (age band): median",
                 "reliable True", "checks: passed"):
        assert line in out
