#!/usr/bin/env bash
# Debian packages the tests need (browser tests, the Prometheus scrape test, the HAProxy replicas test). Installs only
# what is missing, and only when it can (root + apt-get); otherwise says what to install.
# `system_deps.sh reports`: only what PDF reports need (scripts/serve.sh runs that).
set -euo pipefail
# package -> a command it provides
declare -A wanted=(
  [chromium]=chromium
  [chromium-driver]=chromedriver
  [prometheus]=promtool
  [haproxy]=haproxy  # tests/test_replicas.py: replicas behind HAProxy 2.6 (deploy/haproxy/)
  [poppler-utils]=pdftoppm  # tests/test_reports.py: PDF pages to PNG, pdftotext
)
# package -> a shared library it provides: WeasyPrint (PDF reports, GET /api/report) loads Pango
declare -A wanted_libs=(
  [libpango-1.0-0]=libpango-1.0.so.0
  [libpangoft2-1.0-0]=libpangoft2-1.0.so.0
)
[ "${1:-}" = reports ] && wanted=()
missing=()
for pkg in "${!wanted[@]}"; do
  command -v "${wanted[$pkg]}" >/dev/null 2>&1 || missing+=("$pkg")
done
for pkg in "${!wanted_libs[@]}"; do
  PATH="$PATH:/sbin:/usr/sbin" ldconfig -p 2>/dev/null | grep -qF "${wanted_libs[$pkg]}" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "system_deps: installing ${missing[*]} with apt" >&2
  # Wait for a concurrent apt/dpkg run (another job installing packages) instead of failing.
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "system_deps: missing ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
fi
