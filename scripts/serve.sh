#!/usr/bin/env bash
# Installs Affectline into ./.venv and runs the server on embedded defaults
# (SQLite under ./data, CPU inference; gRPC :50051, HTTP :8080). Extra args go to `affectline serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/build_client.sh  # the viewer page's bundle, models and wasm (skipped when up to date)
# Pango for PDF reports (WeasyPrint); without it /api/report?format=pdf answers 503 naming the packages.
bash scripts/system_deps.sh reports || echo "serve.sh: could not install Pango; PDF reports stay off" >&2
exec .venv/bin/affectline serve "$@"
