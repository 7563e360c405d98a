#!/usr/bin/env bash
# Debian packages the tests need (browser tests, the Prometheus scrape test). Installs only
# what is missing, and only when it can (root + apt-get); otherwise says what to install.
set -euo pipefail
# package -> a command it provides
declare -A wanted=(
  [chromium]=chromium
  [chromium-driver]=chromedriver
  [prometheus]=promtool
)
missing=()
for pkg in "${!wanted[@]}"; do
  command -v "${wanted[$pkg]}" >/dev/null 2>&1 || missing+=("$pkg")
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
