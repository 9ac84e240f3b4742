#!/usr/bin/env bash
# Build the worker image (worker/Dockerfile), the orchestrator image (orchestrator/Dockerfile) or
# the example Python model image (examples/flask-model/Dockerfile). For the first two, esbuild
# bundles the program's main.ts with its dependencies into a temporary build context (the
# orchestrator's also gets its dashboard page), then Docker copies that in onto a Node base; the
# model image builds from its own folder on a Python base and trains its model while it builds.
# Progress goes to stderr; the last line on stdout is the image, its id, size and base.
#
# Usage: npm run build:image                (or: bash scripts/build-image.sh [worker])
#        npm run build:orchestrator-image   (or: bash scripts/build-image.sh orchestrator)
#        npm run build:image -- flask-model (or: bash scripts/build-image.sh flask-model)
# Environment:
#   WORKER_IMAGE        tag of the worker image             default inference-worker:latest
#   ORCHESTRATOR_IMAGE  tag of the orchestrator image       default inference-orchestrator:latest
#   FLASK_MODEL_IMAGE   tag of the example model image      default flask-model:latest
#   BASE_IMAGE    base image to build on             default: node:22-bookworm-slim when present
#                 locally or pullable, else local/node-base:20 made from this machine's node
#                 (scripts/node-base-image.sh; for machines without an image registry). For
#                 flask-model: python:3.11-slim-bookworm, else local/python-ml-base:bookworm made
#                 from Debian's packages (scripts/python-base-image.sh; about 3 minutes, once)
#   PULL_BASE     0: never try `docker pull` for the default base     default 1
set -euo pipefail
cd "$(dirname "$0")/.."

kind="${1:-worker}"
case "$kind" in
  worker) image="${WORKER_IMAGE:-inference-worker:latest}" ;;
  orchestrator) image="${ORCHESTRATOR_IMAGE:-inference-orchestrator:latest}" ;;
  flask-model) image="${FLASK_MODEL_IMAGE:-flask-model:latest}" ;;
  *)
    echo "error: expected worker, orchestrator or flask-model as the image to build; got $kind" >&2
    exit 2
    ;;
esac
if [ "$kind" = flask-model ]; then
  official_base="python:3.11-slim-bookworm"
  dockerfile="examples/flask-model/Dockerfile"
else
  official_base="node:22-bookworm-slim"
  dockerfile="$kind/Dockerfile"
fi

log() { echo "[build-$kind-image] $*" >&2; }
fail() {
  echo "error: $*" >&2
  exit 1
}
# Quietly, and bounded where `timeout` exists: without a registry it fails in about a second.
pull() {
  log "pulling $1"
  if command -v timeout >/dev/null 2>&1; then
    timeout 300 docker pull -q "$1" >/dev/null 2>&1
  else
    docker pull -q "$1" >/dev/null 2>&1
  fi
}
# Decimal units, as `docker images` prints them.
human_size() { awk -v b="$1" 'BEGIN { split("B kB MB GB TB", u, " "); i = 1; while (b >= 1000 && i < 5) { b /= 1000; i++ } if (i == 1) printf "%d B", b; else printf "%.1f %s", b, u[i] }'; }

command -v docker >/dev/null 2>&1 || fail "docker not found; install Docker (on Debian: bash scripts/docker-engine.sh)"
docker info >/dev/null 2>&1 || fail "cannot reach the Docker engine${DOCKER_HOST:+ at $DOCKER_HOST} (docker info failed); start it (on Debian: bash scripts/docker-engine.sh)"
[ "$kind" = flask-model ] || [ -x node_modules/.bin/esbuild ] || fail "node_modules/.bin/esbuild not found; run npm ci first"

# Without the buildx plugin (Debian's docker.io) only the classic builder works: ask for it, so a
# DOCKER_BUILDKIT=1 in the environment does not make the build fail. Its intermediate containers
# get host networking: there is no bridge on machines like CI's, and nothing here needs a network.
build_options=()
if ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=0
  build_options+=(--network host)
fi

if [ -n "${BASE_IMAGE:-}" ]; then
  base="$BASE_IMAGE"
  log "base image $base (from BASE_IMAGE)"
elif docker image inspect "$official_base" >/dev/null 2>&1; then
  base="$official_base"
  log "base image $base (present locally)"
elif [ "${PULL_BASE:-1}" != 0 ] && pull "$official_base"; then
  base="$official_base"
  log "base image $base (pulled)"
elif [ "$kind" = flask-model ]; then
  log "$official_base is not available here; using local/python-ml-base:bookworm, made from Debian's packages when missing"
  base="$(bash scripts/python-base-image.sh)"
  log "base image $base (local, from Debian's packages)"
else
  log "$official_base is not available here; using local/node-base:20, made from this machine's node when missing"
  # Two builds at once (parallel test files) would import the base twice and leave one dangling.
  if command -v flock >/dev/null 2>&1; then
    base="$(flock "${TMPDIR:-/tmp}/node-base-image.lock" bash scripts/node-base-image.sh)"
  else
    base="$(bash scripts/node-base-image.sh)"
  fi
  log "base image $base (local, from $(command -v node) $(node --version))"
fi

if [ "$kind" = flask-model ]; then
  context="examples/flask-model"
else
  context="$(mktemp -d "${TMPDIR:-/tmp}/$kind-image.XXXXXX")"
  trap 'rm -rf "$context"' EXIT
fi

# CommonJS dependencies (koa, pino, ssh2, ...) call require() and read __dirname; an ES module bundle
# has neither unless given them. ssh2's native addons are optional (it falls back to JavaScript when
# require fails) and built for this machine's Node: left out.
banner="import { createRequire as __bundleCreateRequire } from 'node:module';"
banner+=" import { fileURLToPath as __bundleFileURLToPath } from 'node:url'; import { dirname as __bundleDirname } from 'node:path';"
banner+=" const require = __bundleCreateRequire(import.meta.url); const __filename = __bundleFileURLToPath(import.meta.url); const __dirname = __bundleDirname(__filename);"
bundle() {
  node_modules/.bin/esbuild "$1" --bundle --platform=node --format=esm --target=node20 \
    --keep-names --log-level=warning --external:'*.node' --outfile="$2" --banner:js="$banner"
  log "bundle $(human_size "$(wc -c <"$2")")"
}
if [ "$kind" = worker ]; then
  bundle worker/src/main.ts "$context/server.mjs"
elif [ "$kind" = orchestrator ]; then
  # The code finds its files from the folder holding package.json (common/src/paths.ts): the bundle,
  # a package.json beside it, and the dashboard page where the sources keep it. A .js bundle under
  # "type": "module" also tells the code it runs compiled, not through tsx.
  bundle orchestrator/src/main.ts "$context/main.js"
  node -e 'const p = require("./package.json"); process.stdout.write(JSON.stringify({ name: p.name, version: p.version, private: true, type: "module" }) + "\n")' >"$context/package.json"
  mkdir -p "$context/orchestrator"
  cp -R orchestrator/dashboard "$context/orchestrator/dashboard"
fi

labels=(--label "org.opencontainers.image.version=$(node -p 'require("./package.json").version')")
labels+=(--label "org.opencontainers.image.base.name=$base")
# Without any user:token@ part of an https remote: labels are public.
if source_url="$(git config --get remote.origin.url 2>/dev/null | sed -E 's#://[^/@]+@#://#')" && [ -n "$source_url" ]; then
  labels+=(--label "org.opencontainers.image.source=$source_url")
fi

log "building $image"
# ${a[@]+...}: an empty array is "unbound" to macOS bash 3.2 under set -u.
docker build ${build_options[@]+"${build_options[@]}"} -f "$dockerfile" --build-arg "BASE_IMAGE=$base" "${labels[@]}" -t "$image" "$context" >&2

id="$(docker image inspect -f '{{.Id}}' "$image")"
size="$(docker image inspect -f '{{.Size}}' "$image")"
echo "$image ${id:7:12} $(human_size "$size") (base $base)"
