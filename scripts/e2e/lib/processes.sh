# shellcheck shell=bash disable=SC2154  # state and logs are set by the caller
# Process bookkeeping shared by scripts/e2e/k8s.sh and scripts/e2e/argocd.sh: each
# component's PID in "$state/pids/<name>", its output in "$logs/<name>.log". Sourced after
# scripts/lib/common.sh; the caller sets `state` and `logs`.
#
# A PID counts as ours only while its command line names a path under the state
# directory, so a recycled PID is never signalled: every component is started with such a
# path on its command line.

pidfile() { echo "$state/pids/$1"; }

owned_pid() {
  local file pid
  file=$(pidfile "$1")
  [ -f "$file" ] || return 1
  pid=$(cat "$file")
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF "$state/" || return 1
  echo "$pid"
}

# A component outlives the command that started it, so it must not keep that command's
# open descriptors: a lock the caller holds (`flock /work/…/heavy.lock scripts/… up` would
# otherwise stay locked until `down`), or a pipe a test reads to its end. The subshell
# closes every descriptor above stderr, then becomes the component (same PID).
start() { # name [VAR=value...] command args...
  local name=$1
  shift
  log "starting $name"
  (
    for fd in "/proc/$BASHPID/fd/"*; do
      fd=${fd##*/}
      [ "$fd" -gt 2 ] && eval "exec $fd>&-"
    done
    exec setsid env "$@" >"$logs/$name.log" 2>&1 </dev/null
  ) &
  echo $! >"$(pidfile "$name")"
}

# SIGTERM, a bounded wait, then SIGKILL.
stop_pid() {
  local pid=$1 _
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
}

stop() {
  local pid
  if pid=$(owned_pid "$1"); then
    log "stopping $1 (pid $pid)"
    stop_pid "$pid"
  fi
  rm -f "$(pidfile "$1")"
}

# allocate_ports NAME...: set each NAME to a port free on loopback now, and record it in
# "$state/up.env" (which `up` starts and later commands source).
allocate_ports() {
  local name
  for name in "$@"; do
    printf -v "$name" '%s' "$(free_port)"
    echo "$name=${!name}" >>"$state/up.env"
  done
}
