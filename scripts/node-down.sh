#!/usr/bin/env bash
# Stop the real node started by node-up.sh (same env), by the PIDs it recorded, and undo its host changes: containers
# (killed through our containerd socket, then its shims by their socket path), iptables KUBE-*/CNI-* chains, the
# bridge, mounts under $D/node, kubepods cgroups, sysctls (back to $D/node/baseline.sysctl) and kubelet's and
# containerd's hard-coded dirs (removed when they were absent before). Called by cluster-down.sh.
# The machine-wide part runs only when this state dir owns the node (/run/kubewhisper-node names it), so stopping a
# second cluster never touches the node of the first. --purge also deletes the image store ($D/node/containerd/root).
set -uo pipefail
. "$(dirname "$0")/common.sh"
D=${KUBEWHISPER_CLUSTER_DIR:-$CACHE/cluster}
N=$D/node
SOCK=$N/containerd.sock
BRIDGE=kubewhisper0
MARK=/run/kubewhisper-node
[ -d "$N" ] || exit 0
alive() { [ -f "$N/$1.pid" ] && kill -0 "$(cat "$N/$1.pid")" 2>/dev/null; }
stop() {  # stop NAME...: SIGTERM to all by PID at once, wait up to 10 s for all, then SIGKILL
  local n pid running pids=()
  for n in "$@"; do
    [ -f "$N/$n.pid" ] || continue
    pid=$(cat "$N/$n.pid"); rm -f "$N/$n.pid"
    kill "$pid" 2>/dev/null && pids+=("$pid") && log "stopping $n ($pid)"
  done
  for _ in $(seq 1 100); do
    running=0; for pid in ${pids[@]+"${pids[@]}"}; do kill -0 "$pid" 2>/dev/null && running=1; done
    [ $running = 0 ] && return 0; sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
}
owner=0
if [ "$(cat "$MARK" 2>/dev/null)" = "$D" ] || { [ ! -f "$MARK" ] && [ -f "$N/baseline.sysctl" ]; }; then owner=1; fi

# 1. kube-proxy and kubelet first, so nothing re-creates what is torn down below
stop kube-proxy kubelet
# 2. the pods' containers, through our own containerd (Debian 12 has no crictl)
if alive containerd; then
  CTR=(ctr --address "$SOCK" -n k8s.io)
  tasks=$("${CTR[@]}" tasks ls -q 2>/dev/null)
  for c in $tasks; do "${CTR[@]}" tasks kill -s SIGKILL "$c" >/dev/null 2>&1; done
  for c in $tasks; do
    for _ in $(seq 1 50); do "${CTR[@]}" tasks delete "$c" >/dev/null 2>&1 && break; sleep 0.1; done
  done
  for c in $("${CTR[@]}" containers ls -q 2>/dev/null); do "${CTR[@]}" containers delete "$c" >/dev/null 2>&1; done
fi
stop containerd dns
# shims outlive containerd on purpose; ours are containerd-shim processes given our socket path
for p in /proc/[0-9]*; do
  case $(readlink "$p/exe" 2>/dev/null) in */containerd-shim*) ;; *) continue;; esac
  if tr '\0' '\n' < "$p/cmdline" 2>/dev/null | grep -qxF -- "$SOCK"; then
    kill -9 "${p#/proc/}" 2>/dev/null && log "stopped shim ${p#/proc/}"
  fi
done
# 3. mounts under the node's state dir (netns, pod volumes, overlay rootfs, kubelet's bind of its root dir), deepest
#    first, a few passes because unmounting one can reveal another
for _ in 1 2 3; do
  awk -v n="$N/" 'index($5, n) == 1 {print $5}' /proc/self/mountinfo | sort -ru | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
done
if awk -v n="$N/" 'index($5, n) == 1 {found = 1} END {exit !found}' /proc/self/mountinfo; then
  log "WARNING: mounts remain under $N:"; awk -v n="$N/" 'index($5, n) == 1 {print "  " $5}' /proc/self/mountinfo >&2
else
  rm -rf "$N/kubelet" "$N/cni/ipam" "$N/containerd/state" "$N/containerd/runc"
  [ "${1:-}" = --purge ] && rm -rf "$N/containerd"
fi
[ $owner = 1 ] || exit 0

# 4. network: the bridge (veths went with their pods' netns), kube-proxy's and the CNI plugins' iptables chains
ip link del "$BRIDGE" 2>/dev/null && log "deleted bridge $BRIDGE"
for ipt in iptables ip6tables; do
  command -v $ipt >/dev/null || continue
  for t in filter nat mangle; do
    $ipt -t $t -S 2>/dev/null | grep -E '^-A .*(KUBE-|CNI-)' | sed 's/^-A //' | while read -r rule; do
      eval "$ipt -t $t -D $rule" 2>/dev/null || true   # eval: the rule's quoted comments
    done
    for pass in flush delete; do
      for ch in $($ipt -t $t -S 2>/dev/null | awk '/^-N (KUBE-|CNI-)/{print $2}'); do
        if [ $pass = flush ]; then $ipt -t $t -F "$ch"; else $ipt -t $t -X "$ch"; fi
      done
    done
  done
done
# 5. cgroups kubelet made (cgroupfs driver), deepest first
for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
  [ -d "${h}kubepods" ] && find "${h}kubepods" -depth -type d -exec rmdir {} + 2>/dev/null
done
# 6. sysctls back to the baseline, and the hard-coded paths that were not there before
if [ -f "$N/baseline.sysctl" ]; then
  while read -r k _ v; do sysctl -qw "$k=$v" 2>/dev/null || log "could not restore $k=$v"; done < "$N/baseline.sysctl"
  for p in /var/log/pods /var/log/containers /var/lib/kubelet /run/containerd; do
    grep -qx "$p" "$N/baseline.paths" 2>/dev/null || rm -rf "$p"
  done
  grep -qx /var/lib/kubelet "$N/baseline.paths" 2>/dev/null && rm -rf /var/lib/kubelet/device-plugins
  rm -f "$N/baseline.sysctl" "$N/baseline.paths"
fi
rm -f "$MARK"
log "node stopped, host changes undone"
