#!/usr/bin/env bash
# Make sure Debian's Chromium is installed (the dashboard's browser test drives it with playwright-core).
# Idempotent; the install needs root. Never downloads a browser of its own.
set -euo pipefail

[ -x /usr/bin/chromium ] && exit 0
bash "$(dirname "$0")/apt-install.sh" chromium
/usr/bin/chromium --version >&2
