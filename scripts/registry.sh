#!/usr/bin/env bash
# A private OCI registry on loopback, as platform teams run one: CNCF distribution with TLS
# (a CA this script makes) and htpasswd (bcrypt) authentication. scripts/release.sh pushes
# to it; the registry tests pull, verify and install from it.
#
#   scripts/registry.sh up       build or reuse the registry binary, make the CA, server
#                                certificate and credentials, start the registry and wait
#                                until /v2/ asks for credentials; prints what `env` prints
#   scripts/registry.sh env      shell assignments for a running registry:
#                                  MERGE_JOB_REGISTRY=127.0.0.1:PORT
#                                  MERGE_JOB_REGISTRY_CA=<CA certificate, PEM>
#                                  MERGE_JOB_REGISTRY_USERNAME=merge-job
#                                  MERGE_JOB_REGISTRY_PASSWORD=<generated>
#   scripts/registry.sh status   says whether it runs (exit 0) or not (exit 1)
#   scripts/registry.sh down     stop it (by PID) and remove its state: certificates,
#                                credentials and stored images; the built binary stays
#
# Every command is idempotent: `up` on a running registry only prints its settings, a
# second `down` does nothing. Needs Go the first time (scripts/install-release-tools.sh
# builds the pinned registry), openssl, curl and htpasswd (Debian's apache2-utils,
# installed when missing and running as root). Listens on 127.0.0.1 only.
#
# Environment:
#   MERGE_JOB_REGISTRY_STATE   state directory (default /tmp/merge-job-registry), removed by `down`
#   MERGE_JOB_REGISTRY_LOGS    the registry's log (default /tmp/merge-job-registry-logs), kept by `down`
# A second registry on the same machine needs its own state and logs directories.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
state=${MERGE_JOB_REGISTRY_STATE:-/tmp/merge-job-registry}
logs=${MERGE_JOB_REGISTRY_LOGS:-/tmp/merge-job-registry-logs}
cache=${MERGE_JOB_CACHE:-$HOME/.cache/merge-job}
registry_bin="$cache/bin/registry"
username=merge-job

# shellcheck source=lib/common.sh
source "$here/lib/common.sh"
# shellcheck source=e2e/lib/processes.sh
source "$here/e2e/lib/processes.sh"

host_packages() {
  command -v openssl >/dev/null || die "needs openssl"
  command -v curl >/dev/null || die "needs curl"
  # htpasswd writes the bcrypt password file distribution reads.
  debian_package htpasswd apache2-utils
}

# A CA of the registry's own and a server certificate for 127.0.0.1, which clients are
# told to trust (curl --cacert, skopeo --dest-cert-dir, helm --ca-file, containerd's hosts.toml).
make_pki() {
  local pki="$state/pki"
  mkdir -p "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=merge-job-registry-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$pki/ca.key" -out "$pki/ca.pem" 2>/dev/null
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1" >"$pki/server.ext"
  openssl req -new -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$pki/server.key" -out "$pki/server.csr" 2>/dev/null
  openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 7 -extfile "$pki/server.ext" -out "$pki/server.pem" 2>/dev/null
  rm -f "$pki/server.csr" "$pki/server.ext"
  chmod 600 "$pki"/*.key
}

# One user with a generated password, stored bcrypt-hashed for the registry (distribution
# accepts bcrypt only) and in clear for `env`.
make_credentials() {
  (umask 077 && openssl rand -hex 16 >"$state/password")
  htpasswd -B -i -c "$state/htpasswd" "$username" <"$state/password" 2>/dev/null
}

write_config() {
  cat >"$state/config.yml" <<EOF
# distribution's configuration (https://distribution.github.io/distribution/about/configuration/)
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $state/data
  # Tags are overwritten in place (a release re-run, the tests' re-push under one tag).
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$REGISTRY_PORT
  secret: $(openssl rand -hex 16)
  tls:
    certificate: $state/pki/server.pem
    key: $state/pki/server.key
auth:
  htpasswd:
    realm: merge-job-registry
    path: $state/htpasswd
EOF
}

answers_401() {
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --cacert "$state/pki/ca.pem" \
    "https://127.0.0.1:$REGISTRY_PORT/v2/")" = 401 ]
}

registry_running() {
  [ -f "$state/up.env" ] || return 1
  owned_pid registry >/dev/null || return 1
  # shellcheck source=/dev/null
  source "$state/up.env"
  answers_401
}

print_env() {
  printf 'MERGE_JOB_REGISTRY=%q\n' "127.0.0.1:$REGISTRY_PORT"
  printf 'MERGE_JOB_REGISTRY_CA=%q\n' "$state/pki/ca.pem"
  printf 'MERGE_JOB_REGISTRY_USERNAME=%q\n' "$username"
  printf 'MERGE_JOB_REGISTRY_PASSWORD=%q\n' "$(cat "$state/password")"
}

cmd_up() {
  if registry_running; then
    log "already running at 127.0.0.1:$REGISTRY_PORT"
    print_env
    return 0
  fi
  # A half-started or crashed registry: clear it first, so `up` always starts clean.
  [ -d "$state" ] && cmd_down
  host_packages
  bash "$here/install-release-tools.sh" registry
  mkdir -p "$state/pids" "$state/data" "$logs"
  : >"$state/up.env"
  allocate_ports REGISTRY_PORT
  make_pki
  make_credentials
  write_config
  # OTEL_TRACES_EXPORTER=none: distribution would otherwise export its request traces to
  # an OTLP collector it assumes on localhost.
  start registry OTEL_TRACES_EXPORTER=none "$registry_bin" serve "$state/config.yml"
  wait_for "the registry answering 401 on https://127.0.0.1:$REGISTRY_PORT/v2/" 30 answers_401 || {
    tail -n 20 "$logs/registry.log" >&2 || true
    cmd_down
    exit 1
  }
  log "registry $("$registry_bin" --version | awk '{print $NF}') up at 127.0.0.1:$REGISTRY_PORT (user $username); log in $logs/registry.log"
  print_env
}

cmd_env() {
  registry_running || die "no registry is running; run: $0 up"
  print_env
}

cmd_status() {
  if registry_running; then
    echo "running at 127.0.0.1:$REGISTRY_PORT (pid $(owned_pid registry)), state in $state"
  else
    echo "not running"
    return 1
  fi
}

cmd_down() {
  [ -d "$state" ] || { log "nothing to stop"; return 0; }
  stop registry
  rm -rf "$state"
  log "down; log kept in $logs"
}

case "${1:-}" in
  up) cmd_up ;;
  env) cmd_env ;;
  status) cmd_status ;;
  down) cmd_down ;;
  *)
    echo "usage: $0 up | env | status | down" >&2
    exit 2
    ;;
esac
