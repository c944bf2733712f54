"""Write the benchmark's clips (scripts/fixtures.sh) as 16 kHz FLAC with their texts into a directory, small enough
for a ConfigMap (bench/job.yaml mounts it as BENCH_AUDIO).

    python bench/flac_set.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

from audio_sets import CLIPS, RATE, read_clip
from cpu_engines import script


def main() -> None:
    import soundfile as sf

    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    fixtures = Path(script("fixtures.sh"))
    for name in CLIPS:
        clip = read_clip(fixtures, name)
        sf.write(out / f"{name}.flac", clip.samples, RATE, format="FLAC", subtype="PCM_16")
        (out / f"{name}.txt").write_text(clip.text + "\n")
    print(out, sum(f.stat().st_size for f in out.iterdir()), "bytes")


if __name__ == "__main__":
    main()
