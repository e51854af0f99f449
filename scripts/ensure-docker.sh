#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine.
#
# CI machines ship only the docker client: install the engine from Debian's packages
# and start dockerd in the background when nothing answers. A laptop with Docker
# Desktop (or any running engine) returns at once.
set -euo pipefail

# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

if docker info >/dev/null 2>&1; then
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "no Docker engine answers and this script can only install one as root on Debian; start Docker and retry"
    exit 1
  fi
  log "installing docker.io from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io >/dev/null
fi

log "starting dockerd in the background (log: /var/log/merge-job-dockerd.log)"
nohup dockerd >/var/log/merge-job-dockerd.log 2>&1 &

# Bounded wait: dockerd is usually up within a few seconds.
wait_for "dockerd answering (see /var/log/merge-job-dockerd.log)" 60 docker info || exit 1
log "engine is up"
