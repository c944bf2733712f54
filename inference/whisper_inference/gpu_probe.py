"""`python -m whisper_inference.gpu_probe`: report the GPU's capability for the operator's probe Job.

Writes one JSON object to stdout and to the container's termination message file, where the operator
reads it from the pod status.
"""

from __future__ import annotations

import json
import os
import sys

from .gpu import detect_gpu


def main() -> int:
    gpu = detect_gpu()
    result = (
        {"error": "no NVIDIA GPU visible through NVML"}
        if gpu is None
        else {"major": gpu.major, "minor": gpu.minor, "product": gpu.product, "memoryMiB": gpu.memory_mib}
    )
    text = json.dumps(result)
    print(text)
    path = os.environ.get("TERMINATION_MESSAGE_PATH", "/dev/termination-log")
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError:
        pass  # outside a pod there is no termination log; stdout carries the answer
    return 0 if gpu is not None else 1


if __name__ == "__main__":
    sys.exit(main())
