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


def save_safetensors(tensors: Mapping[str, torch.Tensor], path: str | Path,
                     metadata: Mapping[str, str] | None = None) -> None:
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
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for raw in blobs:
            f.write(raw)


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file into a dict of CPU tensors."""
    data = Path(path).read_bytes()
    if len(data) < 8:
        raise DiffsampleError(f"{path} is not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DiffsampleError(f"{path} is not a safetensors file: bad header ({e})") from None
    buf = bytearray(data[8 + n:])
    out: dict[str, torch.Tensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise DiffsampleError(f"tensor {name!r} in {path} has unsupported dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        flat = torch.frombuffer(buf[begin:end], dtype=torch.uint8) if end > begin else torch.empty(0, dtype=torch.uint8)
        out[name] = flat.view(dtype).reshape(info["shape"]).clone()
    return out
