#!/usr/bin/env bash
# A real Argo CD beside scripts/e2e/k8s.sh's cluster, run as host processes: Redis, the repo
# server, the application controller and a Config Management Plugin server with the
# helmfile plugin of docs/deploy.md; plus a git server on loopback serving this repository.
#
#   scripts/e2e/argocd.sh up     start the cluster if needed (scripts/e2e/k8s.sh up), build
#                                or reuse the Argo CD binary (scripts/e2e/build-argocd.sh),
#                                start Argo CD; prints KUBECONFIG=…, ARGOCD_REPO_URL=… (what
#                                an Application's repoURL names) and ARGOCD_GIT_DIR=… (the
#                                served bare repository)
#   scripts/e2e/argocd.sh trust-registry HOST:PORT CA_FILE
#                                let the repo server pull Helm charts from that OCI registry
#                                (TLS signed by CA_FILE): the file a key of the
#                                argocd-tls-certs-cm ConfigMap puts in its TLS directory
#   scripts/e2e/argocd.sh down   stop what `up` started (by PID), remove Argo CD's objects
#                                from the cluster while it runs, and the state directory
#
# Both are idempotent: `up` on a running Argo CD only prints the lines above, a second
# `down` does nothing. `scripts/e2e/k8s.sh down` runs `down` first.
#
# The served repository is a bare clone holding MERGE_JOB_ARGOCD_REVISION (default HEAD)
# of this checkout as branch `main`; pushes to it (over git:// or to ARGOCD_GIT_DIR) are
# what Argo CD syncs. The plugin server runs helmfile with this script's environment, so
# the e2e environment's inputs (MERGE_JOB_E2E_*, environments/e2e.yaml.gotmpl) are taken
# from the caller, as a repo-server sidecar takes them from its container spec.
#
# Nothing listens beyond loopback except the controller's metrics port, which Argo CD
# binds on all addresses (no flag changes that); nothing sends traffic off the machine.
#
# Environment: MERGE_JOB_K8S_STATE, MERGE_JOB_K8S_LOGS (as scripts/e2e/k8s.sh);
#   MERGE_JOB_ARGOCD_STATE  state directory (default: argocd-<name of the cluster's state
#                           directory> beside it)
#   MERGE_JOB_ARGOCD_REVISION  the commit served as `main` (default HEAD)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
k8s_state=${MERGE_JOB_K8S_STATE:-/tmp/merge-job-k8s}
# Not a prefix of the cluster's state path: tools that find the cluster's processes by
# that path must not take Argo CD's for them.
state=${MERGE_JOB_ARGOCD_STATE:-$(dirname "$k8s_state")/argocd-$(basename "$k8s_state")}
logs=${MERGE_JOB_K8S_LOGS:-/tmp/merge-job-k8s-logs}/argocd
cache=${MERGE_JOB_CACHE:-$HOME/.cache/merge-job}
kubeconfig="$k8s_state/admin.kubeconfig"
namespace=argocd
plugin_doc="$repo/docs/deploy.md"
plugin_marker="argocd-cmp-plugin"
# Started in this order, stopped in the reverse one.
components=(git-daemon redis repo-server cmp-server application-controller)

# shellcheck source=../lib/common.sh
source "$here/../lib/common.sh"

# --- processes (the conventions of scripts/e2e/k8s.sh) --------------------------------------

# shellcheck source=lib/processes.sh
source "$here/lib/processes.sh"

# Children that outlive their parent (git daemon's per-connection servers, a helmfile the
# plugin server was running): whatever still names the state directory.
leftover_pids() {
  local dir
  for dir in /proc/[0-9]*; do
    [ "${dir#/proc/}" = $$ ] && continue
    tr '\0' ' ' 2>/dev/null <"$dir/cmdline" | grep -qF "$state/" && echo "${dir#/proc/}"
  done
  return 0
}

kubectl_admin() { "$K8S_BIN/kubectl" --kubeconfig "$kubeconfig" "$@"; }

# --- inputs --------------------------------------------------------------------------------

binaries() {
  eval "$(bash "$here/build-k8s.sh" --print-versions)"      # K8S_BIN
  eval "$(bash "$here/build-argocd.sh" --print-versions)"   # ARGOCD_VERSION, ARGOCD_BIN
  if [ ! -f "$ARGOCD_BIN/.complete" ]; then
    bash "$here/build-argocd.sh" >/dev/null
  fi
  if [ ! -x "$cache/bin/helm" ] || [ ! -x "$cache/bin/helmfile" ]; then
    bash "$here/../install-tools.sh"
  fi
}

host_packages() {
  command -v redis-server >/dev/null && command -v git >/dev/null && return 0
  command -v apt-get >/dev/null || die "needs redis-server and git (Debian packages) installed"
  log "installing redis-server and git from Debian"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server git >/dev/null ||
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server git >/dev/null; }
}

# The plugin.yaml users are told to give their repo server: the YAML block that follows the
# `<!-- argocd-cmp-plugin -->` marker in docs/deploy.md, unindented. Running the documented
# text itself is what keeps the document honest.
write_plugin_config() {
  mkdir -p "$state/cmp-config"
  python3 - "$plugin_doc" "$plugin_marker" >"$state/cmp-config/plugin.yaml" <<'EOF'
import re
import sys
import textwrap

text = open(sys.argv[1], encoding="utf-8").read()
found = re.search(
    r"<!-- " + re.escape(sys.argv[2]) + r"\b[^\n]*-->\s*\n([ \t]*)```yaml\n(.*?)\n[ \t]*```", text, re.S
)
if not found:
    sys.exit(f"{sys.argv[1]}: no ```yaml block after <!-- {sys.argv[2]} -->")
print(textwrap.dedent(found.group(2)))
EOF
}

serve_repository() {
  local revision=${MERGE_JOB_ARGOCD_REVISION:-HEAD}
  git init --quiet --bare --initial-branch=main "$state/git/merge-job.git"
  git -C "$repo" push --quiet "$state/git/merge-job.git" "$(git -C "$repo" rev-parse "$revision^{commit}"):refs/heads/main"
}

crd_established() {
  [ "$(kubectl_admin get crd "$1" -o jsonpath='{.status.conditions[?(@.type=="Established")].status}')" = True ]
}

apply_cluster_objects() {
  # The CRDs are large (ApplicationSet's is 1.5 MB): too large for a client-side apply's
  # last-applied annotation.
  kubectl_admin apply --server-side --force-conflicts -f "$ARGOCD_BIN/crds/" >/dev/null
  local crd
  for crd in applications appprojects; do
    wait_for "the $crd CRD established" 60 crd_established "$crd.argoproj.io"
  done
  kubectl_admin apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: $namespace}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: argocd-cm, namespace: $namespace, labels: {app.kubernetes.io/part-of: argocd}}
data: {}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: argocd-rbac-cm, namespace: $namespace, labels: {app.kubernetes.io/part-of: argocd}}
data: {}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: argocd-cmd-params-cm, namespace: $namespace, labels: {app.kubernetes.io/part-of: argocd}}
data: {}
---
apiVersion: v1
kind: Secret
metadata: {name: argocd-secret, namespace: $namespace, labels: {app.kubernetes.io/part-of: argocd}}
type: Opaque
---
# What Argo CD's API server would create on its first start (there is none here).
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: default, namespace: $namespace}
spec:
  sourceRepos: ['*']
  destinations: [{server: '*', namespace: '*'}]
  clusterResourceWhitelist: [{group: '*', kind: '*'}]
EOF
}

running() {
  [ -f "$state/up.env" ] || return 1
  local name
  for name in "${components[@]}"; do owned_pid "$name" >/dev/null || return 1; done
}

print_env() {
  # shellcheck source=/dev/null
  source "$state/up.env"
  echo "KUBECONFIG=$kubeconfig"
  echo "ARGOCD_REPO_URL=git://127.0.0.1:$GIT_PORT/merge-job.git"
  echo "ARGOCD_GIT_DIR=$state/git/merge-job.git"
}

# --- commands ------------------------------------------------------------------------------

cmd_up() {
  [ "$(id -u)" = 0 ] || die "needs root (as scripts/e2e/k8s.sh)"
  bash "$here/k8s.sh" up >/dev/null
  binaries
  if running; then
    log "already running (Argo CD $ARGOCD_VERSION)"
    print_env
    return 0
  fi
  [ -d "$state" ] && cmd_down
  host_packages
  local started
  started=$(date +%s)
  mkdir -p "$state"/{pids,bin,git,plugins,tmp,home,redis,tls} "$logs"
  rm -f "$logs"/*.log
  local role
  for role in argocd-repo-server argocd-cmp-server argocd-application-controller; do
    ln -s "$ARGOCD_BIN/$role" "$state/bin/$role"
  done
  write_plugin_config
  serve_repository
  echo "ARGOCD_VERSION=$ARGOCD_VERSION" >"$state/up.env"
  allocate_ports GIT_PORT REDIS_PORT REPO_PORT REPO_METRICS_PORT CONTROLLER_METRICS_PORT
  # Every role gets its own HOME and TMPDIR here: git, helm and helmfile write caches
  # there, and `down` removes them with the state directory.
  local base=(HOME="$state/home" TMPDIR="$state/tmp" ARGOCD_PLUGINSOCKFILEPATH="$state/plugins")

  start git-daemon "$(git --exec-path)/git-daemon" --listen=127.0.0.1 --port="$GIT_PORT" --reuseaddr \
    --export-all --enable=receive-pack --base-path="$state/git" "$state/git"
  # Redis replaces its command line with a title; this one keeps the config path in it.
  cat >"$state/redis/redis.conf" <<EOF
bind 127.0.0.1
port $REDIS_PORT
protected-mode yes
daemonize no
save ""
appendonly no
dir $state/redis
proc-title-template "{title} {listen-addr} {config-file}"
EOF
  start redis redis-server "$state/redis/redis.conf"
  # The repo server runs git-verify-wrapper.sh (and gpg-wrapper.sh) on every manifest
  # generation, even with GPG verification off: they sit beside the binary.
  # It pulls charts from OCI registries with helm (the pinned one) and trusts the CAs in
  # ARGOCD_TLS_DATA_PATH, where a real installation mounts argocd-tls-certs-cm.
  start repo-server "${base[@]}" PATH="$ARGOCD_BIN:$cache/bin:$PATH" ARGOCD_GPG_ENABLED=false \
    ARGOCD_TLS_DATA_PATH="$state/tls" \
    "$state/bin/argocd-repo-server" --redis "127.0.0.1:$REDIS_PORT" \
    --address 127.0.0.1 --port "$REPO_PORT" \
    --metrics-address 127.0.0.1 --metrics-port "$REPO_METRICS_PORT" \
    --disable-tls --client-ca-path= --logformat text
  # The sidecar of docs/deploy.md: helm and helmfile at the pinned versions on its PATH.
  start cmp-server "${base[@]}" PATH="$cache/bin:$PATH" \
    "$state/bin/argocd-cmp-server" --config-dir-path "$state/cmp-config" --logformat text
  apply_cluster_objects
  wait_for "Redis answering" 30 port_open "$REDIS_PORT"
  wait_for "the repo server answering" 60 port_open "$REPO_PORT"
  wait_for "the helmfile plugin's socket" 60 sh -c "ls '$state/plugins/' | grep -q '\.sock$'"
  # With ARGOCD_FAKE_IN_CLUSTER, https://kubernetes.default.svc (the in-cluster
  # destination) is the cluster of KUBECONFIG.
  start application-controller "${base[@]}" ARGOCD_FAKE_IN_CLUSTER=true KUBECONFIG="$kubeconfig" \
    "$state/bin/argocd-application-controller" --kubeconfig "$kubeconfig" --namespace "$namespace" \
    --redis "127.0.0.1:$REDIS_PORT" --repo-server "127.0.0.1:$REPO_PORT" --repo-server-plaintext \
    --metrics-port "$CONTROLLER_METRICS_PORT" --logformat text
  wait_for "the application controller healthy" 120 \
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=2)' \
    "$CONTROLLER_METRICS_PORT"
  wait_for "git daemon answering" 30 git ls-remote "git://127.0.0.1:$GIT_PORT/merge-job.git"
  log "Argo CD $ARGOCD_VERSION up in $(($(date +%s) - started)) s"
  print_env
}

cmd_trust_registry() {
  local host=${1:-} ca=${2:-}
  if [ -z "$host" ] || [ -z "$ca" ]; then die "usage: $0 trust-registry HOST:PORT CA_FILE"; fi
  [[ "$host" =~ ^[A-Za-z0-9.-]+(:[0-9]+)?$ ]] || die "trust-registry: HOST[:PORT] expected, got $host"
  openssl x509 -in "$ca" -noout 2>/dev/null || die "trust-registry: $ca is not a PEM certificate"
  [ -d "$state/tls" ] || die "Argo CD is not running; run: $0 up"
  # Argo CD looks the CA up by host name without the port, as argocd-tls-certs-cm keys it.
  cp "$ca" "$state/tls/${host%%:*}.tmp"
  mv "$state/tls/${host%%:*}.tmp" "$state/tls/${host%%:*}"
  log "the repo server trusts ${host%%:*} (CA $ca)"
}

cmd_down() {
  [ -d "$state" ] || { log "nothing to stop"; return 0; }
  local i pid
  for ((i = ${#components[@]} - 1; i >= 0; i--)); do stop "${components[i]}"; done
  for pid in $(leftover_pids); do
    log "stopping left-over process $pid"
    stop_pid "$pid"
  done
  # Argo CD's own objects, while the cluster still answers; what the Applications deployed
  # stays (it is the cluster's content, removed with the cluster).
  eval "$(bash "$here/build-k8s.sh" --print-versions)"
  if [ -f "$kubeconfig" ] && kubectl_admin get --raw /readyz >/dev/null 2>&1; then
    local app
    for app in $(kubectl_admin -n "$namespace" get applications.argoproj.io -o name 2>/dev/null); do
      # No controller runs to honour a finalizer.
      kubectl_admin -n "$namespace" patch "$app" --type merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
    done
    kubectl_admin delete namespace "$namespace" --ignore-not-found --timeout 60s >/dev/null 2>&1 || true
    kubectl_admin delete crd applications.argoproj.io applicationsets.argoproj.io appprojects.argoproj.io \
      --ignore-not-found --timeout 60s >/dev/null 2>&1 || true
  fi
  rm -rf "$state"
  log "down; logs kept in $logs"
}

case "${1:-}" in
  up) cmd_up ;;
  trust-registry) shift; cmd_trust_registry "$@" ;;
  down) cmd_down ;;
  *)
    echo "usage: $0 up | trust-registry HOST:PORT CA_FILE | down" >&2
    exit 2
    ;;
esac
