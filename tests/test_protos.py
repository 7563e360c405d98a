"""The generated code in server/affectline/v1 is what protos/ produces today."""

import filecmp
import os
import subprocess
import sys

from conftest import REPO_ROOT


def test_generated_code_is_up_to_date(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run(["bash", str(REPO_ROOT / "scripts" / "gen_protos.sh"), str(tmp_path)], check=True, env=env)
    fresh = tmp_path / "affectline" / "v1"
    committed = REPO_ROOT / "server" / "affectline" / "v1"
    names = sorted(p.name for p in fresh.iterdir() if p.is_file())
    assert names == sorted(p.name for p in committed.iterdir() if p.is_file() and p.suffix in (".py", ".pyi"))
    _, mismatch, errors = filecmp.cmpfiles(fresh, committed, names, shallow=False)
    assert not mismatch and not errors, f"run scripts/gen_protos.sh: stale {mismatch + errors}"
