#!/usr/bin/env bash
# Start the local cluster's real node (called by cluster-up.sh after the control plane; same env): containerd (Debian,
# private config, socket $D/node/containerd.sock) + runc + a CNI bridge, a pause image built here from a static C
# binary, kubelet and kube-proxy v1.20.2 (iptables mode) and the cluster DNS (scripts/cluster_dns.py). Waits until the
# node is Ready (a heartbeat newer than this start), kube-proxy is healthy and the DNS answers.
# `node-up.sh --check`: only the preflight (root, packages, iptables, kernel features, no other real node), so
# cluster-up fails before starting anything. Idempotent: what already runs is kept.
# Env: KUBEWHISPER_NODE_PORT (10250): kubelet API; +1 kubelet healthz, +2 kube-proxy healthz, +3 kube-proxy metrics.
# The node is one per machine (kube-proxy's iptables chains, the bridge, the pod CIDR and DNS on port 53 are global).
# Host changes, all undone by node-down.sh: sysctls (saved in $D/node/baseline.sysctl), iptables KUBE-*/CNI-* chains,
# the bridge kubewhisper0 and its veths, mounts under $D/node, kubepods cgroups, /var/log/pods, /var/log/containers,
# /var/lib/kubelet/device-plugins (kubelet 1.20 hard-codes them), /run/containerd (containerd 1.6's shim sockets).
set -euo pipefail
. "$(dirname "$0")/common.sh"
D=${KUBEWHISPER_CLUSTER_DIR:-$CACHE/cluster}
N=$D/node
NODE_PORT=${KUBEWHISPER_NODE_PORT:-10250}
NODE_NAME=kubewhisper-node
POD_CIDR=10.244.0.0/24
BRIDGE=kubewhisper0
SOCK=$N/containerd.sock
PAUSE=localhost/pause:3.4.1
MARK=/run/kubewhisper-node   # machine-wide: the state dir of the one real node
HOST_IP=$(host_ip)
fail() { log "step '$1' failed: $2"; exit 1; }
alive() { [ -f "$N/$1.pid" ] && kill -0 "$(cat "$N/$1.pid")" 2>/dev/null; }
secs() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

# --- preflight: every step that cannot work here fails now, naming itself, before anything is started -------------
[ "$(id -u)" = 0 ] || fail root "the real node needs root (mounts, iptables, cgroups); run as root, or KUBEWHISPER_NODE=0 for the control plane alone"
[ -n "$HOST_IP" ] || fail network "no IPv4 default route, so no host address for the node and the pods to use"
if [ -f "$MARK" ] && [ "$(cat "$MARK")" != "$D" ]; then
  other=$(cat "$MARK")
  for p in containerd kubelet kube-proxy dns; do
    if [ -f "$other/node/$p.pid" ] && kill -0 "$(cat "$other/node/$p.pid")" 2>/dev/null; then
      fail "one node per machine" "another real node runs from $other (kube-proxy's iptables chains are machine-wide); stop it with KUBEWHISPER_CLUSTER_DIR=$other scripts/cluster-down.sh, or KUBEWHISPER_NODE=0"
    fi
  done
fi
need=()
for c in containerd runc ctr iptables conntrack gcc; do command -v $c >/dev/null || need+=("$c"); done
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] && [ -x /usr/lib/cni/portmap ] && [ -x /usr/lib/cni/loopback ] ||
  need+=(containernetworking-plugins)
if [ ${#need[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${need[@]}" | sed 's/^ctr$/containerd/' | sort -u | tr '\n' ' ')
  log "installing $pkgs(apt)"
  # shellcheck disable=SC2086  # one package per word
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends $pkgs >&2 ||
    fail packages "apt-get install $pkgs failed (see above)"
fi
iptables -t nat -S >/dev/null 2>&1 || fail iptables "iptables -t nat does not work here (kube-proxy and the CNI bridge need it)"
if [ ! -f "$MARK" ] && iptables -t nat -S KUBE-SERVICES >/dev/null 2>&1; then
  fail "one node per machine" "iptables chain KUBE-SERVICES exists: another kube-proxy runs (or ran) on this machine"
fi
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
  fail "kernel: overlay" "the overlay filesystem is not available (containerd's snapshotter needs it)"
[ -d /proc/sys/net/bridge ] || modprobe br_netfilter 2>/dev/null ||
  fail "kernel: br_netfilter" "br_netfilter is not available (Services between pods on the bridge need it)"
for c in memory cpu pids; do
  [ -d /sys/fs/cgroup/$c ] || grep -qw $c /sys/fs/cgroup/cgroup.controllers 2>/dev/null ||
    fail "kernel: cgroups" "the $c cgroup controller is not mounted (kubelet needs it)"
done
if ! alive dns && ss -Hlun 2>/dev/null | awk '{print $4}' | grep -qE "^($HOST_IP|0\.0\.0\.0|\*):53$"; then
  fail "cluster DNS" "UDP port 53 on $HOST_IP is taken (pods' resolv.conf can name no other port)"
fi
[ "${1:-}" = --check ] && exit 0

# --- host state: claim the node, save the baseline the teardown restores ------------------------------------------
t0=$(date +%s.%N)
BIN=$("$ROOT/scripts/k8s.sh" | tail -n1)
API_PORT=${KUBEWHISPER_APISERVER_PORT:-16443}
mkdir -p "$N"/{containerd,cni/net.d,kubelet,images,logs}
echo "$D" > "$MARK"
SYSCTLS="net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
  net.ipv4.conf.all.route_localnet vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes"
if [ ! -f "$N/baseline.sysctl" ]; then
  # shellcheck disable=SC2086  # one key per word
  sysctl $SYSCTLS 2>/dev/null > "$N/baseline.sysctl.tmp" || true
  for p in /var/log/pods /var/log/containers /var/lib/kubelet /run/containerd; do [ -e "$p" ] && echo "$p"; done \
    > "$N/baseline.paths" || true
  mv "$N/baseline.sysctl.tmp" "$N/baseline.sysctl"
fi
# pods on the bridge reach a Service whose endpoint is another pod on the same bridge only if bridged traffic goes
# through iptables (kube-proxy's DNAT); the CNI bridge plugin would set ip_forward itself
sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.ipv4.ip_forward=1

# --- CNI: bridge + host-local IPAM + masquerade for off-node traffic + portmap (containerd adds lo by itself) -------
cat > "$N/cni/net.d/10-kubewhisper.conflist" <<J
{ "cniVersion": "0.4.0", "name": "kubewhisper",
  "plugins": [
    { "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": { "type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": "$N/cni/ipam" } },
    { "type": "portmap", "capabilities": {"portMappings": true} } ] }
J

# --- containerd: everything it keeps under $N/containerd, CRI with overlayfs, runc v2, cgroupfs ---------------------
C=$N/containerd
cat > "$C/config.toml" <<T
version = 2
root = "$C/root"
state = "$C/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$C/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE"
  netns_mounts_under_state_dir = true
  # Machines that deny CAP_SYS_RESOURCE (this VM does) cannot lower an oom_score_adj; kubelet asks -998 for every pod
  # sandbox and runc then fails with "can't get final child's PID from pipe: EOF". Scores are clamped to ours.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$C/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$N/cni/net.d"
T
if ! alive containerd; then
  setsid containerd --config "$C/config.toml" > "$N/logs/containerd.log" 2>&1 < /dev/null 7>&- &
  echo $! > "$N/containerd.pid"
fi
CTR=(ctr --address "$SOCK" -n k8s.io)
for _ in $(seq 1 150); do "${CTR[@]}" version >/dev/null 2>&1 && break
  alive containerd || { tail -20 "$N/logs/containerd.log" >&2; fail containerd "containerd exited"; }; sleep 0.1; done
"${CTR[@]}" version >/dev/null 2>&1 || fail containerd "no answer on $SOCK (log: $N/logs/containerd.log)"

# --- the pause image: the sandbox's PID 1 (sleeps, reaps zombies, exits on SIGINT/SIGTERM), static, FROM scratch -----
if ! "${CTR[@]}" images ls -q | grep -qx "$PAUSE"; then
  P=$N/images/pause; rm -rf "$P"; mkdir -p "$P/rootfs"
  cat > "$P/pause.c" <<'C'
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void down(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction stop = {.sa_handler = down}, child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
  if (sigaction(SIGINT, &stop, NULL) || sigaction(SIGTERM, &stop, NULL) || sigaction(SIGCHLD, &child, NULL)) return 1;
  for (;;) pause();
}
C
  gcc -Os -static -o "$P/rootfs/pause" "$P/pause.c" || fail "pause image" "gcc -static failed (needs libc6-dev)"
  "$ROOT/scripts/oci-image.sh" "$P/pause.tar" "$PAUSE" "$P/rootfs" '["/pause"]' 65535:65535
  "${CTR[@]}" images import "$P/pause.tar" >/dev/null || fail "pause image" "ctr images import failed"
fi

# --- cluster DNS on the host address (pods reach it through the bridge gateway) ------------------------------------
cut -d, -f1 "$D/tokens.csv" > "$N/dns.token"; chmod 600 "$N/dns.token"
if ! alive dns; then
  setsid python3 "$ROOT/scripts/cluster_dns.py" serve --listen "$HOST_IP" --port 53 \
    --server "https://127.0.0.1:$API_PORT" --cacert "$D/apiserver.crt" --token-file "$N/dns.token" \
    > "$N/logs/dns.log" 2>&1 < /dev/null 7>&- &
  echo $! > "$N/dns.pid"
fi

# --- kubelet: registers with the admin kubeconfig (RBAC; no Node authorizer in this local cluster). Its API, on the
#     host's IP, takes only the API server's client certificate (no anonymous access) and asks the API server whether
#     a request is allowed (Webhook). -----------------------------------------------------------------------------
# --node-status-update-frequency=2s: kubelet's first status says NotReady (runtime not checked yet); the next one says
# Ready, 2 s later instead of the default 10 s.
since=1970-01-01T00:00:00Z   # a kubelet that already runs: its Ready status is current
if ! alive kubelet; then
  since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  setsid "$BIN/kubelet" --kubeconfig="$D/kubeconfig" --hostname-override="$NODE_NAME" --node-ip="$HOST_IP" \
    --node-labels=kubewhisper.dev/node=real \
    --container-runtime=remote --container-runtime-endpoint="unix://$SOCK" --image-service-endpoint="unix://$SOCK" \
    --runtime-request-timeout=5m --cgroup-driver=cgroupfs --fail-swap-on=false --pod-infra-container-image="$PAUSE" \
    --root-dir="$N/kubelet" --cert-dir="$N/kubelet/pki" --volume-plugin-dir="$N/kubelet/plugins-exec" \
    --seccomp-profile-root="$N/kubelet/seccomp" --containerd="$SOCK" --node-status-update-frequency=2s \
    --port="$NODE_PORT" --healthz-port=$((NODE_PORT + 1)) --read-only-port=0 --address="$HOST_IP" \
    --anonymous-auth=false --client-ca-file="$D/kubelet-client.crt" --authorization-mode=Webhook \
    --cluster-dns="$HOST_IP" --cluster-domain=cluster.local \
    --eviction-hard='memory.available<100Mi,nodefs.available<2%,imagefs.available<2%' \
    --image-gc-high-threshold=100 --image-gc-low-threshold=99 --serialize-image-pulls=false --v=2 \
    > "$N/logs/kubelet.log" 2>&1 < /dev/null 7>&- &
  echo $! > "$N/kubelet.pid"
fi

# --- kube-proxy, iptables mode; conntrack tuning off (0 = the kernel's values are left alone) ----------------------
if ! alive kube-proxy; then
  setsid "$BIN/kube-proxy" --kubeconfig="$D/kubeconfig" --hostname-override="$NODE_NAME" --proxy-mode=iptables \
    --cluster-cidr="$POD_CIDR" --bind-address="$HOST_IP" --healthz-bind-address="127.0.0.1:$((NODE_PORT + 2))" \
    --metrics-bind-address="127.0.0.1:$((NODE_PORT + 3))" --conntrack-max-per-core=0 \
    --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0 --v=2 \
    > "$N/logs/kube-proxy.log" 2>&1 < /dev/null 7>&- &
  echo $! > "$N/kube-proxy.pid"
fi

# --- ready: a Ready heartbeat from this kubelet (a Ready=True left in etcd by an earlier run does not count),
#     kube-proxy healthy, the DNS answering for the kubernetes Service -------------------------------------------
TOKEN=$(cat "$N/dns.token")
api() { curl -sf --max-time 3 --cacert "$D/apiserver.crt" -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$API_PORT$1"; }
node_ready() {
  api "/api/v1/nodes/$NODE_NAME" 2>/dev/null | python3 -c '
import json, sys
started = sys.argv[1]
for c in json.load(sys.stdin)["status"].get("conditions", []):
    if c["type"] == "Ready":
        sys.exit(0 if c["status"] == "True" and c["lastHeartbeatTime"] >= started else 1)
sys.exit(1)' "$1" 2>/dev/null
}
for _ in $(seq 1 600); do
  node_ready "$since" && curl -sf "http://127.0.0.1:$((NODE_PORT + 2))/healthz" >/dev/null 2>&1 &&
    python3 "$ROOT/scripts/cluster_dns.py" query kubernetes.default.svc.cluster.local --at "$HOST_IP" >/dev/null 2>&1 && break
  for p in containerd kubelet kube-proxy dns; do
    alive $p || { tail -20 "$N/logs/$p.log" >&2; fail "$p" "$p exited (log: $N/logs/$p.log)"; }
  done
  sleep 0.2
done
node_ready "$since" || { tail -20 "$N/logs/kubelet.log" >&2; fail "node Ready" "node $NODE_NAME not Ready after 2 min"; }
curl -sf "http://127.0.0.1:$((NODE_PORT + 2))/healthz" >/dev/null || fail kube-proxy "not healthy (log: $N/logs/kube-proxy.log)"
python3 "$ROOT/scripts/cluster_dns.py" query kubernetes.default.svc.cluster.local --at "$HOST_IP" >/dev/null ||
  fail "cluster DNS" "no answer for kubernetes.default.svc.cluster.local at $HOST_IP:53 (log: $N/logs/dns.log)"
log "node $NODE_NAME Ready in $(secs "$t0")s (pods on $POD_CIDR, DNS at $HOST_IP:53, logs in $N/logs)"
