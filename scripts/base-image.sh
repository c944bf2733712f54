#!/usr/bin/env bash
# Ensure the stand-in for python:3.11-slim-bookworm in buildah's storage and print its name: where no container
# registry is reachable (this machine), the images are built FROM a Debian bookworm root filesystem made here from the
# Debian mirror with mmdebstrap (minbase: apt, dpkg and the essential packages) plus python3, pip, venv, `python`
# (python-is-python3), CA certificates, tini and passwd (useradd). Like python:slim it lets `pip install` write into the
# system Python (no EXTERNALLY-MANAGED marker), has LANG=C.UTF-8 and runs `python3` by default.
# Users build FROM the official image; scripts/image.sh passes this one as --build-arg PYTHON_IMAGE=... only here.
# Cached by its inputs (this script and the mirror): the image carries the key as a label and is rebuilt only when it
# changes. About 40-90 s cold (the mirror's downloads), instant warm.
set -euo pipefail
. "$(dirname "$0")/common.sh"
. "$ROOT/scripts/buildah-lib.sh"
NAME=localhost/kubewhisper-python:3.11-bookworm
PACKAGES=python3,python3-pip,python3-venv,python-is-python3,ca-certificates,tini,passwd
MIRROR=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
MIRROR=${KUBEWHISPER_DEBIAN_MIRROR:-${MIRROR:-http://deb.debian.org/debian}}
key=$({ cat "$0"; echo "$MIRROR"; } | sha256sum | cut -c1-12)

ensure_tools buildah:buildah mmdebstrap:mmdebstrap
mkdir -p "$BUILDAH_DIR/logs"
exec 6>"$BUILDAH_DIR/.base.lock"; flock 6
if [ "$(label "$NAME" io.kubewhisper.base-key)" != "$key" ]; then
  t0=$(date +%s.%N)
  work=$(mktemp -d "$CACHE/base-image.XXXXXX"); trap 'rm -rf "$work"' EXIT
  log "building $NAME from Debian bookworm ($MIRROR) with mmdebstrap"
  # docs, man pages and translations dropped (as in the official slim images); the hook's $1 is mmdebstrap's root
  # shellcheck disable=SC2016
  # its log in $BUILDAH_DIR/logs; one retry, as a mirror's download can fail transiently. The lock descriptors stay out
  # of it: mmdebstrap hands apt a pipe by number, and dash (apt's `sh -c`) cannot redirect a descriptor above 9.
  for attempt in 1 2; do
    mmdebstrap --variant=minbase --include="$PACKAGES" \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
      --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
      bookworm "$work/rootfs.tar" "deb $MIRROR bookworm main" > "$BUILDAH_DIR/logs/base-image.log" 2>&1 \
      3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- && break
    tail -n 20 "$BUILDAH_DIR/logs/base-image.log" >&2
    [ "$attempt" = 2 ] && { log "mmdebstrap failed twice (log: $BUILDAH_DIR/logs/base-image.log)"; exit 1; }
    log "mmdebstrap failed; retrying once"
  done
  c=$(b from scratch)
  b add "$c" "$work/rootfs.tar" / >&2
  b config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --cmd '["python3"]' --label io.kubewhisper.base-key="$key" \
    --label org.opencontainers.image.description="Debian bookworm python3 (stand-in for python:3.11-slim-bookworm)" "$c"
  b commit --quiet --rm --format oci "$c" "$NAME" >/dev/null
  log "$NAME built in $(seconds_since "$t0") s"
fi
echo "$NAME"
