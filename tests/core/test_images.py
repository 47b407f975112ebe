"""The stdlib PNG writer: decode its output independently (chunk CRCs, zlib, filter bytes) and compare pixels."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from diffsample.images import image_grid, write_png


def _decode_png(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    w, h, depth, colour, *_ = header
    channels = {0: 1, 2: 3}[colour]
    raw = zlib.decompress(idat)
    stride = w * channels + 1
    rows = [raw[r * stride : (r + 1) * stride] for r in range(h)]
    assert all(row[0] == 0 for row in rows)
    return np.frombuffer(b"".join(row[1:] for row in rows), dtype=np.uint8).reshape(h, w, channels)


@pytest.mark.parametrize("channels", [1, 3])
def test_png_round_trip(tmp_path, channels):
    pixels = np.random.default_rng(0).integers(0, 256, size=(7, 5, channels), dtype=np.uint8)
    path = write_png(tmp_path / "x.png", pixels)
    np.testing.assert_array_equal(_decode_png(path.read_bytes()), pixels)


def test_grid_places_each_image_scaled():
    images = np.stack([np.full((1, 2, 2), v) for v in (0.0, 0.5, 1.0)])
    grid = image_grid(images, columns=2, pad=1, scale=3)
    assert grid.shape == (2 * (6 + 1) + 1, 2 * (6 + 1) + 1, 1)
    assert (grid[1:7, 1:7] == 0).all() and (grid[1:7, 8:14] == 128).all() and (grid[8:14, 1:7] == 255).all()
    assert (grid[8:14, 8:14] == 255).all()  # the empty cell stays background
    with pytest.raises(ValueError, match="shape"):
        image_grid(np.zeros((2, 8, 8)))
