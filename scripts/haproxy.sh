#!/usr/bin/env bash
# Make sure HAProxy is installed (the benchmark's reference proxy): Debian's package from apt when
# missing. Idempotent; the install needs root.
set -euo pipefail

log() { echo "[haproxy] $*" >&2; }

# One apt-get at a time across the setup scripts.
exec 9>"${TMPDIR:-/tmp}/inference-orchestrator-setup.lock"
flock 9

if command -v haproxy >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  log "haproxy is missing and apt-get is not here: install HAProxy 2.x by hand"
  exit 1
fi
log "installing haproxy"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq haproxy >/dev/null
# The package starts a system service on Debian; the benchmark runs its own instances only.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now haproxy >/dev/null 2>&1 || true; fi
haproxy -v | head -1 >&2
