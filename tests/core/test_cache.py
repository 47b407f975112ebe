"""The one disk cache: directory rule, keyed names, atomic writes."""

from __future__ import annotations

import pytest

from diffsample import cache
from diffsample.files import atomic_write_bytes


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DIFFSAMPLE_CACHE", str(tmp_path))
    assert cache.cache_dir("reference") == tmp_path / "reference"
    assert cache.cache_dir("reference", tmp_path / "mine") == tmp_path / "mine"
    monkeypatch.delenv("DIFFSAMPLE_CACHE")
    assert cache.cache_root().parts[-2:] == (".cache", "diffsample")


def test_key_digest_depends_on_settings_and_bytes_not_on_key_order():
    assert cache.key_digest({"a": 1, "b": 2}, b"x") == cache.key_digest({"b": 2, "a": 1}, b"x")
    assert cache.key_digest({"a": 1}, b"x") != cache.key_digest({"a": 1}, b"y")
    assert cache.key_digest({"a": 1}) != cache.key_digest({"a": 2})


def test_cached_computes_once_and_writes_atomically(tmp_path):
    path = tmp_path / "sub" / "value.txt"
    calls = []

    def compute() -> str:
        calls.append(1)
        return "42"

    def load(p):
        return p.read_text()

    def save(value, handle):
        return handle.write(value.encode())

    assert cache.cached(path, compute, load, save) == "42"
    assert cache.cached(path, compute, load, save) == "42"
    assert len(calls) == 1 and [p.name for p in path.parent.iterdir()] == ["value.txt"]


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    def fail(handle):
        handle.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write_bytes(tmp_path / "x.npy", fail)
    assert list(tmp_path.iterdir()) == []
