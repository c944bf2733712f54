# shellcheck shell=bash
# Sourced by base-image.sh and image.sh (after common.sh): buildah with the project's own storage under
# $CACHE/buildah (never /var/lib/containers), and the Debian tools they need, installed with apt when missing.
BUILDAH_DIR=$CACHE/buildah
b() { buildah --root "$BUILDAH_DIR/root" --runroot "$BUILDAH_DIR/runroot" --storage-driver overlay "$@"; }

# ensure_tools CMD:PACKAGE...: install the Debian packages whose commands are missing (needs root, as the node does).
ensure_tools() {
  local missing=() spec
  for spec in "$@"; do command -v "${spec%%:*}" >/dev/null || missing+=("${spec#*:}"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then log "missing ${missing[*]} (Debian packages): install them, or run as root"; exit 1; fi
  log "installing ${missing[*]} from Debian (apt)"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
    "${missing[@]}" >&2 || { log "apt-get install ${missing[*]} failed"; exit 1; }
}

# label IMAGE KEY: the value of label KEY on IMAGE in buildah's storage, empty when the image or label is absent
label() { b inspect --type image --format "{{ index .ImageAnnotations \"$2\" }}{{ index .OCIv1.Config.Labels \"$2\" }}" "$1" 2>/dev/null || true; }

seconds_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
