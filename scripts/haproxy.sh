#!/usr/bin/env bash
# Make sure HAProxy is installed (the benchmark's reference proxy): Debian's package when missing.
# Idempotent; the install needs root.
set -euo pipefail

command -v haproxy >/dev/null 2>&1 && exit 0
bash "$(dirname "$0")/apt-install.sh" haproxy
# The package starts a system service on Debian; the benchmark runs its own instances only.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now haproxy >/dev/null 2>&1 || true; fi
haproxy -v | head -1 >&2
