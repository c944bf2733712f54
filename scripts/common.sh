# Sourced by the other scripts: where heavy, reusable artifacts live (outside the repo, keyed by version).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${KUBEWHISPER_CACHE:-$HOME/.cache/kubewhisper}
mkdir -p "$CACHE"
log() { printf '\033[1m[%s]\033[0m %s\n' "$(basename "$0")" "$*" >&2; }
