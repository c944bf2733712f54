"""GPU product name -> CUDA compute capability, for nodes whose GPU Feature Discovery compute labels are missing.

GFD writes the product as e.g. ``NVIDIA-H100-80GB-HBM3`` or ``Tesla-T4``; the NVML probe as ``NVIDIA H100 80GB HBM3``.
Matching is on normalised tokens, longest model name first (so ``A100`` never matches ``A10`` and ``L40S`` wins over
``L40``).
"""

from __future__ import annotations

import re

# model token -> (major, minor). Sources: NVIDIA CUDA GPUs compute capability table.
PRODUCT_CC: dict[str, tuple[int, int]] = {
    # Volta / Turing
    "V100": (7, 0),
    "TITAN V": (7, 0),
    "T4": (7, 5),
    "T4G": (7, 5),
    "RTX 2080": (7, 5),
    "QUADRO RTX 6000": (7, 5),
    "QUADRO RTX 8000": (7, 5),
    # Ampere
    "A100": (8, 0),
    "A30": (8, 0),
    "A800": (8, 0),
    "A10": (8, 6),
    "A10G": (8, 6),
    "A16": (8, 6),
    "A2": (8, 6),
    "A40": (8, 6),
    "A4000": (8, 6),
    "A5000": (8, 6),
    "A6000": (8, 6),
    "RTX 3090": (8, 6),
    # Ada Lovelace
    "L4": (8, 9),
    "L40": (8, 9),
    "L40S": (8, 9),
    "L20": (8, 9),
    "RTX 4090": (8, 9),
    "RTX 6000 ADA": (8, 9),
    # Hopper
    "H100": (9, 0),
    "H800": (9, 0),
    "H200": (9, 0),
    "H20": (9, 0),
    "GH200": (9, 0),
    # Blackwell
    "B200": (10, 0),
    "GB200": (10, 0),
    "B100": (10, 0),
}


def normalise(product: str) -> str:
    return " " + re.sub(r"[^A-Z0-9]+", " ", product.upper()).strip() + " "


def compute_capability_for_product(product: str | None) -> tuple[int, int] | None:
    """The compute capability of a GPU product name, or None when the product is unknown."""
    if not product:
        return None
    text = normalise(product)
    for model in sorted(PRODUCT_CC, key=len, reverse=True):
        if f" {model} " in text:
            return PRODUCT_CC[model]
    return None
