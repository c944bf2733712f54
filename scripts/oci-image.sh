#!/usr/bin/env bash
# Pack a directory into a one-layer OCI image archive that `ctr images import` loads, with no Docker, no buildah and
# no registry: the layer is a plain tar of the directory (owned by root, mtimes zeroed, so the same input gives the
# same digest), the config and manifest are written here.
#   oci-image.sh OUT.tar NAME:TAG ROOTFS_DIR ENTRYPOINT_JSON [USER]
#   e.g. oci-image.sh pause.tar localhost/pause:3.4.1 rootfs '["/pause"]' 65535:65535
# The archive names the image with containerd's own annotation (io.containerd.image.name), so the import gives it
# exactly NAME:TAG. Used for the real node's pause image and the node tests' busybox image (scripts/node-up.sh).
set -euo pipefail
[ $# -ge 4 ] || { echo "usage: $0 OUT.tar NAME:TAG ROOTFS_DIR ENTRYPOINT_JSON [USER]" >&2; exit 2; }
out=$1 name=$2 rootfs=$3 entrypoint=$4 user=${5:-}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$work/blobs/sha256"
blob() {  # blob FILE: move FILE into the blob store, print "<digest hex> <size>"
  local h s; h=$(sha256sum "$1" | cut -d' ' -f1); s=$(stat -c %s "$1")
  mv "$1" "$work/blobs/sha256/$h"; echo "$h $s"
}
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$rootfs" -cf "$work/layer" .
read -r layer layer_size < <(blob "$work/layer")
printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":%s,"User":"%s","Env":["PATH=/bin:/usr/bin:/sbin:/usr/sbin"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$entrypoint" "$user" "$layer" > "$work/config"
read -r config config_size < <(blob "$work/config")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
  "$config" "$config_size" "$layer" "$layer_size" > "$work/manifest"
read -r manifest manifest_size < <(blob "$work/manifest")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
  "$manifest" "$manifest_size" "$name" "${name##*:}" > "$work/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' > "$work/oci-layout"
tar --owner=0 --group=0 --numeric-owner -C "$work" -cf "$out.tmp" oci-layout index.json blobs
mv "$out.tmp" "$out"
