#!/usr/bin/env bash
# Build a minimal Debian base image without any container registry.
#
#   scripts/build-debian-base.sh <image:tag> <comma-separated packages> [suite]
#
# The suite defaults to bookworm; trixie (Debian 13) is the one with OpenJDK 21, which
# OpenSearch 3.x needs.
#
# debootstrap makes the root filesystem from Debian's package mirror and `docker import`
# turns it into an image. This is the air-gapped path: a machine that reaches a Debian
# mirror (or a local one, via DEBIAN_MIRROR) but no registry. Skips an image that exists.
# Exits 3 with the reason when this machine cannot build it (debootstrap needs root).
set -euo pipefail

image=${1:?usage: build-debian-base.sh <image:tag> <packages>}
packages=${2:?usage: build-debian-base.sh <image:tag> <packages>}
suite=${3:-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

if docker image inspect "$image" >/dev/null 2>&1; then
  log "$image exists, skipping"
  exit 0
fi

cannot_build() {
  log "cannot build $image here: $*"
  exit 3
}
[ "$(id -u)" -eq 0 ] || cannot_build "debootstrap needs root"
if ! command -v debootstrap >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || cannot_build "no debootstrap, and no apt-get to install it"
  log "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

rootfs=$(mktemp -d /tmp/merge-job-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

log "debootstrap $suite with $packages (mirror $mirror)"
debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
  tail -n 30 "$rootfs.log" >&2
  exit 1
}
rm -f "$rootfs.log"
# No package caches or lists in the image.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

log "importing $image"
tar -C "$rootfs" -c . | docker import - "$image" >/dev/null
log "built $image"
