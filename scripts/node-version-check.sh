#!/usr/bin/env bash
# Prove the project on another Node.js major than this machine's (default 22, the LTS the AWS SDK
# will require). Node comes from the npm registry, once, into a cache folder: the package
# node-<platform>-<arch> is the official binary, with no install script. In a copy of the work
# tree (the machine's node_modules and dist stay as they are), that Node then runs
# `npm ci --engine-strict` (every dependency must accept it; native addons compile for it), the
# typecheck, the build, a set of suites, and the quick start: provision, start, one request,
# teardown. Each step prints its duration; the whole check takes about 4 to 5 minutes on two cores.
#
# Usage: bash scripts/node-version-check.sh [MAJOR]        (default 22)
# Environment:
#   NODE_CHECK_SUITES  vitest files or folders to run   default: default_suites below
#   NODE_CHECK_CACHE   where Node versions are kept     default: ${XDG_CACHE_HOME:-$HOME/.cache}/inference-orchestrator/node
#                      (a version is fetched once; delete its folder to take a newer release)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "[node-version-check] $*" >&2; }
fail() {
  echo "error: $*" >&2
  exit 1
}
step() {
  local name="$1" began=$SECONDS
  shift
  log "$name"
  "$@"
  log "$name: done in $((SECONDS - began)) s"
}

major="${1:-22}"
[[ "$major" =~ ^[0-9]+$ ]] || fail "expected a Node.js major version such as 22, got '$major'"
# What differs between Node majors: HTTP (the orchestrator's edge, undici, raw sockets), the AWS SDK
# (against moto, and nock intercepting it), child processes and worker threads (provisioning, the
# load script), the CLIs under tsx. The Docker and fault-drill suites run on the machine's Node only.
default_suites="test/orchestrator test/load test/status test/provisioning/aws.test.ts test/provisioning/aws-faults.test.ts test/provisioning/cli.test.ts"
read -r -a suites <<<"${NODE_CHECK_SUITES:-$default_suites}"
# vitest runs what matches and says nothing of a filter that matches nothing: a renamed suite must not drop out unseen.
for suite in "${suites[@]}"; do [ -e "$suite" ] || fail "no such test file or folder: $suite (NODE_CHECK_SUITES)"; done
cache="${NODE_CHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/inference-orchestrator/node}"
began=$SECONDS
git rev-parse --is-inside-work-tree >/dev/null 2>&1 || fail "not a git work tree: the check copies the files git knows"
command -v curl >/dev/null 2>&1 || fail "curl not found (the quick start sends its request with it)"

# The tests' Docker base image is made from whatever `node` is on PATH: make it, if the suites
# need it, from this machine's node before PATH changes.
if grep -rlq ensureDockerEngine "${suites[@]}" 2>/dev/null; then
  step "Docker engine and base image (from $(command -v node) $(node --version))" \
    bash -c 'bash scripts/docker-engine.sh && bash scripts/node-base-image.sh >/dev/null'
fi

package="node-$(node -p 'process.platform + "-" + process.arch')"
home="$cache/$major"
bin="$home/node_modules/$package/bin"
mkdir -p "$cache"
fetch() {
  # Two checks at once must not install into the same folder.
  exec 9>"$cache/.lock"
  if command -v flock >/dev/null 2>&1; then flock 9; fi
  if [ ! -x "$bin/node" ]; then
    rm -rf "$home"
    npm install --prefix "$home" --no-save --no-package-lock --no-audit --no-fund --loglevel=error "$package@$major" >&2
  fi
  exec 9>&-
}
step "Node $major ($package from the npm registry, cached in $home)" fetch

export PATH="$bin:$PATH"
version="$(node --version)"
[[ "$version" == "v$major."* ]] || fail "expected Node $major from $bin, got $version"
log "node $version, npm $(npm --version)"

copy="$(mktemp -d "${TMPDIR:-/tmp}/node$major-check.XXXXXX")"
orchestrator=""
cleanup() {
  local status=$?
  if [ -n "$orchestrator" ] && kill -0 "$orchestrator" 2>/dev/null; then
    kill -TERM "$orchestrator" 2>/dev/null || true
    wait "$orchestrator" 2>/dev/null || true
  fi
  # Whatever the quick start left running (a failure midway) is stopped before its folder goes.
  if [ -f "$copy/status/state.json" ]; then (cd "$copy" && npm run --silent teardown >/dev/null 2>&1) || true; fi
  rm -rf "$copy"
  if [ "$status" -eq 0 ]; then log "Node $version: every step passed in $((SECONDS - began)) s"; else log "Node $version: FAILED (exit $status) after $((SECONDS - began)) s"; fi
}
trap cleanup EXIT

# Tracked and new files as they are now (not those deleted), without what .gitignore leaves out
# (node_modules, dist, state files).
git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' file; do if [ -e "$file" ]; then printf '%s\0' "$file"; fi; done |
  tar -c --null -T - | tar -x -C "$copy"
cd "$copy"

quick_start() {
  local base port answer
  # Free ports for 2 workers x 2 containers (stride 100) and the orchestrator: other clusters may run here.
  read -r base port < <(node --import tsx --input-type=module -e \
    "const { freeBasePort } = await import('./common/src/free-ports.ts'); console.log(await freeBasePort([0, 1, 100, 101]), await freeBasePort([0]));")
  npm run --silent provision -- --base-port "$base" >&2
  npm start -- --port "$port" >"$copy/orchestrator.log" 2>&1 &
  orchestrator=$!
  for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    kill -0 "$orchestrator" 2>/dev/null || fail "npm start exited: $(tail -n 3 "$copy/orchestrator.log")"
    sleep 0.5
  done
  answer="$(curl -sf -XPOST "http://127.0.0.1:$port/new_request" -H 'content-type: application/json' -d '{"text":"I love it"}')" ||
    fail "POST /new_request failed; the orchestrator said: $(tail -n 3 "$copy/orchestrator.log")"
  [[ "$answer" == *'"label":"positive"'* ]] || fail "unexpected answer to POST /new_request: $answer"
  log "POST /new_request answered: $answer"
  kill -TERM "$orchestrator"
  wait "$orchestrator" || fail "npm start did not exit cleanly on SIGTERM: $(tail -n 3 "$copy/orchestrator.log")"
  orchestrator=""
  npm run --silent teardown >&2
}

step "npm ci --engine-strict" npm ci --no-audit --no-fund --engine-strict --loglevel=error
step "typecheck" npm run --silent typecheck
step "build" npm run --silent build
step "vitest run ${suites[*]}" npx vitest run "${suites[@]}"
step "quick start: provision, npm start, POST /new_request, teardown" quick_start
