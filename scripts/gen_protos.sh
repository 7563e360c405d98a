#!/usr/bin/env bash
# Regenerates the Python code for protos/ into server/affectline/v1 (a package of generated code only).
# Usage: scripts/gen_protos.sh [OUT_ROOT]   (OUT_ROOT defaults to server/; tests pass a temp dir to check freshness)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-server}"
py="${PYTHON:-.venv/bin/python}"
plugin="$(dirname "$py")/protoc-gen-connectrpc"
mkdir -p "$out"
rm -f "$out"/affectline/v1/*_pb2.py "$out"/affectline/v1/*_pb2.pyi "$out"/affectline/v1/*_pb2_grpc.py "$out"/affectline/v1/*_connect.py
"$py" -m grpc_tools.protoc -Iprotos \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  --plugin=protoc-gen-connectrpc="$plugin" --connectrpc_out="$out" --connectrpc_opt=protobuf=google \
  protos/affectline/v1/*.proto
cat > "$out/affectline/v1/__init__.py" <<'PY'
"""Generated from protos/affectline/v1 by scripts/gen_protos.sh. Do not edit by hand."""
PY
