#!/usr/bin/env bash
# Build (once, cached) kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kube-proxy v1.20.2 from
# Debian's own `kubernetes` source package (static, CGO_ENABLED=0), plus etcd from Debian's etcd-server .deb. No
# Docker, no internet beyond apt. Prints the bin dir (holding those six) as the LAST stdout line; everything else goes
# to stderr. Idempotent: a cached build returns in milliseconds. Only missing binaries are built, in one `make` so
# they share one Go build (cold: all five, about 11 min on 2 cores; a cache from before the real node had only the
# control plane: kubelet and kube-proxy, about 9 min).
# KUBEWHISPER_K8S_DOWNLOAD_ONLY=1: resolve, download and verify the Debian files, then stop (no build).
#
# Downloads are verified: apt checks every file against Debian's signed indexes (InRelease, signed by the
# debian-archive-keyring; Sources/Packages list each file's sha256), so a corrupt or substituted file fails here.
# Versions are pinned by family, not by one revision: Debian replaces a package on the mirror with each security
# revision (+deb12u1 -> +deb12u2), so the newest revision the mirror has of the pinned family is taken. The upstream
# tarball is the same file in every revision and is additionally pinned by sha256.
set -euo pipefail
. "$(dirname "$0")/common.sh"
K8S_VERSION=1.20.2
K8S_FAMILY='1.20.5+really1.20.2-1.1+deb12u*'   # source package kubernetes, bookworm
ORIG=kubernetes_1.20.5+really1.20.2.orig.tar.gz
ORIG_SHA256=b83c0780efb182d928dc63d46488a847f161f04e40a94b96bf5247dd671ecdfc
GO_FAMILY='1.15.15-1~deb11u*'                   # golang-1.15-go and golang-1.15-src, bullseye
ETCD_FAMILY='3.4.23-4*'                         # etcd-server, bookworm (binNMUs: +b4, ...)
W=$CACHE/k8s-v$K8S_VERSION
BIN=$W/bin
mkdir -p "$W"
exec 8>"$W/.lock"; flock 8   # one builder at a time (make test and make cluster-up may race)

COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
missing() { local c; for c in "${COMPONENTS[@]}"; do [ -x "$BIN/$c" ] || echo "$c"; done; }
# .complete: etcd is there and every binary was built (each is moved into bin/ whole, so present = complete)
if [ -f "$BIN/.complete" ] && [ -z "$(missing)" ] && [ "${KUBEWHISPER_K8S_DOWNLOAD_ONLY:-0}" != 1 ]; then
  echo "$BIN"; exit 0
fi

t0=$(date +%s)
log "building Kubernetes v$K8S_VERSION ($(missing | tr '\n' ' ')) into $W (9-11 min cold on 2 cores)"
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
apt-get "${A[@]}" update -qq >&2 || { log "apt-get update failed for $MIRROR (see above)"; exit 1; }
for tool in rsync make; do
  command -v $tool >/dev/null || { log "installing $tool (needs root)"; apt-get install -y -qq $tool >&2; }
done

# newest version the mirror has of a family: newest() FAMILY VERSION...
newest() {
  local family=$1 v best=; shift
  for v in "$@"; do
    # shellcheck disable=SC2053  # $family is a glob on purpose
    [[ $v == $family ]] || continue
    if [ -z "$best" ] || dpkg --compare-versions "$v" gt "$best"; then best=$v; fi
  done
  [ -n "$best" ] || { log "the mirror has no version matching $family (has: $*)"; exit 1; }
  echo "$best"
}
fetch() {  # fetch WHAT COMMAND...: run an apt download, failing at once with the artifact's name
  local what=$1; shift
  log "downloading $what"
  "$@" >&2 || { log "download of $what failed (apt verifies each file against Debian's signed index)"; exit 1; }
}
# shellcheck disable=SC2046  # one version per word
K8S_DEB=$(newest "$K8S_FAMILY" $(apt-cache "${A[@]}" showsrc kubernetes | awk '/^Version:/{print $2}'))
# shellcheck disable=SC2046
GO_DEB=$(newest "$GO_FAMILY" $(apt-cache "${A[@]}" madison golang-1.15-go | awk '{print $3}'))
# shellcheck disable=SC2046
ETCD_DEB=$(newest "$ETCD_FAMILY" $(apt-cache "${A[@]}" madison etcd-server | awk '{print $3}'))
(cd dl
 [ -f "$ORIG" ] || fetch "kubernetes=$K8S_DEB (source)" apt-get "${A[@]}" source --download-only -qq "kubernetes=$K8S_DEB"
 ls golang-1.15-go_*.deb >/dev/null 2>&1 ||
   fetch "golang-1.15-go=$GO_DEB" apt-get "${A[@]}" download -qq "golang-1.15-go=$GO_DEB" "golang-1.15-src=$GO_DEB"
 ls etcd-server_*.deb >/dev/null 2>&1 || fetch "etcd-server=$ETCD_DEB" apt-get "${A[@]}" download -qq "etcd-server=$ETCD_DEB"
 echo "$ORIG_SHA256  $ORIG" | sha256sum -c --quiet - >&2 ||
   { log "$ORIG does not match its pinned sha256 $ORIG_SHA256"; rm -f "$ORIG"; exit 1; }
 log "verified: $(sha256sum ./*.deb ./*.dsc ./*.tar.* | awk '{printf "%s %.12s  ", $2, $1}')")
if [ "${KUBEWHISPER_K8S_DOWNLOAD_ONLY:-0}" = 1 ]; then log "downloads verified in $W/dl"; exit 0; fi

# etcd 3.4 (static Go binary) from the .deb
rm -rf etcd && mkdir etcd && dpkg-deb -x dl/etcd-server_*.deb etcd
cp etcd/usr/bin/etcd "$BIN/etcd"
"$BIN/etcd" --version >&2

mapfile -t NEED < <(missing)
if [ ${#NEED[@]} -gt 0 ]; then
  rm -rf go && mkdir go && for d in dl/golang-1.15-*.deb; do dpkg-deb -x "$d" go; done
  [ -d kubernetes-$K8S_VERSION ] || tar xzf dl/kubernetes_1.20.5+really1.20.2.orig.tar.gz
  printf "KUBE_GIT_COMMIT='faecb196815e248d3ecfb03c680a4507229c2a56'\nKUBE_GIT_TREE_STATE='clean'\nKUBE_GIT_VERSION='v%s'\nKUBE_GIT_MAJOR='1'\nKUBE_GIT_MINOR='20'\n" "$K8S_VERSION" > version.env
  (export GOROOT=$W/go/usr/lib/go-1.15 PATH=$W/go/usr/lib/go-1.15/bin:$PATH GOCACHE=$W/gocache GOPROXY=off \
          GOFLAGS=-mod=vendor CGO_ENABLED=0 HOME=$W KUBE_GIT_VERSION_FILE=$W/version.env
   cd kubernetes-$K8S_VERSION
   make WHAT="${NEED[*]/#/cmd/}" >&2
   for c in "${NEED[@]}"; do cp "_output/bin/$c" "$BIN/.$c.tmp"; mv "$BIN/.$c.tmp" "$BIN/$c"; done)
fi
for c in "${COMPONENTS[@]}"; do "$BIN/$c" --version >&2; done
# drop the bulky intermediates (sources, Go toolchain, build cache): only bin/ and dl/ are kept
rm -rf "$W/kubernetes-$K8S_VERSION" "$W/go" "$W/gocache" "$W/etcd"
touch "$BIN/.complete"
log "Kubernetes binaries ready in $(( $(date +%s) - t0 ))s"
echo "$BIN"
