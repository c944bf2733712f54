# shellcheck shell=bash
# Sourced by the other scripts: where heavy, reusable artifacts live (outside the repo, keyed by version).
# shellcheck disable=SC2034  # ROOT is read by the scripts that source this file
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${KUBEWHISPER_CACHE:-$HOME/.cache/kubewhisper}
mkdir -p "$CACHE"
# bold only on a terminal: captured stderr (pytest failure messages, CI logs) stays plain text
log() { if [ -t 2 ]; then printf '\033[1m[%s]\033[0m %s\n' "$(basename "$0")" "$*" >&2
        else printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; fi; }
# The host's own IPv4 address (the source of its default route): where the real node's pods reach the API server and
# the cluster DNS, and the node's InternalIP.
host_ip() { ip -4 route get 1.1.1.1 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "src") {print $(i + 1); exit}}'; }
