#!/usr/bin/env bash
# A real single-node Kubernetes for merge-job's end-to-end tests, made of upstream
# components: etcd, kube-apiserver (RBAC, Pod Security admission, a service-account
# issuer), kube-controller-manager, kube-scheduler and a kubelet on a containerd of its own.
#
#   scripts/e2e/k8s.sh up                 build or reuse the binaries, start the cluster,
#                                         wait until the node is Ready; last line:
#                                         KUBECONFIG=<path>
#   scripts/e2e/k8s.sh load-image IMAGE   copy a local Docker image into the node's containerd
#   scripts/e2e/k8s.sh trust-registry HOST:PORT CA_FILE
#                                         let the node pull from that registry over TLS
#                                         signed by CA_FILE (a hosts.toml the node's
#                                         containerd reads at pull time; no restart)
#   scripts/e2e/k8s.sh host-ip            the address at which pods reach services on this host
#   scripts/e2e/k8s.sh down               stop what `up` started (by PID) and remove the
#                                         links, network namespaces, mounts and cgroups it made
#
# Every command is idempotent: `up` on a running cluster only prints its KUBECONFIG, a
# second `down` does nothing. Needs root on Linux (a kubelet mounts, makes cgroups and
# network namespaces), Docker (images come from `docker save`), Go (scripts/e2e/build-k8s.sh
# builds the pinned binaries once) and Debian's containerd, runc and
# containernetworking-plugins (installed when missing).
#
# Nothing here sends traffic off the machine: every component listens on loopback; the
# node's address is on a bridge this script creates (pods and the host meet there), the
# API server never resolves host names. Images are imported, or pulled from a registry on
# loopback that `trust-registry` names (the node's containerd runs on the host's network).
#
# Environment (defaults suit a machine running one such cluster):
#   MERGE_JOB_K8S_STATE    state directory (default /tmp/merge-job-k8s), removed by `down`
#   MERGE_JOB_K8S_LOGS     component logs (default /tmp/merge-job-k8s-logs), kept by `down`
#   MERGE_JOB_K8S_BRIDGE   bridge name (default mjk8s0)
#   MERGE_JOB_K8S_SUBNET   first three octets of the node's /24 (default 10.213.0); the
#                          services' virtual range is the next /24 (not routed: no kube-proxy)
# A second cluster on the same machine needs its own state, logs, bridge and a subnet two
# /24s away (e.g. MERGE_JOB_K8S_SUBNET=10.213.2); everything else is named after those.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
state=${MERGE_JOB_K8S_STATE:-/tmp/merge-job-k8s}
logs=${MERGE_JOB_K8S_LOGS:-/tmp/merge-job-k8s-logs}
bridge=${MERGE_JOB_K8S_BRIDGE:-mjk8s0}
subnet=${MERGE_JOB_K8S_SUBNET:-10.213.0}
host_ip="$subnet.1"
service_range="${subnet%.*}.$((${subnet##*.} + 1)).0/24"
node_name=merge-job-node
# Named after the bridge, so two clusters with their own state, bridge and subnet (two
# checkouts testing at once) never share a CNI network or a cgroup parent.
cni_network=merge-job-$bridge
# Pods' cgroups live under this parent in every cgroup v1 hierarchy, so `down` removes
# exactly what the kubelet made and nothing of another kubelet's.
cgroup_root=merge-job-$bridge
pause_image=docker.io/merge-job-k8s/pause:1
netns_dir=/var/run/netns

# shellcheck source=../lib/common.sh
source "$here/../lib/common.sh"

require_host() {
  [ "$(uname -s)" = Linux ] || die "needs Linux (a kubelet and containerd run here); this is $(uname -s)"
  [ "$(id -u)" = 0 ] || die "needs root (the kubelet mounts volumes, makes cgroups and network namespaces)"
}

# --- processes ---------------------------------------------------------------------------

# shellcheck source=lib/processes.sh
source "$here/lib/processes.sh"

# containerd's shims outlive containerd by design; ours are the ones told our socket.
shim_pids() {
  local dir
  for dir in /proc/[0-9]*; do
    tr '\0' ' ' 2>/dev/null <"$dir/cmdline" | grep -qE "containerd-shim[^ ]* .*-address $state/containerd/containerd.sock( |$)" \
      && echo "${dir#/proc/}"
  done
  return 0
}

# Container processes: whatever still sits in the pods' cgroups.
pod_pids() {
  [ -d "/sys/fs/cgroup/pids/$cgroup_root" ] || return 0
  find "/sys/fs/cgroup/pids/$cgroup_root" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u
}

# --- PKI -----------------------------------------------------------------------------------

issue() { # name subject [subjectAltName]
  local name=$1 subject=$2 san=${3:-} ext
  ext="$state/pki/$name.ext"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$san" ]; then
      echo "extendedKeyUsage=serverAuth,clientAuth"
      echo "subjectAltName=$san"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$ext"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$state/pki/$name.key" -subj "$subject" \
    -out "$state/pki/$name.csr" 2>/dev/null
  openssl x509 -req -in "$state/pki/$name.csr" -CA "$state/pki/ca.crt" -CAkey "$state/pki/ca.key" \
    -CAcreateserial -days 7 -extfile "$ext" -out "$state/pki/$name.crt" 2>/dev/null
  rm -f "$state/pki/$name.csr" "$ext"
}

make_pki() {
  mkdir -p "$state/pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=merge-job-k8s-ca" \
    -keyout "$state/pki/ca.key" -out "$state/pki/ca.crt" 2>/dev/null
  issue apiserver "/CN=kube-apiserver" \
    "IP:127.0.0.1,IP:$host_ip,IP:${service_range%.0/24}.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
  issue apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  issue admin "/O=system:masters/CN=merge-job-admin"
  issue controller-manager "/CN=system:kube-controller-manager"
  issue scheduler "/CN=system:kube-scheduler"
  issue kubelet-client "/O=system:nodes/CN=system:node:$node_name"
  issue kubelet "/CN=$node_name" "IP:$host_ip,DNS:$node_name"
  openssl genrsa -out "$state/pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$state/pki/sa.key" -pubout -out "$state/pki/sa.pub" 2>/dev/null
}

kubeconfig() { # name client-cert-name
  cat >"$state/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: merge-job-k8s
    cluster:
      certificate-authority: $state/pki/ca.crt
      server: https://127.0.0.1:$API_PORT
users:
  - name: $1
    user:
      client-certificate: $state/pki/$2.crt
      client-key: $state/pki/$2.key
contexts:
  - name: merge-job-k8s
    context: {cluster: merge-job-k8s, user: $1}
current-context: merge-job-k8s
EOF
}

# --- configuration files -------------------------------------------------------------------

write_containerd_config() {
  mkdir -p "$state/containerd" "$state/cni/net.d" "$state/cni/networks"
  cat >"$state/containerd/config.toml" <<EOF
# containerd for merge-job's test node only: its own root, state and socket, never the
# Docker engine's.
version = 2
root = "$state/containerd/root"
state = "$state/containerd/state"
# The overlayfs snapshotter is all the node uses; the others would probe the host.
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$state/containerd/containerd.sock"

[ttrpc]
  address = "$state/containerd/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$state/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  # The sandbox image is imported by \`up\`, never pulled.
  sandbox_image = "$pause_image"
  # Without CAP_SYS_RESOURCE (a containerized host) runc cannot lower oom_score_adj and
  # every sandbox would fail to start.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  # One <host:port>/hosts.toml per registry the node trusts (\`trust-registry\`).
  # containerd reads this directory at each pull, so a registry can be added to a
  # running node; a registry without an entry is reached with the system's CAs.
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$state/containerd/certs.d"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$state/cni/net.d"
    max_conf_num = 1
EOF
  # Pods get addresses on the node's own bridge; the bridge address is where they reach
  # the host. No masquerading: pods never need to leave the machine.
  cat >"$state/cni/net.d/10-$cni_network.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$cni_network",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "dataDir": "$state/cni/networks",
        "ranges": [[{"subnet": "$subnet.0/24", "rangeStart": "$subnet.16", "rangeEnd": "$subnet.250", "gateway": "$host_ip"}]],
        "routes": [{"dst": "$subnet.0/24"}]
      }
    }
  ]
}
EOF
}

write_kubelet_config() {
  mkdir -p "$state/kubelet" "$logs/pods"
  : >"$state/resolv.conf"  # pods resolve nothing: no DNS traffic can leave the machine
  cat >"$state/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $host_ip
port: $KUBELET_PORT
readOnlyPort: 0
healthzPort: 0
tlsCertFile: $state/pki/kubelet.crt
tlsPrivateKeyFile: $state/pki/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $state/pki/ca.crt}
authorization:
  mode: AlwaysAllow
containerRuntimeEndpoint: unix://$state/containerd/containerd.sock
# The test machines run cgroup v1 (hybrid); the kubelet refuses it unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$cgroup_root
failSwapOn: false
# Leave the host's iptables alone.
makeIPTablesUtilChains: false
resolvConf: $state/resolv.conf
podLogsDir: $logs/pods
volumePluginDir: $state/kubelet/volume-plugins
# A test machine's disk may be fuller than a production node's: never evict for it.
evictionHard: {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
EOF
}

# --- cgroups, network, mounts -------------------------------------------------------------

cgroup_hierarchies() {
  local dir
  for dir in /sys/fs/cgroup/*/; do
    dir=${dir%/}
    # The v1 hierarchies, and the unified one of a hybrid host (runc mirrors paths there).
    case "$(stat -fc %T "$dir" 2>/dev/null)" in cgroupfs | cgroup2fs) echo "$dir" ;; esac
  done
  return 0
}

make_cgroups() {
  local dir
  for dir in $(cgroup_hierarchies); do mkdir -p "$dir/$cgroup_root"; done
  # cpuset children start empty; inherit the machine's CPUs and memory nodes.
  if [ -d "/sys/fs/cgroup/cpuset/$cgroup_root" ]; then
    cat /sys/fs/cgroup/cpuset/cpuset.cpus >"/sys/fs/cgroup/cpuset/$cgroup_root/cpuset.cpus"
    cat /sys/fs/cgroup/cpuset/cpuset.mems >"/sys/fs/cgroup/cpuset/$cgroup_root/cpuset.mems"
  fi
}

remove_cgroups() {
  local dir
  for dir in $(cgroup_hierarchies); do
    [ -d "$dir/$cgroup_root" ] || continue
    find "$dir/$cgroup_root" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [ ! -d "$dir/$cgroup_root" ] || log "could not remove cgroup $dir/$cgroup_root"
  done
}

make_bridge() {
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    # Refuse to shadow addresses this machine already routes somewhere.
    if ip route show "$subnet.0/24" | grep -q .; then
      die "$subnet.0/24 is already routed on this machine; set MERGE_JOB_K8S_SUBNET"
    fi
    ip link add "$bridge" type bridge
  fi
  ip addr replace "$host_ip/24" dev "$bridge"
  ip link set "$bridge" up
}

our_mounts() {
  # Deepest first, so nested mounts go before their parents.
  findmnt -rn -o TARGET | grep -E "^($state|$logs)(/|$)" | awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2- || true
}

# Network namespaces the node's containerd made (cni-<uuid>), told apart from any other
# runtime's by the list taken when `up` started; only empty ones are removed.
our_netns() {
  [ -d "$netns_dir" ] || return 0
  local path name
  for path in "$netns_dir"/cni-*; do
    [ -e "$path" ] || continue
    name=${path##*/}
    grep -qxF "$name" "$state/netns-before" 2>/dev/null && continue
    echo "$name"
  done
  return 0
}

# --- readiness ---------------------------------------------------------------------------

kubectl_admin() { "$K8S_BIN/kubectl" --kubeconfig "$state/admin.kubeconfig" "$@"; }

cluster_running() {
  [ -f "$state/up.env" ] || return 1
  local name
  for name in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet; do
    owned_pid "$name" >/dev/null || return 1
  done
  # shellcheck source=/dev/null
  source "$state/up.env"
  kubectl_admin get --raw /readyz >/dev/null 2>&1
}

node_ready() {
  [ "$(kubectl_admin get node "$node_name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

# --- commands ------------------------------------------------------------------------------

binaries() {
  local versions
  versions=$(bash "$here/build-k8s.sh" --print-versions)
  eval "$versions"  # K8S_VERSION, ETCD_VERSION, K8S_BIN
  if [ ! -f "$K8S_BIN/.complete" ]; then
    bash "$here/build-k8s.sh" >/dev/null
  fi
}

host_packages() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] || missing+=(containernetworking-plugins)
  command -v docker >/dev/null || die "needs Docker (images come from docker save); run scripts/ensure-docker.sh"
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "needs ${missing[*]} (Debian packages) installed"
  log "installing ${missing[*]} from Debian"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }
}

import_image() { # docker image reference
  docker save "$1" | ctr --address "$state/containerd/containerd.sock" -n k8s.io images import - >/dev/null
}

pause_image_into_node() {
  local rootfs
  if ! docker image inspect "${pause_image#docker.io/}" >/dev/null 2>&1; then
    rootfs=$(mktemp -d)
    cp "$K8S_BIN/pause" "$rootfs/pause"
    tar -C "$rootfs" -c pause | docker import --change 'ENTRYPOINT ["/pause"]' - "${pause_image#docker.io/}" >/dev/null
    rm -rf "$rootfs"
  fi
  import_image "${pause_image#docker.io/}"
}

cmd_up() {
  require_host
  binaries
  if cluster_running; then
    log "already running ($K8S_VERSION)"
    echo "KUBECONFIG=$state/admin.kubeconfig"
    return 0
  fi
  # A half-started or crashed cluster: clear it first, so `up` always starts clean.
  [ -d "$state" ] && cmd_down
  host_packages
  local started
  started=$(date +%s)
  mkdir -p "$state/pids" "$logs"
  rm -rf "$logs"/*.log "$logs/pods"
  ls "$netns_dir" 2>/dev/null >"$state/netns-before" || : >"$state/netns-before"

  printf 'K8S_VERSION=%s\nK8S_BIN=%s\n' "$K8S_VERSION" "$K8S_BIN" >"$state/up.env"
  allocate_ports ETCD_PORT ETCD_PEER_PORT API_PORT KUBELET_PORT

  make_pki
  kubeconfig admin admin
  kubeconfig controller-manager controller-manager
  kubeconfig scheduler scheduler
  kubeconfig kubelet kubelet-client
  make_bridge
  make_cgroups
  write_containerd_config
  write_kubelet_config

  start etcd "$K8S_BIN/etcd" --name merge-job-k8s --data-dir "$state/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "merge-job-k8s=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync
  start containerd containerd --config "$state/containerd/config.toml"

  # Node authorization and NodeRestriction as on a real cluster; Pod Security admission
  # enforces the namespace labels. The kubelet is reached by its InternalIP: looking its
  # name up would be DNS traffic off the machine.
  start kube-apiserver "$K8S_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --secure-port "$API_PORT" \
    --advertise-address 127.0.0.1 --endpoint-reconciler-type none \
    --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction,PodSecurity \
    --client-ca-file "$state/pki/ca.crt" \
    --tls-cert-file "$state/pki/apiserver.crt" --tls-private-key-file "$state/pki/apiserver.key" \
    --kubelet-client-certificate "$state/pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$state/pki/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$state/pki/sa.pub" \
    --service-account-signing-key-file "$state/pki/sa.key" \
    --service-cluster-ip-range "$service_range" \
    --profiling=false
  wait_for "etcd and the API server ready" 120 kubectl_admin get --raw /readyz

  start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$state/controller-manager.kubeconfig" \
    --secure-port 0 --leader-elect=false \
    --use-service-account-credentials \
    --service-account-private-key-file "$state/pki/sa.key" \
    --root-ca-file "$state/pki/ca.crt" \
    --profiling=false
  start kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig "$state/scheduler.kubeconfig" \
    --secure-port 0 --leader-elect=false --profiling=false

  wait_for "containerd answering" 60 ctr --address "$state/containerd/containerd.sock" version
  pause_image_into_node
  start kubelet "$K8S_BIN/kubelet" \
    --config "$state/kubelet-config.yaml" \
    --kubeconfig "$state/kubelet.kubeconfig" \
    --root-dir "$state/kubelet" \
    --cert-dir "$state/kubelet/pki" \
    --hostname-override "$node_name" \
    --node-ip "$host_ip"
  wait_for "node $node_name Ready" 120 node_ready
  # Pods are created only once the namespace's default ServiceAccount exists; a cluster
  # is usable when the controllers made it.
  wait_for "the default ServiceAccount" 60 kubectl_admin -n default get serviceaccount default
  log "Kubernetes $K8S_VERSION up in $(($(date +%s) - started)) s; node $node_name at $host_ip"
  echo "KUBECONFIG=$state/admin.kubeconfig"
}

cmd_load_image() {
  require_host
  [ -n "${1:-}" ] || die "usage: $0 load-image IMAGE"
  cluster_running || die "no cluster is running; run: $0 up"
  docker image inspect "$1" >/dev/null 2>&1 || die "no local Docker image $1"
  import_image "$1"
  log "loaded $1 into the node"
}

cmd_trust_registry() {
  require_host
  local host=${1:-} ca=${2:-}
  if [ -z "$host" ] || [ -z "$ca" ]; then die "usage: $0 trust-registry HOST:PORT CA_FILE"; fi
  [[ "$host" =~ ^[A-Za-z0-9.-]+:[0-9]+$ ]] || die "trust-registry: HOST:PORT expected (e.g. 127.0.0.1:5000), got $host"
  [ -f "$ca" ] || die "trust-registry: no CA file $ca"
  openssl x509 -in "$ca" -noout 2>/dev/null || die "trust-registry: $ca is not a PEM certificate"
  cluster_running || die "no cluster is running; run: $0 up"
  grep -qF "config_path = \"$state/containerd/certs.d\"" "$state/containerd/config.toml" \
    || die "the running node predates registry support (no config_path); run: $0 down && $0 up"
  local dir="$state/containerd/certs.d/$host"
  mkdir -p "$dir"
  # A copy, so the node keeps trusting the registry whatever happens to the caller's file.
  cp "$ca" "$dir/ca.crt"
  # Written whole and renamed: a pull that reads it meanwhile sees the old or the new file.
  cat >"$dir/hosts.toml.tmp" <<EOF
server = "https://$host"

[host."https://$host"]
  capabilities = ["pull", "resolve"]
  ca = "$dir/ca.crt"
EOF
  mv "$dir/hosts.toml.tmp" "$dir/hosts.toml"
  log "the node trusts https://$host (CA $ca)"
}

cmd_host_ip() {
  echo "$host_ip"
}

cmd_down() {
  require_host
  # Argo CD (scripts/e2e/argocd.sh, same default state path) runs against this cluster: first.
  local argocd_state=${MERGE_JOB_ARGOCD_STATE:-$(dirname "$state")/argocd-$(basename "$state")}
  [ ! -d "$argocd_state" ] || bash "$here/argocd.sh" down
  [ -d "$state" ] || { log "nothing to stop"; return 0; }
  if [ -f "$state/up.env" ]; then
    # shellcheck source=/dev/null
    source "$state/up.env"
  fi
  # Pods first, through the API, so the kubelet stops their sandboxes and the bridge
  # plugin releases their addresses, veths and network namespaces.
  if [ -n "${K8S_BIN:-}" ] && owned_pid kubelet >/dev/null && kubectl_admin get --raw /readyz >/dev/null 2>&1; then
    # No CronJob or Job may start another pod meanwhile.
    kubectl_admin delete cronjobs,jobs --all --all-namespaces --wait=false >/dev/null 2>&1 || true
    kubectl_admin delete pods --all --all-namespaces --grace-period=1 --wait=false >/dev/null 2>&1 || true
    wait_for "pods deleted" 60 sh -c "[ -z \"\$($K8S_BIN/kubectl --kubeconfig $state/admin.kubeconfig get pods -A -o name 2>/dev/null)\" ]" || true
    # The kubelet stops a deleted pod's sandbox shortly after the pod is gone.
    wait_for "sandboxes stopped" 30 sh -c "[ -z \"\$(ls $netns_dir 2>/dev/null | grep -xFv -f $state/netns-before | grep '^cni-')\" ]" || true
  fi
  stop kubelet
  # Containers left over (the API was down): kill and delete them through containerd.
  if owned_pid containerd >/dev/null; then
    local ctr_cmd=(ctr --address "$state/containerd/containerd.sock" -n k8s.io) id
    for id in $("${ctr_cmd[@]}" tasks ls -q 2>/dev/null); do
      "${ctr_cmd[@]}" tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
    done
    sleep 0.5
    for id in $("${ctr_cmd[@]}" tasks ls -q 2>/dev/null); do
      "${ctr_cmd[@]}" tasks delete -f "$id" >/dev/null 2>&1 || true
    done
  fi
  stop containerd
  local pid
  for pid in $(shim_pids) $(pod_pids); do
    log "stopping left-over container process $pid"
    stop_pid "$pid"
  done
  stop kube-scheduler
  stop kube-controller-manager
  stop kube-apiserver
  stop etcd

  local mount name
  while read -r mount; do
    [ -n "$mount" ] || continue
    umount "$mount" 2>/dev/null || umount -l "$mount" 2>/dev/null || log "could not unmount $mount"
  done < <(our_mounts)
  for name in $(our_netns); do
    if [ -z "$(ip netns pids "$name" 2>/dev/null)" ]; then
      umount "$netns_dir/$name" 2>/dev/null || true
      rm -f "$netns_dir/$name"
    fi
  done
  # veths die with their namespaces; the bridge is ours by name.
  ip link del "$bridge" 2>/dev/null || true
  remove_cgroups
  # The kubelet links each container's log into /var/log/containers.
  find /var/log/containers -maxdepth 1 -lname "$logs/pods/*" -delete 2>/dev/null || true
  # The CNI library caches results outside the state directory.
  rm -f /var/lib/cni/results/"$cni_network"-* 2>/dev/null || true
  rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null || true  # only when empty
  rm -rf "$state"
  log "down; component logs kept in $logs"
}

case "${1:-}" in
  up) cmd_up ;;
  load-image) shift; cmd_load_image "$@" ;;
  trust-registry) shift; cmd_trust_registry "$@" ;;
  host-ip) cmd_host_ip ;;
  down) cmd_down ;;
  *)
    echo "usage: $0 up | load-image IMAGE | trust-registry HOST:PORT CA_FILE | host-ip | down" >&2
    exit 2
    ;;
esac
