#!/usr/bin/env bash
# Make sure Debian's python3 can import Flask (examples/flask-model, test/e2e/flask.test.ts):
# install python3-flask and python3-requests from apt when it cannot. Idempotent; the install
# needs root. No PyPI here, so never pip.
set -euo pipefail

log() { echo "[flask] $*" >&2; }

# One apt-get at a time across the setup scripts that parallel test files call.
exec 9>"${TMPDIR:-/tmp}/inference-orchestrator-setup.lock"
flock 9

if /usr/bin/python3 -c 'import flask' >/dev/null 2>&1; then
  log "flask already importable by /usr/bin/python3"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  log "/usr/bin/python3 cannot import flask and apt-get is missing: install Flask for /usr/bin/python3 by hand"
  exit 1
fi

log "installing python3-flask and python3-requests"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq python3-flask python3-requests >/dev/null
/usr/bin/python3 -c 'import flask' && log "flask ready"
