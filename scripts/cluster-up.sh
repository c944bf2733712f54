#!/usr/bin/env bash
# Start a local Kubernetes v1.20 control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) on
# 127.0.0.1 in the background, install the WhisperEndpoint CRD, wait until it serves, and print KUBECONFIG=<path> as
# the last stdout line (everything else goes to stderr). There is no kubelet: pods are scheduled, never started.
# Env: KUBEWHISPER_CLUSTER_DIR (state, default $CACHE/cluster), KUBEWHISPER_APISERVER_PORT (16443; the controller-manager
# and scheduler use the next two ports), KUBEWHISPER_ETCD_PORT (12379; peer port +1). Distinct values let a test
# session and a developer's cluster run side by side. Idempotent: a running cluster is reused.
set -euo pipefail
. "$(dirname "$0")/common.sh"
BIN=$("$ROOT/scripts/k8s.sh" | tail -n1)
D=${KUBEWHISPER_CLUSTER_DIR:-$CACHE/cluster}
API_PORT=${KUBEWHISPER_APISERVER_PORT:-16443}
ETCD_PORT=${KUBEWHISPER_ETCD_PORT:-12379}
mkdir -p "$D/logs"
exec 7>"$D/.lock"; flock 7
KUBECONFIG_PATH=$D/kubeconfig

alive() { [ -f "$D/$1.pid" ] && kill -0 "$(cat "$D/$1.pid")" 2>/dev/null; }
ready() { curl -sf --max-time 2 --cacert "$D/apiserver.crt" -H "Authorization: Bearer $(cut -d, -f1 "$D/tokens.csv")" \
            "https://127.0.0.1:$API_PORT$1" >/dev/null 2>&1; }

if alive etcd && alive apiserver && alive controller-manager && alive scheduler && ready /readyz; then
  log "control plane already running in $D"
  echo "KUBECONFIG=$KUBECONFIG_PATH"; exit 0
fi
"$ROOT/scripts/cluster-down.sh" >/dev/null 2>&1 || true   # half-started leftovers
t0=$(date +%s.%N)

if [ ! -f "$D/apiserver.crt" ]; then
  log "generating certificates, service-account keys and an admin token in $D"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=kube-apiserver" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout "$D/apiserver.key" -out "$D/apiserver.crt" 2>/dev/null
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
  > "$D/logs/etcd.log" 2>&1 < /dev/null &
echo $! > "$D/etcd.pid"
setsid "$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" --bind-address=127.0.0.1 \
  --advertise-address=127.0.0.1 --secure-port="$API_PORT" --insecure-port=0 \
  --tls-cert-file="$D/apiserver.crt" --tls-private-key-file="$D/apiserver.key" --client-ca-file="$D/apiserver.crt" \
  --token-auth-file="$D/tokens.csv" --authorization-mode=RBAC --service-cluster-ip-range=10.0.0.0/24 \
  --service-account-key-file="$D/sa.pub" --service-account-signing-key-file="$D/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc --api-audiences=https://kubernetes.default.svc \
  --allow-privileged=true --profiling=false --endpoint-reconciler-type=none \
  --disable-admission-plugins=TaintNodesByCondition > "$D/logs/apiserver.log" 2>&1 < /dev/null &
echo $! > "$D/apiserver.pid"
for _ in $(seq 1 300); do ready /readyz && break; alive apiserver || { tail -20 "$D/logs/apiserver.log" >&2; exit 1; }; sleep 0.2; done
ready /readyz || { log "kube-apiserver did not become ready"; tail -20 "$D/logs/apiserver.log" >&2; exit 1; }

setsid "$BIN/kube-controller-manager" --kubeconfig="$KUBECONFIG_PATH" --authentication-kubeconfig="$KUBECONFIG_PATH" \
  --authorization-kubeconfig="$KUBECONFIG_PATH" --bind-address=127.0.0.1 --port=0 --secure-port=$((API_PORT + 1)) \
  --leader-elect=false --use-service-account-credentials=false --service-account-private-key-file="$D/sa.key" \
  --root-ca-file="$D/apiserver.crt" --controllers='*,-nodelifecycle' \
  > "$D/logs/controller-manager.log" 2>&1 < /dev/null &
echo $! > "$D/controller-manager.pid"
setsid "$BIN/kube-scheduler" --kubeconfig="$KUBECONFIG_PATH" --authentication-kubeconfig="$KUBECONFIG_PATH" \
  --authorization-kubeconfig="$KUBECONFIG_PATH" --bind-address=127.0.0.1 --port=0 --secure-port=$((API_PORT + 2)) \
  --leader-elect=false > "$D/logs/scheduler.log" 2>&1 < /dev/null &
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
echo "KUBECONFIG=$KUBECONFIG_PATH"
