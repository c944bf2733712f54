#!/usr/bin/env bash
# Start a local Kubernetes v1.20 cluster in the background: the control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler), the WhisperEndpoint CRD, then one real node (scripts/node-up.sh:
# containerd, CNI bridge, kubelet, kube-proxy, cluster DNS), and print KUBECONFIG=<path> as the last stdout line
# (everything else goes to stderr). Idempotent: a running cluster is reused. A failed start stops what it started.
# Env: KUBEWHISPER_CLUSTER_DIR (state, default $CACHE/cluster), KUBEWHISPER_APISERVER_PORT (16443; the controller-manager
# and scheduler use the next two ports), KUBEWHISPER_ETCD_PORT (12379; peer port +1), KUBEWHISPER_NODE_PORT (10250,
# see node-up.sh). Distinct values let a test session and a developer's cluster run side by side; the real node is one
# per machine, so the second cluster runs with KUBEWHISPER_NODE=0: the control plane alone on 127.0.0.1, where pods
# are scheduled (onto fake nodes) but never start.
# With the node, kube-apiserver listens on every address (pods reach it at the host's IP, the kubeconfig uses
# 127.0.0.1) and advertises the host's IP, so the `kubernetes` Service has that endpoint.
set -euo pipefail
. "$(dirname "$0")/common.sh"
BIN=$("$ROOT/scripts/k8s.sh" | tail -n1)
D=${KUBEWHISPER_CLUSTER_DIR:-$CACHE/cluster}
API_PORT=${KUBEWHISPER_APISERVER_PORT:-16443}
ETCD_PORT=${KUBEWHISPER_ETCD_PORT:-12379}
NODE=${KUBEWHISPER_NODE:-1}
case $NODE in 0|1) ;; *) log "KUBEWHISPER_NODE must be 0 or 1, not '$NODE'"; exit 2;; esac
mkdir -p "$D/logs"
exec 7>"$D/.lock"; flock 7   # the daemons below are started with 7>&- so that they do not hold it
KUBECONFIG_PATH=$D/kubeconfig
SERVICE_CIDR=10.0.0.0/24
SERVICE_IP=10.0.0.1   # the kubernetes Service: the first address of the service CIDR
HOST_IP=$(host_ip)
# fail before starting anything when the node cannot run here (each failing step names itself)
[ "$NODE" = 0 ] || "$ROOT/scripts/node-up.sh" --check

alive() { [ -f "$D/$1.pid" ] && kill -0 "$(cat "$D/$1.pid")" 2>/dev/null; }
ready() { curl -sf --max-time 2 --cacert "$D/apiserver.crt" -H "Authorization: Bearer $(cut -d, -f1 "$D/tokens.csv")" \
            "https://127.0.0.1:$API_PORT$1" >/dev/null 2>&1; }

# from here on, a failure stops whatever this run started (and what it would have reused, half-started)
on_exit() {
  local rc=$?
  [ $rc = 0 ] && return
  log "cluster-up failed (exit $rc): stopping what it started"
  "$ROOT/scripts/cluster-down.sh" >/dev/null 2>&1 || true
}
trap on_exit EXIT
node_up() { [ "$NODE" = 0 ] || "$ROOT/scripts/node-up.sh"; }
# the API server's flags differ with the node; a control plane started with the other setting is restarted
mode=$(cat "$D/mode" 2>/dev/null || true)
if alive etcd && alive apiserver && alive controller-manager && alive scheduler && ready /readyz && [ "$mode" = "node=$NODE" ]; then
  log "control plane already running in $D"
  node_up
  echo "KUBECONFIG=$KUBECONFIG_PATH"; exit 0
fi
"$ROOT/scripts/cluster-down.sh" >/dev/null 2>&1 || true   # half-started leftovers
t0=$(date +%s.%N)

# the serving cert names every address a client uses: 127.0.0.1 (kubeconfig), the host's IP (pods, via the
# kubernetes Service's endpoint) and the Service's own IP and DNS names (in-cluster clients)
SANS="IP:127.0.0.1,IP:$SERVICE_IP,${HOST_IP:+IP:$HOST_IP,}DNS:localhost,DNS:kubernetes,DNS:kubernetes.default"
SANS="$SANS,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
if [ -f "$D/apiserver.crt" ] && [ "$(cat "$D/apiserver.sans" 2>/dev/null)" != "$SANS" ]; then
  log "the host's addresses changed: new serving certificate"; rm -f "$D/apiserver.crt"
fi
if [ ! -f "$D/apiserver.crt" ]; then
  log "generating certificates, service-account keys and an admin token in $D"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=kube-apiserver" \
    -addext "subjectAltName=$SANS" -keyout "$D/apiserver.key" -out "$D/apiserver.crt" 2>/dev/null
  echo "$SANS" > "$D/apiserver.sans"
fi
# the API server's client certificate for kubelets (logs, exec, port-forward): the node's kubelet accepts only it
if [ ! -f "$D/kubelet-client.crt" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
    -addext "extendedKeyUsage=clientAuth" -keyout "$D/kubelet-client.key" -out "$D/kubelet-client.crt" 2>/dev/null
fi
if [ ! -f "$D/sa.key" ]; then
  openssl genrsa -out "$D/sa.key" 2048 2>/dev/null
  openssl rsa -in "$D/sa.key" -pubout -out "$D/sa.pub" 2>/dev/null
  echo "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'),admin,admin,system:masters" > "$D/tokens.csv"
fi
TOKEN=$(cut -d, -f1 "$D/tokens.csv")
cat > "$KUBECONFIG_PATH" <<K
apiVersion: v1
kind: Config
clusters:
- name: kubewhisper-local
  cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: "$D/apiserver.crt"}
users:
- name: admin
  user: {token: "$TOKEN"}
contexts:
- name: kubewhisper-local
  context: {cluster: kubewhisper-local, user: admin, namespace: default}
current-context: kubewhisper-local
K

# setsid: the processes outlive this script and the make/pytest that called it; stopped by PID in cluster-down.sh
setsid "$BIN/etcd" --name default --data-dir "$D/etcd-data" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
  --initial-cluster "default=http://127.0.0.1:$((ETCD_PORT + 1))" --unsafe-no-fsync=true \
  > "$D/logs/etcd.log" 2>&1 < /dev/null 7>&- &
echo $! > "$D/etcd.pid"
if [ "$NODE" = 1 ]; then
  # pods reach the API server at the host's IP: the lease reconciler gives the kubernetes Service that endpoint
  NET=(--bind-address=0.0.0.0 --advertise-address="$HOST_IP" --endpoint-reconciler-type=lease)
else
  NET=(--bind-address=127.0.0.1 --advertise-address=127.0.0.1 --endpoint-reconciler-type=none)
fi
echo "node=$NODE" > "$D/mode"
setsid "$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" "${NET[@]}" \
  --secure-port="$API_PORT" --insecure-port=0 --kubelet-preferred-address-types=InternalIP,Hostname \
  --kubelet-client-certificate="$D/kubelet-client.crt" --kubelet-client-key="$D/kubelet-client.key" \
  --tls-cert-file="$D/apiserver.crt" --tls-private-key-file="$D/apiserver.key" --client-ca-file="$D/apiserver.crt" \
  --token-auth-file="$D/tokens.csv" --authorization-mode=RBAC --service-cluster-ip-range=$SERVICE_CIDR \
  --service-account-key-file="$D/sa.pub" --service-account-signing-key-file="$D/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc --api-audiences=https://kubernetes.default.svc \
  --allow-privileged=true --profiling=false \
  --disable-admission-plugins=TaintNodesByCondition > "$D/logs/apiserver.log" 2>&1 < /dev/null 7>&- &
echo $! > "$D/apiserver.pid"
for _ in $(seq 1 300); do ready /readyz && break; alive apiserver || { tail -20 "$D/logs/apiserver.log" >&2; exit 1; }; sleep 0.2; done
ready /readyz || { log "kube-apiserver did not become ready"; tail -20 "$D/logs/apiserver.log" >&2; exit 1; }

setsid "$BIN/kube-controller-manager" --kubeconfig="$KUBECONFIG_PATH" --authentication-kubeconfig="$KUBECONFIG_PATH" \
  --authorization-kubeconfig="$KUBECONFIG_PATH" --bind-address=127.0.0.1 --port=0 --secure-port=$((API_PORT + 1)) \
  --leader-elect=false --use-service-account-credentials=false --service-account-private-key-file="$D/sa.key" \
  --root-ca-file="$D/apiserver.crt" --controllers='*,-nodelifecycle' \
  > "$D/logs/controller-manager.log" 2>&1 < /dev/null 7>&- &
echo $! > "$D/controller-manager.pid"
setsid "$BIN/kube-scheduler" --kubeconfig="$KUBECONFIG_PATH" --authentication-kubeconfig="$KUBECONFIG_PATH" \
  --authorization-kubeconfig="$KUBECONFIG_PATH" --bind-address=127.0.0.1 --port=0 --secure-port=$((API_PORT + 2)) \
  --leader-elect=false > "$D/logs/scheduler.log" 2>&1 < /dev/null 7>&- &
echo $! > "$D/scheduler.pid"

# the CRD (no kubectl needed: the API server takes YAML)
curl -sf --cacert "$D/apiserver.crt" -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/yaml" \
  -X POST --data-binary @"$ROOT/crds/whisperendpoints.yaml" \
  "https://127.0.0.1:$API_PORT/apis/apiextensions.k8s.io/v1/customresourcedefinitions" >/dev/null 2>&1 ||
curl -sf --cacert "$D/apiserver.crt" -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/apply-patch+yaml" \
  -X PATCH --data-binary @"$ROOT/crds/whisperendpoints.yaml" \
  "https://127.0.0.1:$API_PORT/apis/apiextensions.k8s.io/v1/customresourcedefinitions/whisperendpoints.kubewhisper.dev?fieldManager=cluster-up&force=true" >/dev/null

# ready = the CRD serves and the service-account controller made "default" (pods need it to be admitted)
for _ in $(seq 1 300); do
  ready /apis/kubewhisper.dev/v1alpha1/whisperendpoints && ready /api/v1/namespaces/default/serviceaccounts/default && break
  for p in etcd apiserver controller-manager scheduler; do alive $p || { log "$p died"; tail -20 "$D/logs/$p.log" >&2; exit 1; }; done
  sleep 0.2
done
ready /api/v1/namespaces/default/serviceaccounts/default || {
  log "controller-manager not ready"; tail -20 "$D/logs/controller-manager.log" >&2; exit 1; }
log "control plane up in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s (logs in $D/logs)"
node_up
echo "KUBECONFIG=$KUBECONFIG_PATH"
