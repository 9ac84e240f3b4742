#!/usr/bin/env bash
# Build a minimal base image holding only this machine's node binary and the libraries it links,
# for machines without an image registry: `docker import` of a folder, no pull needed.
# Usage: scripts/node-base-image.sh [TAG]   (default local/node-base:20)
set -euo pipefail

tag="${1:-local/node-base:20}"
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag"
  exit 0
fi

node_bin="$(readlink -f "$(command -v node)")"
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT

mkdir -p "$root/usr/local/bin" "$root/tmp" "$root/etc"
cp "$node_bin" "$root/usr/local/bin/node"
# The dynamic loader and every library node links, at the same paths.
for lib in $(ldd "$node_bin" | grep -oE '/[^ ]+'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
chmod 1777 "$root/tmp"
# A non-root user for the image to run as (no shell, no useradd in this image).
printf 'root:x:0:0:root:/root:/sbin/nologin\nnode:x:1000:1000:node:/home/node:/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\nnode:x:1000:\n' > "$root/etc/group"
mkdir -p "$root/home/node"

tar -C "$root" -c . | docker import --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' - "$tag" >/dev/null
echo "$tag"
