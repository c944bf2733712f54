#!/usr/bin/env bash
# `make demo`: the whole Kubernetes path on this machine, for real, in one command.
#   1. tools (venv, helm + kubectl, the base model, jfk.wav)     2. a local cluster with a real node (containerd,
#      kubelet, kube-proxy, cluster DNS: scripts/cluster-up.sh)  3. the images built and loaded into the node
#      (scripts/image.sh)                                         4. fake GPU nodes: a T4 and an H100 pool
#   5. helm install: the operator runs as a pod on the node      6. the CPU example endpoint + two GPU endpoints
#   7. whisper-cpu Ready; what the operator chose for each       8. a client pod transcribes jfk.wav through
#      whisper-cpu's status.url (cluster DNS, Service, the pod)   9. summary, then teardown (helm uninstall,
#      cluster-down): nothing is left running.
# The GPU endpoints' pods stay Pending (the fake GPU nodes have no kubelet); their profiles are the point.
# Env: DEMO_API_PORT (18443), DEMO_ETCD_PORT (14379), DEMO_KEEP=1 (keep the cluster after the summary).
set -euo pipefail
. "$(dirname "$0")/common.sh"
cd "$ROOT"
T0=$(date +%s)
export KUBEWHISPER_CLUSTER_DIR=${KUBEWHISPER_DEMO_DIR:-$CACHE/demo-cluster}
export KUBEWHISPER_APISERVER_PORT=${DEMO_API_PORT:-18443} KUBEWHISPER_ETCD_PORT=${DEMO_ETCD_PORT:-14379}
NS=kubewhisper            # the chart's namespace
APPS=default              # where the endpoints go
RELEASE=kubewhisper
WORK=$(mktemp -d /tmp/kubewhisper-demo.XXXXXX)
STEP=0
step() { STEP=$((STEP + 1)); printf '\n\033[1;34m==> [%d/9] %s\033[0m\n' "$STEP" "$*" >&2; }
run() { printf '\033[2m$ %s\033[0m\n' "$*" >&2; "$@"; }
secs() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ $rc -ne 0 ] && [ -n "${KUBECONFIG:-}" ]; then
    kubectl get we,deploy,pods -A -o wide > "$WORK/state.txt" 2>&1 || true
    kubectl -n "$NS" logs deploy/"$RELEASE-operator" > "$WORK/operator.log" 2>&1 || true
  fi
  if [ "${DEMO_KEEP:-0}" != 1 ]; then
    if [ -n "${KUBECONFIG:-}" ]; then
      kubectl -n "$APPS" delete we --all --wait=true --timeout=120s >/dev/null 2>&1 || true
      helm uninstall "$RELEASE" -n "$NS" --wait --timeout 2m >/dev/null 2>&1 || true
    fi
    "$ROOT/scripts/cluster-down.sh" --purge >/dev/null 2>&1 || true
    log "cluster stopped, state removed"
  else
    log "cluster kept: export KUBECONFIG=$KUBEWHISPER_CLUSTER_DIR/kubeconfig (stop: KUBEWHISPER_CLUSTER_DIR=$KUBEWHISPER_CLUSTER_DIR scripts/cluster-down.sh --purge)"
  fi
  [ $rc -eq 0 ] || log "FAILED (exit $rc); logs in $WORK"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "tools: venv, helm + kubectl, the base model, jfk.wav (all cached after the first run)"
VENV=$("$ROOT/scripts/venv.sh" | tail -n1)
BIN=$("$ROOT/scripts/helm.sh" | tail -n1)
FIXTURES=$("$ROOT/scripts/fixtures.sh" | tail -n1)
export PATH=$BIN:$PATH
log "helm $(helm version --short), kubectl $(kubectl version --client 2>/dev/null | head -1 | awk '{print $3}')"

step "a local Kubernetes v1.20 cluster with a real node (fresh state in $KUBEWHISPER_CLUSTER_DIR)"
"$ROOT/scripts/cluster-down.sh" --purge >/dev/null 2>&1 || true
t=$(date +%s.%N)
KC=$("$ROOT/scripts/cluster-up.sh" | tail -n1)
export KUBECONFIG=${KC#KUBECONFIG=}
T_CLUSTER=$(secs "$t")
run kubectl get nodes -o wide >&2

step "the images, built without Docker when there is none, loaded into the node's containerd"
t=$(date +%s.%N)
"$ROOT/scripts/image.sh" >&2
T_IMAGES=$(secs "$t")

step "fake GPU nodes (no kubelet): a T4 pool (compute capability 7.5) and an H100 pool (9.0)"
"$VENV/bin/python" - "$ROOT/operator/examples/fake-gpu-nodes.yaml" > "$WORK/nodes.yaml" <<'PY'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
doc["items"] = [n for n in doc["items"] if n["metadata"]["labels"].get("pool") in ("t4", "h100")]
print(yaml.safe_dump(doc))
PY
run kubectl apply -f "$WORK/nodes.yaml" >&2
kubectl get nodes -L pool,nvidia.com/gpu.product,nvidia.com/gpu.compute.major,nvidia.com/gpu.compute.minor >&2

step "helm install the chart: the operator runs as a pod on the real node, the webhook behind its Service"
run kubectl create namespace "$NS" >&2
t=$(date +%s.%N)
# the fake GPU nodes have no kubelet: a pod the scheduler puts there never starts, so the operator stays on the real
# node (on a real cluster, leave operator.nodeSelector empty or point it at a system pool)
run helm install "$RELEASE" charts/kubewhisper --namespace "$NS" --set webhook.enabled=true \
  --set-string 'operator.nodeSelector.kubewhisper\.dev/node=real' --wait --timeout 5m >&2
T_OPERATOR=$(secs "$t")
run kubectl -n "$NS" get pods -o wide >&2

# the webhook answers once its Service's endpoint reached kube-proxy's rules, a moment after the pod is Ready
for _ in $(seq 1 120); do
  kubectl -n "$APPS" apply --dry-run=server -f operator/examples/endpoint-cpu.yaml >/dev/null 2>&1 && break
  sleep 0.5
done

step "three WhisperEndpoints: base on CPU (the example), large-v3 on the T4 and on the H100 pool"
run kubectl -n "$APPS" create secret generic whisper-api-key --from-literal=api-key=demo-key >&2
t=$(date +%s.%N)
run kubectl -n "$APPS" apply -f operator/examples/endpoint-cpu.yaml -f operator/examples/endpoint-t4.yaml \
  -f operator/examples/endpoint-h100.yaml >&2
run kubectl -n "$APPS" wait we/whisper-cpu --for=condition=Ready --timeout=600s >&2
T_READY=$(secs "$t")

step "what the operator chose"
run kubectl -n "$APPS" get we -o wide >&2
for we in whisper-t4 whisper-h100; do
  kubectl -n "$APPS" get we "$we" -o json > "$WORK/$we.we.json"
done
"$VENV/bin/python" - "$WORK" >&2 <<'PY'
import json, sys
for we in ("whisper-t4", "whisper-h100"):
    p = json.load(open(f"{sys.argv[1]}/{we}.we.json"))["status"].get("profile", {})
    print(f"  {we}: compute capability {p.get('computeCapability')} ({p.get('gpuProduct')}) -> dtype {p.get('dtype')}, "
          f"KV cache {p.get('kvCacheDtype')}, attention {p.get('attentionBackend')}")
    for r in p.get("reasons", []):
        print(f"    - {r}")
PY
run kubectl -n "$APPS" get deploy,svc,pods -o wide >&2

step "a client pod transcribes jfk.wav through whisper-cpu's status.url (cluster DNS -> Service -> pod)"
URL=$(kubectl -n "$APPS" get we whisper-cpu -o jsonpath='{.status.url}')
IMAGE=$(kubectl -n "$NS" get deploy "$RELEASE-operator" -o jsonpath='{.spec.template.spec.containers[0].image}')
run kubectl -n "$APPS" create configmap jfk --from-file=jfk.wav="$FIXTURES/jfk.wav" >&2
cat > "$WORK/client.yaml" <<Y
apiVersion: v1
kind: Pod
metadata: {name: transcribe-jfk}
spec:
  restartPolicy: Never
  nodeSelector: {kubewhisper.dev/node: real}   # not onto a fake GPU node (no kubelet there)
  containers:
    - name: client
      image: $IMAGE
      imagePullPolicy: IfNotPresent
      env: [{name: URL, value: "$URL"}]
      volumeMounts: [{name: audio, mountPath: /audio}]
      command: [python, -c]
      args:
        - |
          import json, os, urllib.request
          audio = open("/audio/jfk.wav", "rb").read()
          b = "kubewhisper-demo"
          body = (f'--{b}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-base\r\n'
                  f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="jfk.wav"\r\n\r\n').encode()
          body += audio + f"\r\n--{b}--\r\n".encode()
          req = urllib.request.Request(os.environ["URL"], data=body,
                                       headers={"Content-Type": f"multipart/form-data; boundary={b}"})
          print(json.load(urllib.request.urlopen(req, timeout=120))["text"])
  volumes: [{name: audio, configMap: {name: jfk}}]
Y
t=$(date +%s.%N)
run kubectl -n "$APPS" apply -f "$WORK/client.yaml" >&2
for _ in $(seq 1 360); do
  phase=$(kubectl -n "$APPS" get pod transcribe-jfk -o jsonpath='{.status.phase}')
  case $phase in Succeeded|Failed) break ;; esac
  sleep 0.5
done
TEXT=$(kubectl -n "$APPS" logs transcribe-jfk)
SECS=$(secs "$t")
[ "$phase" = Succeeded ] || { log "client pod $phase: $TEXT"; exit 1; }
log "in-cluster transcript: $TEXT"
grep -qi "ask not what your country can do for you" <<<"$TEXT" || { log "unexpected transcript: $TEXT"; exit 1; }

step "summary"
{
  echo "  cluster       : Kubernetes v1.20.2, node $(kubectl get nodes -l '!pool' -o jsonpath='{.items[0].metadata.name}') (up in ${T_CLUSTER}s)"
  echo "  images        : built and loaded in ${T_IMAGES}s"
  echo "  operator      : pod $(kubectl -n "$NS" get pods -l app.kubernetes.io/component=operator -o jsonpath='{.items[0].metadata.name}') Ready (helm install --wait: ${T_OPERATOR}s)"
  printf '  %-14s: %s\n' whisper-cpu "$(kubectl -n "$APPS" get we whisper-cpu -o jsonpath='accelerator={.status.accelerator} url={.status.url}') (Ready ${T_READY}s after apply)"
  for we in whisper-t4 whisper-h100; do
    printf '  %-14s: %s\n' "$we" "$(kubectl -n "$APPS" get we "$we" -o jsonpath='dtype={.status.profile.dtype} kv={.status.profile.kvCacheDtype} attention={.status.profile.attentionBackend} gpu={.status.profile.gpuProduct}')"
  done
  echo "  jfk.wav       : \"$TEXT\" (client pod start to answer ${SECS}s)"
  echo "  total         : $(( $(date +%s) - T0 ))s; logs in $WORK"
} >&2
