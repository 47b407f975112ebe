"""Sharded generation: the same set whatever the workers and shards, nothing lost, resumable, verified."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shard_faults

from diffsample import noise
from diffsample.cli import main
from diffsample.errors import DiffsampleError
from diffsample.generate_set import SetSettings, generate_set, load_set
from diffsample.generate_set.manifest import MANIFEST, file_sha256

SMALL = SetSettings(n=40, nfe=4, batch=10, shard_size=10, seed=3)


def _run(folder, settings=SMALL, **kwargs):
    kwargs = {"workers": 0, "frechet": False, "progress": False, **kwargs}
    return generate_set(settings, folder, **kwargs)


def test_sample_i_is_the_same_with_one_worker_or_four_and_any_shard_size(tmp_path) -> None:
    _run(tmp_path / "one", workers=1)
    _run(tmp_path / "four", workers=4)
    _run(tmp_path / "in-process-big-shards", SetSettings(n=40, nfe=4, batch=10, shard_size=20, seed=3))
    sets = [load_set(tmp_path / name) for name in ("one", "four", "in-process-big-shards")]
    for other in sets[1:]:
        assert np.array_equal(sets[0]["samples"], other["samples"])  # bitwise
    assert sets[0]["samples"].shape == (40, 1, 8, 8)
    assert sets[0]["indices"].tolist() == list(range(40))
    assert sets[0]["seeds"].tolist() == [noise.derive_seed(3, i) for i in range(40)]


def test_the_manifest_records_settings_seeds_versions_and_checksums(tmp_path) -> None:
    _run(tmp_path)
    data = json.loads((tmp_path / MANIFEST).read_text())
    assert SetSettings.from_dict(data["settings"]) == SMALL
    assert "derive_seed(seed, i)" in data["seed_rule"]
    assert {"diffsample", "torch", "numpy", "python"} <= set(data["versions"])
    assert [(s["start"], s["stop"]) for s in data["shards"]] == [(0, 10), (10, 20), (20, 30), (30, 40)]
    for s in data["shards"]:
        assert s["done"] and s["sha256"] == file_sha256(tmp_path / s["file"])
    assert data["walk"]["steps"] >= 1


def test_resume_verifies_checksums_and_redoes_only_missing_or_corrupted_shards(tmp_path) -> None:
    _run(tmp_path)
    before = load_set(tmp_path)["samples"]
    corrupted = tmp_path / "shard-00001.npz"
    corrupted.write_bytes(corrupted.read_bytes()[:-7] + b"garbage")  # same size class, wrong bytes
    (tmp_path / "shard-00002.npz").unlink()
    stale = tmp_path / ".shard-00002.npz.abc123.tmp"  # what a write cut off by SIGKILL leaves
    stale.write_bytes(b"partial")
    summary = _run(tmp_path)
    assert summary.computed == [1, 2] and summary.reused == [0, 3]
    assert not stale.exists()
    assert np.array_equal(load_set(tmp_path)["samples"], before)


def test_resuming_with_other_library_versions_says_so(tmp_path, capsys) -> None:
    _run(tmp_path)
    path = tmp_path / MANIFEST
    data = json.loads(path.read_text())
    data["versions"]["torch"] = "0.0.1"
    path.write_text(json.dumps(data))
    assert _run(tmp_path, progress=True).computed == []
    assert "torch': '0.0.1'" in capsys.readouterr().err


def test_a_failed_shard_is_retried(tmp_path) -> None:
    summary = _run(tmp_path, shard_fn=shard_faults.raises_once_on_shard_1)
    assert summary.failures == 1 and summary.computed == [0, 1, 2, 3]
    assert np.array_equal(load_set(tmp_path)["samples"][10:20], _reference(tmp_path)[10:20])


def test_a_dead_worker_process_is_replaced_and_its_shard_retried(tmp_path) -> None:
    summary = _run(tmp_path, workers=1, shard_fn=shard_faults.worker_dies_once_on_shard_0)
    assert summary.failures >= 1 and sorted(summary.computed) == [0, 1, 2, 3]
    assert np.array_equal(load_set(tmp_path)["samples"], _reference(tmp_path))


def test_an_interrupted_job_resumes_with_only_the_missing_shards(tmp_path) -> None:
    with pytest.raises(DiffsampleError, match=r"shards \[2\] failed 2 times.*resume"):
        _run(tmp_path, retries=1, shard_fn=shard_faults.always_fails_on_shard_2)
    with pytest.raises(DiffsampleError, match="not a finished set"):
        load_set(tmp_path)
    summary = _run(tmp_path)
    assert summary.computed == [2] and summary.reused == [0, 1, 3]
    assert np.array_equal(load_set(tmp_path)["samples"], _reference(tmp_path))


def test_a_folder_holding_another_set_is_refused(tmp_path) -> None:
    _run(tmp_path)
    with pytest.raises(DiffsampleError, match="other settings.*seed"):
        _run(tmp_path, SetSettings(n=40, nfe=4, batch=10, shard_size=10, seed=4))


def test_settings_are_checked_before_any_work() -> None:
    with pytest.raises(DiffsampleError, match="multiple of batch"):
        SetSettings(n=10, batch=4, shard_size=6)
    with pytest.raises(DiffsampleError, match="guidance needs a class"):
        SetSettings(n=10, guidance=2.0)


def test_classes_follow_the_global_index_and_the_digits_set_gets_a_frechet_distance(tmp_path) -> None:
    settings = SetSettings(n=20, nfe=4, batch=10, shard_size=10, class_label="all", guidance=2.0)
    summary = _run(tmp_path, settings, frechet=True)
    assert load_set(tmp_path)["labels"].tolist() == [i % 10 for i in range(20)]
    assert summary.frechet_distance is not None and summary.frechet_distance > 0


def test_the_command_runs_resumes_and_names_a_missing_ray(tmp_path, capsys) -> None:
    argv = ["generate-set", "--n", "20", "--nfe", "4", "--batch", "10", "--shard-size", "10", "--out", str(tmp_path)]
    assert main([*argv, "--workers", "0", "--quiet", "--no-fd"]) == 0
    assert "2 shards computed" in capsys.readouterr().out
    assert main([*argv, "--workers", "0", "--no-fd"]) == 0
    captured = capsys.readouterr()
    assert "0 shards computed" in captured.out and "2 already done" in captured.out
    assert "resuming: 2 of 2 shards verified done" in captured.err
    try:  # Ray is optional: without it the command says how to get it
        import ray  # noqa: F401
    except ImportError:
        assert main([*argv, "--ray"]) == 2
        assert "pip install 'ray'" in capsys.readouterr().err


def _reference(tmp_path):
    """The set computed in this process without faults (the result every faulty run must still give)."""
    _run(tmp_path / "reference")
    return load_set(tmp_path / "reference")["samples"]


@pytest.mark.slow
def test_ray_gives_the_same_set_as_local_processes(tmp_path) -> None:
    """On a local Ray instance (needs the optional ``ray`` package; ≈ 10 s to start), sample i is bitwise what
    local processes give."""
    pytest.importorskip("ray")
    _run(tmp_path / "ray", ray=True)
    assert np.array_equal(load_set(tmp_path / "ray")["samples"], _reference(tmp_path))
