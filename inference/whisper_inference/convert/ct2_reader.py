"""Reader for CTranslate2's `model.bin` (format version >= 5), the format faster-whisper ships."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

_DTYPES: dict[int, str] = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}


class CT2FormatError(ValueError):
    pass


def _u8(f: BinaryIO) -> int:
    return struct.unpack("<B", f.read(1))[0]


def _u16(f: BinaryIO) -> int:
    return struct.unpack("<H", f.read(2))[0]


def _u32(f: BinaryIO) -> int:
    return struct.unpack("<I", f.read(4))[0]


def _string(f: BinaryIO) -> str:
    return f.read(_u16(f))[:-1].decode()  # NUL-terminated


def _array(buf: bytes, code: int) -> np.ndarray:
    dtype = _DTYPES.get(code)
    if dtype is None:
        raise CT2FormatError(f"unknown CTranslate2 dtype code {code}")
    if dtype == "bfloat16":  # numpy has no bf16: widen the 16 bits into the top of a float32
        return (np.frombuffer(buf, np.uint16).astype(np.uint32) << 16).view(np.float32)
    return np.frombuffer(buf, np.dtype(dtype))


def read_ct2(path: str | Path) -> tuple[str, int, dict[str, np.ndarray]]:
    """Return (spec name, revision, {variable name: array}); aliases resolve to their targets."""
    with open(path, "rb") as f:
        version = _u32(f)
        if version < 5:
            raise CT2FormatError(f"{path}: model.bin version {version} is older than 5")
        spec, revision, count = _string(f), _u32(f), _u32(f)
        variables: dict[str, np.ndarray] = {}
        for _ in range(count):
            name = _string(f)
            dims = [_u32(f) for _ in range(_u8(f))]
            code, nbytes = _u8(f), _u32(f)
            arr = _array(f.read(nbytes), code)
            variables[name] = arr.reshape(dims) if dims else arr.reshape(())
        for _ in range(_u32(f)):
            alias, target = _string(f), _string(f)
            variables[alias] = variables[target]
    return spec, revision, variables
