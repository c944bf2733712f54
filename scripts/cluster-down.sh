#!/usr/bin/env bash
# Stop the local cluster started by cluster-up.sh, by the PIDs it recorded (same env as cluster-up.sh): first the real
# node (scripts/node-down.sh: containers, kubelet, kube-proxy, containerd, DNS, and the host changes undone), then
# the control plane. --purge also deletes its state (etcd data, certificates, kubeconfig, the node's image store).
set -euo pipefail
. "$(dirname "$0")/common.sh"
D=${KUBEWHISPER_CLUSTER_DIR:-$CACHE/cluster}
"$ROOT/scripts/node-down.sh" "$@" || log "node-down.sh failed (see above); stopping the control plane anyway"
# SIGTERM to the control plane at once (each takes 1-2 s to exit), then wait for all, SIGKILL after 5 s
pids=()
for p in scheduler controller-manager apiserver etcd; do
  f=$D/$p.pid
  [ -f "$f" ] || continue
  pid=$(cat "$f"); rm -f "$f"
  if kill "$pid" 2>/dev/null; then pids+=("$pid"); log "stopping $p ($pid)"; fi
done
for _ in $(seq 1 50); do
  running=0; for pid in ${pids[@]+"${pids[@]}"}; do kill -0 "$pid" 2>/dev/null && running=1; done
  [ $running = 0 ] && break; sleep 0.1
done
for pid in ${pids[@]+"${pids[@]}"}; do kill -9 "$pid" 2>/dev/null || true; done
if [ "${1:-}" = "--purge" ]; then rm -rf "$D"; log "removed $D"; fi
