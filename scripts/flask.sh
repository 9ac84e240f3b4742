#!/usr/bin/env bash
# Make sure Debian's python3 can import Flask (examples/flask-model, test/e2e/flask.test.ts):
# install python3-flask and python3-requests from apt when it cannot. Idempotent; the install
# needs root. No PyPI here, so never pip.
set -euo pipefail

log() { echo "[flask] $*" >&2; }

if /usr/bin/python3 -c 'import flask' >/dev/null 2>&1; then
  log "flask already importable by /usr/bin/python3"
  exit 0
fi

bash "$(dirname "$0")/apt-install.sh" python3-flask python3-requests
/usr/bin/python3 -c 'import flask' && log "flask ready"
