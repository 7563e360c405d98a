#!/usr/bin/env bash
# Builds the browser client (client_js/) into server/affectline/static/app/. Offline after the
# first `npm ci` (npm registry only); skipped when the bundle is newer than every input.
set -euo pipefail
cd "$(dirname "$0")/.."
out=server/affectline/static/app/viewer.js
command -v npm >/dev/null || { echo "build_client: npm not found (apt-get install nodejs npm); the viewer page needs it" >&2; exit 0; }
if [ ! -d client_js/node_modules ] || [ client_js/package-lock.json -nt client_js/node_modules/.package-lock.json ]; then
  echo "build_client: npm ci" >&2
  (cd client_js && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ -f "$out" ] && [ -f "$(dirname "$out")/live.js" ] && [ -z "$(find client_js/src client_js/scripts client_js/package-lock.json client_js/buf.gen.yaml protos -newer "$out" -not -path '*/gen/*' -print -quit)" ]; then
  exit 0
fi
(cd client_js && node scripts/build.mjs)
