#!/usr/bin/env bash
# Make sure wrk is installed (the scale benchmark's client, which outruns the proxy under test):
# Debian's package when missing. Idempotent; the install needs root.
set -euo pipefail

command -v wrk >/dev/null 2>&1 && exit 0
bash "$(dirname "$0")/apt-install.sh" wrk
