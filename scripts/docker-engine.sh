#!/usr/bin/env bash
# Make sure a Docker engine answers here: install docker.io and docker-compose from apt when
# missing, and start dockerd without a bridge (host networking only) when it is not running.
# Idempotent; needs root for the install and the daemon. Used by tests and CI.
set -euo pipefail

log() { echo "[docker-engine] $*" >&2; }

if ! command -v dockerd >/dev/null 2>&1 || ! { command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1; }; then
  bash "$(dirname "$0")/apt-install.sh" docker.io docker-compose
fi

# Test files call this in parallel: one of them starts the daemon, the others wait for it.
exec 9>"${TMPDIR:-/tmp}/inference-orchestrator-docker-engine.lock"
flock 9

if docker info >/dev/null 2>&1; then
  log "engine already running"
  exit 0
fi

log "starting dockerd (no bridge, host networking)"
# No bridge: traffic to 172.17.x is not allowed here; containers use host networking on 127.0.0.1.
# 9>&-: the daemon outlives this script and must not inherit the lock, or every later caller waits forever.
setsid dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false >/var/log/dockerd.log 2>&1 </dev/null 9>&- &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    log "engine ready"
    exit 0
  fi
  sleep 0.5
done
log "dockerd did not answer within 30 s; see /var/log/dockerd.log"
exit 1
