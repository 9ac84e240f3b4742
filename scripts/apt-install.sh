#!/usr/bin/env bash
# Install Debian packages for the tests and benchmarks: `bash scripts/apt-install.sh PKG...`.
# Installs only the missing ones; one apt-get at a time across the scripts and test files that
# call this in parallel. Needs root.
set -euo pipefail

missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "[apt-install] apt-get is not here: install ${missing[*]} by hand" >&2
  exit 1
fi

exec 9>"${TMPDIR:-/tmp}/inference-orchestrator-apt.lock"
flock 9
echo "[apt-install] installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null 9>&-
