#!/usr/bin/env bash
# `make demo`: the whole Kubernetes path on this machine, in one command.
#   1. a local control plane (scripts/cluster-up.sh, its own state dir and ports)   2. fake GPU nodes: T4 + H100 pools
#   3. helm install the chart (operator replicas 0: there is no kubelet)            4. the operator, run here as the
#      chart's ServiceAccount with the chart's exact command and env                5. two WhisperEndpoints
#   6. what the operator decided (we -o wide, profiles, Deployment env)            7. the inference server, run here
#      with exactly one rendered pod's env (MODEL_ID -> the cached base model, PORT -> a free port), and jfk.wav
#      transcribed through it with curl.
# Everything started here is stopped by PID on exit, also on Ctrl-C. Env: DEMO_API_PORT (18443), DEMO_ETCD_PORT
# (14379), DEMO_ENDPOINT (whisper-t4 | whisper-h100: the endpoint whose pod runs locally), DEMO_KEEP=1 (keep the
# control plane and its state after the summary).
set -euo pipefail
. "$(dirname "$0")/common.sh"
cd "$ROOT"
T0=$(date +%s)
export KUBEWHISPER_CLUSTER_DIR=${KUBEWHISPER_DEMO_DIR:-$CACHE/demo-cluster}
export KUBEWHISPER_APISERVER_PORT=${DEMO_API_PORT:-18443} KUBEWHISPER_ETCD_PORT=${DEMO_ETCD_PORT:-14379}
ENDPOINT=${DEMO_ENDPOINT:-whisper-t4}
NS=kubewhisper            # the chart's namespace
APPS=default              # where the endpoints go
RELEASE=kubewhisper
WORK=$(mktemp -d /tmp/kubewhisper-demo.XXXXXX)
PIDS=()
STEP=0
step() { STEP=$((STEP + 1)); printf '\n\033[1;34m==> [%d/9] %s\033[0m\n' "$STEP" "$*" >&2; }
run() { printf '\033[2m$ %s\033[0m\n' "$*" >&2; "$@"; }
# a free port outside the kernel's ephemeral range (tests/helpers.py says why not bind(0))
free_port() { "$VENV/bin/python" -c 'from tests.helpers import free_port; print(free_port())'; }
wait_http() {  # url seconds pid what
  for _ in $(seq 1 $(( $2 * 2 ))); do
    curl -sf --max-time 2 "$1" >/dev/null 2>&1 && return 0
    kill -0 "$3" 2>/dev/null || { log "$4 exited"; return 1; }
    sleep 0.5
  done
  log "$4 did not answer $1 within $2 s"; return 1
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
      log "stopped PID $pid"
    fi
  done
  if [ "${DEMO_KEEP:-0}" != 1 ]; then
    "$ROOT/scripts/cluster-down.sh" --purge >/dev/null 2>&1 || true
    log "control plane stopped"
  else
    log "control plane kept: export KUBECONFIG=$KUBEWHISPER_CLUSTER_DIR/kubeconfig (stop: KUBEWHISPER_CLUSTER_DIR=$KUBEWHISPER_CLUSTER_DIR scripts/cluster-down.sh)"
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
MODEL=$("$ROOT/scripts/models.sh" base | tail -n1)
FIXTURES=$("$ROOT/scripts/fixtures.sh" | tail -n1)
export PATH=$BIN:$PATH
log "helm $(helm version --short), kubectl $(kubectl version --client 2>/dev/null | head -1 | awk '{print $3}'), model $MODEL"

step "local Kubernetes v1.20 control plane (fresh state in $KUBEWHISPER_CLUSTER_DIR)"
"$ROOT/scripts/cluster-down.sh" --purge >/dev/null 2>&1 || true
KC=$("$ROOT/scripts/cluster-up.sh" | tail -n1)
export KUBECONFIG=${KC#KUBECONFIG=}
run kubectl version --short 2>/dev/null | tail -1 >&2 || true

step "fake GPU nodes: a T4 pool (compute capability 7.5) and an H100 pool (9.0)"
"$VENV/bin/python" - "$ROOT/operator/examples/fake-gpu-nodes.yaml" > "$WORK/nodes.yaml" <<'PY'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
doc["items"] = [n for n in doc["items"] if n["metadata"]["labels"].get("pool") in ("t4", "h100")]
print(yaml.safe_dump(doc))
PY
run kubectl apply -f "$WORK/nodes.yaml" >&2
kubectl get nodes -L pool,nvidia.com/gpu.product,nvidia.com/gpu.compute.major,nvidia.com/gpu.compute.minor >&2

step "helm install the chart (operator replicas 0: no kubelet here, it runs as a local process next)"
run kubectl create namespace "$NS" >&2
run helm install "$RELEASE" charts/kubewhisper --namespace "$NS" --set operator.replicas=0 --wait --timeout 2m >&2
helm list -n "$NS" >&2

step "the operator: the chart's container command and env, run here as the chart's ServiceAccount"
helm get manifest "$RELEASE" -n "$NS" > "$WORK/manifest.yaml"
OP_PORT=$(free_port)
SA=$(kubectl -n "$NS" get deploy "$RELEASE-operator" -o jsonpath='{.spec.template.spec.serviceAccountName}')
for _ in $(seq 1 100); do SECRET=$(kubectl -n "$NS" get sa "$SA" -o jsonpath='{.secrets[0].name}' 2>/dev/null) && [ -n "$SECRET" ] && break; sleep 0.2; done
TOKEN=$(kubectl -n "$NS" get secret "$SECRET" -o jsonpath='{.data.token}' | base64 -d)
kubectl config view --raw --minify -o json > "$WORK/admin.json"
"$VENV/bin/python" - "$WORK" "$TOKEN" "$OP_PORT" "$VENV/bin" <<'PY'
import json, shlex, sys, yaml
work, token, port, vbin = sys.argv[1:]
admin = json.load(open(f"{work}/admin.json"))
yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "clusters": admin["clusters"],
                "users": [{"name": "operator", "user": {"token": token}}],
                "contexts": [{"name": "operator", "context": {"cluster": admin["clusters"][0]["name"], "user": "operator"}}],
                "current-context": "operator"}, open(f"{work}/operator.kubeconfig", "w"))
dep = next(d for d in yaml.safe_load_all(open(f"{work}/manifest.yaml")) if d and d["kind"] == "Deployment")
c = dep["spec"]["template"]["spec"]["containers"][0]
cmd = [f"{vbin}/kopf" if a == "kopf" else (f"--liveness=http://127.0.0.1:{port}/healthz" if a.startswith("--liveness=") else a)
       for a in c["command"]]
with open(f"{work}/operator.env.sh", "w") as f:
    for e in c["env"]:
        if "value" in e:
            f.write(f"export {e['name']}={shlex.quote(e['value'])}\n")
    f.write("export KUBEWHISPER_IDENTITY=demo-operator  # the pod name (downward API) in a cluster\n")
    f.write("OPERATOR_CMD=(" + " ".join(shlex.quote(a) for a in cmd) + ")\n")
PY
sed 's/^/    /' "$WORK/operator.env.sh" >&2
# shellcheck source=/dev/null  # written above, at run time
(. "$WORK/operator.env.sh"; export KUBECONFIG=$WORK/operator.kubeconfig
 exec "${OPERATOR_CMD[@]}" > "$WORK/operator.log" 2>&1) &
PIDS+=($!)
OP_PID=$!
wait_http "http://127.0.0.1:$OP_PORT/healthz" 60 "$OP_PID" operator
log "operator running (PID $OP_PID, identity system:serviceaccount:$NS:$SA, liveness :$OP_PORT, log $WORK/operator.log)"

step "two WhisperEndpoints: large-v3 on the T4 pool and on the H100 pool"
run kubectl -n "$APPS" create secret generic whisper-api-key --from-literal=api-key=demo-key >&2
run kubectl -n "$APPS" apply -f operator/examples/endpoint-t4.yaml -f operator/examples/endpoint-h100.yaml >&2
for we in whisper-t4 whisper-h100; do
  for _ in $(seq 1 120); do
    [ -n "$(kubectl -n "$APPS" get we "$we" -o jsonpath='{.status.profile.dtype}' 2>/dev/null)" ] && \
      kubectl -n "$APPS" get deploy "$we" >/dev/null 2>&1 && break
    kill -0 "$OP_PID" || { tail -30 "$WORK/operator.log" >&2; exit 1; }
    sleep 0.5
  done
done

step "what the operator decided"
run kubectl -n "$APPS" get we -o wide >&2
for we in whisper-t4 whisper-h100; do
  kubectl -n "$APPS" get we "$we" -o json > "$WORK/$we.we.json"
  kubectl -n "$APPS" get deploy "$we" -o json > "$WORK/$we.deploy.json"
done
"$VENV/bin/python" - "$WORK" >&2 <<'PY'
import json, sys
for we in ("whisper-t4", "whisper-h100"):
    p = json.load(open(f"{sys.argv[1]}/{we}.we.json"))["status"]["profile"]
    dep = json.load(open(f"{sys.argv[1]}/{we}.deploy.json"))
    print(f"\n  {we}: compute capability {p['computeCapability']} ({p['gpuProduct']}) -> dtype {p['dtype']}, "
          f"KV cache {p['kvCacheDtype']}, attention {p['attentionBackend']}, placement {p['placement']}")
    for r in p.get("reasons", []):
        print(f"    - {r}")
    print(f"  {we} Deployment env:")
    for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]:
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        print(f"    {e['name']}=" + (e.get("value", "") if not ref else f"<Secret {ref['name']}, key {ref['key']}>"))
PY
echo >&2
run kubectl -n "$APPS" get deploy,svc,pods -o wide >&2

step "the inference server with exactly the env of $ENDPOINT's pod (MODEL_ID, PORT overridden), then jfk.wav"
PORT=$(free_port)
kubectl -n "$APPS" get deploy "$ENDPOINT" -o json > "$WORK/deploy.json"
"$VENV/bin/python" - "$WORK/deploy.json" "$MODEL" "$PORT" > "$WORK/server.env.sh" <<'PY'
import json, shlex, sys
dep, model, port = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
c = dep["spec"]["template"]["spec"]["containers"][0]
overrides = {"MODEL_ID": model, "PORT": port, "HOST": "127.0.0.1"}
for e in c["env"]:
    if "value" in e:
        v = overrides.get(e["name"], e["value"])
        print(f"export {e['name']}={shlex.quote(v)}" + ("   # overridden" if e["name"] in overrides else ""))
    else:
        print(f"# {e['name']} comes from {json.dumps(e['valueFrom'])} in the cluster: not set here")
# no command/args in the pod: the image's ENTRYPOINT runs, i.e. `python -m whisper_inference`
argv = (c.get("command") or ["python", "-m", "whisper_inference"]) + (c.get("args") or [])
print("SERVER_CMD=(" + " ".join(shlex.quote(a) for a in argv) + ")")
PY
sed 's/^/    /' "$WORK/server.env.sh" >&2
# shellcheck source=/dev/null  # written above, at run time
(. "$WORK/server.env.sh"; [ "${SERVER_CMD[0]}" = python ] && SERVER_CMD[0]=$VENV/bin/python
 exec "${SERVER_CMD[@]}" > "$WORK/server.log" 2>&1) &
PIDS+=($!)
SRV_PID=$!
log "inference server PID $SRV_PID on 127.0.0.1:$PORT: loading the model (about 30 s on this CPU)"
wait_http "http://127.0.0.1:$PORT/ready" 300 "$SRV_PID" "inference server" || { tail -30 "$WORK/server.log" >&2; exit 1; }
HEALTH=$(curl -s "http://127.0.0.1:$PORT/health")
log "health: $HEALTH"
t1=$(date +%s.%N)
run curl -sS --fail-with-body "http://127.0.0.1:$PORT/v1/audio/transcriptions" \
  -F file=@"$FIXTURES/jfk.wav" -F model=whisper-1 -F response_format=json | tee "$WORK/transcript.json" >&2
echo >&2
SECS=$(awk -v a="$t1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
TEXT=$("$VENV/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["text"])' "$WORK/transcript.json")
grep -qi "ask not what your country can do for you" <<<"$TEXT" || { log "unexpected transcript: $TEXT"; exit 1; }

step "summary"
{
  echo "  control plane : Kubernetes v1.20.2 at $(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
  echo "  chart         : $(helm list -n "$NS" -o json | "$VENV/bin/python" -c 'import json,sys; r=json.load(sys.stdin)[0]; print(r["name"], r["chart"], r["status"], "rev", r["revision"])')"
  echo "  operator      : PID $OP_PID as system:serviceaccount:$NS:$SA (RBAC from the chart)"
  for we in whisper-t4 whisper-h100; do
    printf '  %-14s: %s\n' "$we" "$(kubectl -n "$APPS" get we "$we" -o jsonpath='dtype={.status.profile.dtype} kv={.status.profile.kvCacheDtype} attention={.status.profile.attentionBackend} gpu={.status.profile.gpuProduct}')"
  done
  echo "  local pod     : $ENDPOINT's env, PID $SRV_PID, $(sed -E 's/.*"dtype":"([^"]*)".*"device":"([^"]*)".*/dtype \1 on \2/' <<<"$HEALTH")"
  echo "  jfk.wav       : \"$TEXT\" (${SECS}s)"
  echo "  total         : $(( $(date +%s) - T0 ))s; logs in $WORK"
} >&2
