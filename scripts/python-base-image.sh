#!/usr/bin/env bash
# Build a Python base image with Flask, scikit-learn and gunicorn from Debian's packages, for
# machines without an image registry: debootstrap a minimal bookworm with them into a folder, then
# `docker import` it: a 900 MB image, 2 to 5 minutes (4.5 on a busy 2-core machine); needs root.
# Idempotent, and one build at a time across parallel callers. Progress on stderr; the tag on stdout.
# Usage: scripts/python-base-image.sh [TAG]   (default local/python-ml-base:bookworm)
set -euo pipefail
cd "$(dirname "$0")/.."

tag="${1:-local/python-ml-base:bookworm}"
log() { echo "[python-base-image] $*" >&2; }

if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag"
  exit 0
fi

# Two builds at once (parallel test files, a test and build-image.sh) would each debootstrap for minutes.
exec 9>"${TMPDIR:-/tmp}/python-base-image.lock"
flock 9
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag"
  exit 0
fi

command -v debootstrap >/dev/null 2>&1 || bash scripts/apt-install.sh debootstrap

# The mirror apt already uses (deb822 first, then the one-line format), so nothing else is contacted.
mirror=""
if [ -r /etc/apt/sources.list.d/debian.sources ]; then
  mirror="$(awk '/^URIs:/ && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)"
fi
if [ -z "$mirror" ] && [ -r /etc/apt/sources.list ]; then
  mirror="$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"

root="$(mktemp -d "${TMPDIR:-/tmp}/python-base.XXXXXX")"
# --one-file-system: never into a /proc or /sys that a failed debootstrap left mounted inside.
trap 'rm -rf --one-file-system "$root"' EXIT

started=$SECONDS
log "debootstrap bookworm from $mirror into $root (a few minutes)"
debootstrap --variant=minbase --include=python3-flask,python3-sklearn,python3-gunicorn \
  bookworm "$root" "$mirror" >&2
# Package lists and downloaded archives only weigh the image down.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
log "importing $tag"
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' - "$tag" >/dev/null
log "done in $((SECONDS - started)) s"
echo "$tag"
