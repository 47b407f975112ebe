"""Minimal reader/writer of the safetensors format, so shipped weights load with torch alone.

Format (https://huggingface.co/docs/safetensors): an 8-byte little-endian header length ``n``, a JSON
header of ``n`` bytes mapping each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}``
(offsets into the byte buffer that follows; an optional ``"__metadata__"`` entry maps strings to
strings), then the raw little-endian tensor bytes. Only the dtypes the shipped files use are handled.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import DiffsampleError
from ..files import atomic_write

__all__ = ["load_safetensors", "save_safetensors"]

_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
}
_NAMES = {v: k for k, v in _DTYPES.items()}


def save_safetensors(
    tensors: Mapping[str, torch.Tensor], path: str | Path, metadata: Mapping[str, str] | None = None
) -> None:
    """Write ``tensors`` (contiguous CPU copies are made) to ``path`` in safetensors format."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        if t.dtype not in _NAMES:
            raise DiffsampleError(f"cannot store tensor {name!r} of dtype {t.dtype}")
        raw = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # align the data section to 8 bytes
    with atomic_write(path) as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for raw in blobs:
            f.write(raw)


def load_safetensors(path: str | Path, *, max_header: int = 100_000_000) -> dict[str, torch.Tensor]:
    """Read a safetensors file into a dict of CPU tensors.

    Every inconsistency of a damaged or foreign file is a :class:`~diffsample.errors.DiffsampleError` naming the
    file and the tensor: a header length beyond the file, a header that is not a JSON object of tensor entries,
    offsets outside the data or not matching the dtype and shape.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DiffsampleError(f"cannot read weights file {path}: {exc.strerror or exc}") from None
    if len(data) < 8:
        raise DiffsampleError(f"{path} is not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > min(max_header, len(data) - 8):
        raise DiffsampleError(
            f"{path} is not a safetensors file: header length {n} exceeds the file ({len(data)} bytes)"
        )
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DiffsampleError(f"{path} is not a safetensors file: bad header ({e})") from None
    if not isinstance(header, dict):
        raise DiffsampleError(
            f"{path} is not a safetensors file: the header is a {type(header).__name__}, not an object"
        )
    buf = bytearray(data[8 + n :])
    out: dict[str, torch.Tensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        out[name] = _tensor(path, name, info, buf)
    return out


def _tensor(path: str | Path, name: str, info: object, buf: bytearray) -> torch.Tensor:
    """One tensor of a safetensors file after checking its header entry against the data section."""
    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
        raise DiffsampleError(f"tensor {name!r} in {path}: header entry must have dtype, shape and data_offsets")
    dtype = _DTYPES.get(info["dtype"]) if isinstance(info["dtype"], str) else None
    if dtype is None:
        raise DiffsampleError(f"tensor {name!r} in {path} has unsupported dtype {info['dtype']!r}")
    shape, offsets = info["shape"], info["data_offsets"]
    if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise DiffsampleError(
            f"tensor {name!r} in {path}: shape must be a list of non-negative integers, got {shape!r}"
        )
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(o, int) for o in offsets)
        and 0 <= offsets[0] <= offsets[1] <= len(buf)
    ):
        raise DiffsampleError(
            f"tensor {name!r} in {path}: data_offsets {offsets!r} lie outside the data ({len(buf)} bytes)"
        )
    begin, end = offsets
    numel = 1
    for d in shape:
        numel *= d
    expected = numel * torch.empty(0, dtype=dtype).element_size()
    if end - begin != expected:
        raise DiffsampleError(
            f"tensor {name!r} in {path}: {end - begin} bytes for shape {shape} of {info['dtype']} "
            f"(needs {expected}); the file is damaged or does not match its header"
        )
    flat = torch.frombuffer(buf[begin:end], dtype=torch.uint8) if end > begin else torch.empty(0, dtype=torch.uint8)
    return flat.view(dtype).reshape(shape).clone()
