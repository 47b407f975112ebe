"""Write sample grids as PNG files with the standard library alone (zlib), so the core needs no imaging package."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np

from .files import atomic_write_bytes

__all__ = ["image_grid", "write_png"]


def image_grid(images: np.ndarray, columns: int | None = None, pad: int = 1, scale: int = 4) -> np.ndarray:
    """Tile ``images`` of shape (N, C, H, W) with values in [0, 1] into one (H', W', C) uint8 array.

    Each pixel is repeated ``scale`` times per axis (nearest neighbour), so small images stay visible.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (N, 1 or 3, H, W), got {images.shape}")
    n, c, h, w = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    pixels = np.clip(np.rint(images * 255), 0, 255).astype(np.uint8).repeat(scale, 2).repeat(scale, 3)
    hs, ws = h * scale, w * scale
    grid = np.full((rows * (hs + pad) + pad, columns * (ws + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, columns)
        top, left = pad + r * (hs + pad), pad + q * (ws + pad)
        grid[top : top + hs, left : left + ws] = pixels[i].transpose(1, 2, 0)
    return grid


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png(path: str | Path, pixels: np.ndarray) -> Path:
    """Write an (H, W, 1 or 3) uint8 array as an 8-bit greyscale or RGB PNG (PNG spec, ISO/IEC 15948)."""
    h, w, c = pixels.shape
    colour_type = {1: 0, 3: 2}[c]
    raw = b"".join(b"\x00" + pixels[row].tobytes() for row in range(h))  # filter type 0 on every row
    header = struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0)
    return atomic_write_bytes(
        path,
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b""),
    )
