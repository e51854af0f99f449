# shellcheck shell=bash
# What every script under scripts/ shares. Sourced (bash), never run:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
#
#   log MESSAGE...                      one line on stderr, tagged with the script's name
#   die MESSAGE...                      log, then exit 1
#   wait_for WHAT SECONDS COMMAND...    run COMMAND (output discarded) every 0.2 s until it
#                                       succeeds; after SECONDS say that WHAT did not happen
#                                       (and where the logs are, when the caller sets `logs`)
#                                       and return 1
#   free_port                           a TCP port free on 127.0.0.1 at this moment
#   port_open PORT                      succeeds when something accepts on 127.0.0.1:PORT
#   debian_package COMMAND PACKAGE      install PACKAGE from Debian when COMMAND is missing
#                                       (root and apt-get needed; else die naming it)
#
# The tag is the file name of the script that was run, without .sh (`[build-image] …`);
# a script sets `log_tag` before sourcing to choose another.

log_tag=${log_tag:-$(basename "$0" .sh)}

log() { printf '[%s] %s\n' "$log_tag" "$*" >&2; }

die() {
  log "$*"
  exit 1
}

wait_for() {
  local what=$1 seconds=$2 _
  shift 2
  for _ in $(seq 1 $((seconds * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  log "$what did not happen within ${seconds}s${logs:+; logs in $logs}"
  return 1
}

# Ports are asked of the kernel rather than chosen, so two checkouts (or a developer's
# services) on one machine never collide.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

port_open() {
  python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$1"
}

debian_package() {
  command -v "$1" >/dev/null && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    die "needs $1 (Debian: apt-get install $2)"
  fi
  log "installing $2 ($1) from Debian"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 \
    || { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }
}
