#!/usr/bin/env bash
# Build (once, cached) kube-apiserver, kube-controller-manager and kube-scheduler v1.20.2 from Debian's own
# `kubernetes` source package, plus etcd from Debian's etcd-server .deb. No Docker, no internet beyond apt.
# Prints the bin dir (holding kube-apiserver, kube-controller-manager, kube-scheduler, etcd) as the LAST stdout line;
# everything else goes to stderr. Idempotent: a cached build returns in milliseconds.
set -euo pipefail
. "$(dirname "$0")/common.sh"
K8S_VERSION=1.20.2
DEB_VERSION=1.20.5+really1.20.2-1.1+deb12u1
W=$CACHE/k8s-v$K8S_VERSION
BIN=$W/bin
mkdir -p "$W"
exec 8>"$W/.lock"; flock 8   # one builder at a time (make test and make cluster-up may race)

if [ -f "$BIN/.complete" ]; then echo "$BIN"; exit 0; fi

t0=$(date +%s)
log "building Kubernetes v$K8S_VERSION control plane into $W (about 8.5 min cold on 2 cores)"
mkdir -p "$W/apt/lists/partial" "$W/apt/cache/archives/partial" "$W/dl" "$BIN"
cd "$W"
# The Debian mirror this machine is configured with; a private sources list keeps the system apt config untouched.
MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
cat > apt/sources.list <<S
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bookworm main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bookworm main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bullseye main
S
A=(-o Dir::Etc::SourceList="$W/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
   -o Dir::State::Lists="$W/apt/lists" -o Dir::Cache="$W/apt/cache" -o Debug::NoLocking=1)
apt-get "${A[@]}" update -qq >&2
for tool in rsync make; do
  command -v $tool >/dev/null || { log "installing $tool (needs root)"; apt-get install -y -qq $tool >&2; }
done
(cd dl
 [ -f kubernetes_1.20.5+really1.20.2.orig.tar.gz ] || apt-get "${A[@]}" source --download-only -qq "kubernetes=$DEB_VERSION" >&2
 ls golang-1.15-go_*.deb >/dev/null 2>&1 || apt-get "${A[@]}" download -qq golang-1.15-go golang-1.15-src >&2
 ls etcd-server_*.deb >/dev/null 2>&1 || apt-get "${A[@]}" download -qq etcd-server/bookworm >&2)

# etcd 3.4 (static Go binary) from the .deb
rm -rf etcd && mkdir etcd && dpkg-deb -x dl/etcd-server_*.deb etcd
cp etcd/usr/bin/etcd "$BIN/etcd"
"$BIN/etcd" --version >&2

if [ ! -x "$BIN/kube-apiserver" ] || [ ! -x "$BIN/kube-controller-manager" ] || [ ! -x "$BIN/kube-scheduler" ]; then
  rm -rf go && mkdir go && for d in dl/golang-1.15-*.deb; do dpkg-deb -x "$d" go; done
  [ -d kubernetes-$K8S_VERSION ] || tar xzf dl/kubernetes_1.20.5+really1.20.2.orig.tar.gz
  printf "KUBE_GIT_COMMIT='faecb196815e248d3ecfb03c680a4507229c2a56'\nKUBE_GIT_TREE_STATE='clean'\nKUBE_GIT_VERSION='v%s'\nKUBE_GIT_MAJOR='1'\nKUBE_GIT_MINOR='20'\n" "$K8S_VERSION" > version.env
  (export GOROOT=$W/go/usr/lib/go-1.15 PATH=$W/go/usr/lib/go-1.15/bin:$PATH GOCACHE=$W/gocache GOPROXY=off \
          GOFLAGS=-mod=vendor CGO_ENABLED=0 HOME=$W KUBE_GIT_VERSION_FILE=$W/version.env
   cd kubernetes-$K8S_VERSION
   make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler" >&2
   cp _output/bin/kube-apiserver _output/bin/kube-controller-manager _output/bin/kube-scheduler "$BIN/")
fi
"$BIN/kube-apiserver" --version >&2
# drop the bulky intermediates (sources, Go toolchain, build cache): only bin/ and dl/ are kept
rm -rf "$W/kubernetes-$K8S_VERSION" "$W/go" "$W/gocache" "$W/etcd"
touch "$BIN/.complete"
log "control plane binaries ready in $(( $(date +%s) - t0 ))s"
echo "$BIN"
