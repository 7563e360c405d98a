#!/usr/bin/env bash
# Installs Affectline with its test dependencies into ./.venv and runs every test.
# PostgreSQL tests use 127.0.0.1:5432 (user postgres) and are skipped, with the reason, if it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh dev
bash scripts/build_client.sh  # the viewer page's bundle, models and wasm (skipped when up to date)
# Prometheus/promtool (observability tests) and the browser; skipped tests say what is missing.
bash scripts/system_deps.sh || echo "test.sh: system_deps failed; tests needing those packages will skip" >&2
exec .venv/bin/python -m pytest "$@"
