#!/usr/bin/env bash
# Installs Affectline with its test dependencies into ./.venv and runs every test.
# PostgreSQL tests use 127.0.0.1:5432 (user postgres) and are skipped, with the reason, if it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh dev
exec .venv/bin/python -m pytest "$@"
