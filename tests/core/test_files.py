"""Atomic writes and damaged weights files (issue #11): nothing half-written, every damage a named error."""

from __future__ import annotations

import json
import os
import stat
import struct
import threading
from pathlib import Path

import pytest
import torch

from diffsample.errors import DiffsampleError
from diffsample.files import atomic_write, atomic_write_bytes, atomic_write_text, check_writable
from diffsample.images import write_png
from diffsample.models._io import load_safetensors, save_safetensors


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "plan.json"
    target.write_text("good")
    with pytest.raises(RuntimeError), atomic_write(target, "w") as handle:
        handle.write("half")
        raise RuntimeError("serialisation failed")
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]


def test_symlink_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    (tmp_path / "out").mkdir()
    link = tmp_path / "out" / "samples.png"
    link.symlink_to(outside)
    with pytest.raises(DiffsampleError, match="symbolic link"):
        atomic_write_text(link, "x")
    assert outside.read_text() == "precious"


def test_check_writable_names_the_problem(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("x")
    with pytest.raises(DiffsampleError, match="exists"):
        check_writable(tmp_path / "a", overwrite=False)
    with pytest.raises(DiffsampleError, match="folder"):
        check_writable(tmp_path)
    with pytest.raises(DiffsampleError, match="cannot create the folder"):
        check_writable(tmp_path / "a" / "b.txt")  # a file where a folder must be
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(DiffsampleError, match="not writable"):
            check_writable(ro / "x.txt")


def test_concurrent_writers_leave_one_complete_file(tmp_path: Path) -> None:
    target = tmp_path / "shared.bin"
    payloads = [bytes([i]) * 100_000 for i in range(8)]
    threads = [threading.Thread(target=atomic_write_bytes, args=(target, p)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_bytes() in payloads
    assert [p.name for p in tmp_path.iterdir()] == ["shared.bin"]


def test_png_writer_is_atomic(tmp_path: Path) -> None:
    path = write_png(tmp_path / "g" / "img.png", torch.zeros(4, 4, 1, dtype=torch.uint8).numpy())
    assert path.read_bytes().startswith(b"\x89PNG")


def _file(tmp_path: Path, header: object, data: bytes = b"") -> Path:
    head = json.dumps(header).encode()
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", len(head)) + head + data)
    return path


@pytest.mark.parametrize(
    ("header", "data", "message"),
    [
        ([1, 2], b"", "not an object"),
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4, "outside the data"),
        ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, "needs 12"),
        ({"w": {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}}, b"\0" * 8, "shape must be"),
        ({"w": {"dtype": "Q9", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, "unsupported dtype"),
        ({"w": [1]}, b"", "header entry"),
    ],
)
def test_damaged_safetensors_are_named_errors(tmp_path: Path, header: object, data: bytes, message: str) -> None:
    with pytest.raises(DiffsampleError, match=message):
        load_safetensors(_file(tmp_path, header, data))


def test_header_length_beyond_the_file_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(DiffsampleError, match="exceeds the file"):
        load_safetensors(path)
    with pytest.raises(DiffsampleError, match="cannot read"):
        load_safetensors(tmp_path / "missing.safetensors")


def test_safetensors_round_trip(tmp_path: Path) -> None:
    tensors = {"a": torch.randn(3, 2), "b": torch.arange(5), "c": torch.randn(2).half()}
    save_safetensors(tensors, tmp_path / "t.safetensors")
    back = load_safetensors(tmp_path / "t.safetensors")
    assert all(torch.equal(back[k], v) for k, v in tensors.items())


def test_a_written_file_gets_the_permissions_open_would_give_it(tmp_path: Path) -> None:
    """New files: 0o666 less the umask (not the temporary file's 0o600); replaced files keep their own bits."""
    from diffsample.files import _umask

    old = os.umask(0o027)  # the test owns the process here; the library itself never sets the umask
    try:
        assert _umask() == 0o027 or not os.path.exists("/proc/self/status")
        fresh = atomic_write_text(tmp_path / "new.json", "{}")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~_umask()
    finally:
        os.umask(old)
    kept = tmp_path / "kept.json"
    kept.write_text("old")
    kept.chmod(0o640)
    atomic_write_text(kept, "new")
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640 and kept.read_text() == "new"
