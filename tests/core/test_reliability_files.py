"""Reliability of what is read and written on disk: one atomic writer, contained paths, safe loads (issue #11)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from diffsample.errors import DiffsampleError
from diffsample.files import atomic_write_bytes
from diffsample.plan import Plan

ROOT = Path(__file__).parents[2]


def test_cache_writes_through_the_one_atomic_writer(tmp_path, monkeypatch):
    import diffsample.files as files

    used = []
    original = files.atomic_write

    def spy(path, *args, **kwargs):
        used.append(Path(path).name)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(files, "atomic_write", spy)
    array = np.arange(5.0)
    atomic_write_bytes(tmp_path / "a.npy", lambda handle: np.save(handle, array, allow_pickle=False))
    assert used == ["a.npy"]
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), array)
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]


def test_ems_save_is_atomic(tmp_path, monkeypatch):
    from diffsample.tuning.ems import EMS

    stats = EMS.degenerate(0.002, 80.0)
    path = tmp_path / "stats.npz"
    stats.save(path)
    before = path.read_bytes()

    def full_disk(handle, **arrays):
        handle.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises(OSError):
        stats.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["stats.npz"]


def test_torch_load_only_with_weights_only():
    unsafe = []
    for folder in ("src", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            for match in re.finditer(r"torch\.load\b", text):
                line = text[text.rfind("\n", 0, match.start()) + 1 : text.find("\n", match.end())]
                if "weights_only=True" not in line:
                    unsafe.append(f"{path.relative_to(ROOT)}: {line.strip()}")
    assert not unsafe, unsafe


def _digits_copy(tmp_path: Path) -> Path:
    from diffsample.models.digits import WEIGHTS

    folder = tmp_path / "weights"
    shutil.copytree(WEIGHTS, folder)
    return folder


def _edit_config(folder: Path, change) -> None:
    path = folder / "digits_uncond.json"
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))


def test_digits_weights_path_must_stay_in_the_model_folder(tmp_path):
    from diffsample.models import load_digits_model

    folder = _digits_copy(tmp_path)
    shutil.copy(folder / "digits_uncond.safetensors", tmp_path / "outside.safetensors")
    _edit_config(folder, lambda c: c.update(weights="../outside.safetensors"))
    with pytest.raises(DiffsampleError, match="leaves the model folder"):
        load_digits_model(weights_dir=folder)
    _edit_config(folder, lambda c: c.update(weights=str(tmp_path / "outside.safetensors")))
    with pytest.raises(DiffsampleError, match="leaves the model folder"):
        load_digits_model(weights_dir=folder)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["architecture"].update(widht=3), "unknown architecture key 'widht'"),
        (lambda c: c.pop("schedule"), "missing key 'schedule'"),
        (lambda c: c["parameterization"].update(sigma_data="big"), "sigma_data"),
        (lambda c: c["architecture"].update(width=8), "do not fit the config's architecture"),
    ],
)
def test_digits_config_with_wrong_keys(tmp_path, change, message):
    from diffsample.models import load_digits_model

    folder = _digits_copy(tmp_path)
    _edit_config(folder, change)
    with pytest.raises(DiffsampleError, match=message):
        load_digits_model(weights_dir=folder)


def test_digits_config_not_json(tmp_path):
    from diffsample.models import load_digits_model

    folder = _digits_copy(tmp_path)
    (folder / "digits_uncond.json").write_text("{")
    with pytest.raises(DiffsampleError, match="not a JSON config"):
        load_digits_model(weights_dir=folder)


def test_diffusers_subfolder_must_stay_in_the_model_folder(tmp_path):
    pytest.importorskip("diffusers")
    from diffsample.integrations import load_diffusers_denoiser

    model = tmp_path / "model"
    model.mkdir()
    (tmp_path / "evil").mkdir()
    (tmp_path / "evil" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(DiffsampleError, match="leaves the model folder"):
        load_diffusers_denoiser(str(model), subfolder="../evil")


def test_diffusers_broken_config_is_named(tmp_path):
    pytest.importorskip("diffusers")
    from diffsample.integrations import load_diffusers_denoiser

    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(DiffsampleError, match="config.json: a config is a JSON object"):
        load_diffusers_denoiser(str(tmp_path))


def test_tune_benchmark_skips_a_corrupt_cached_plan(tmp_path):
    pytest.importorskip("scipy")
    from benchmarks.tuning_bench import run_tuning_bench

    settings = dict(
        heldout_size=4,
        calibration_size=4,
        schedules=["karras"],
        solver_names=["euler"],
        peers=False,
        tune_options={"teacher_levels": 8, "refine": 1, "max_evals": 2, "kicks": 0},
        plan_dir=tmp_path,
    )
    first = run_tuning_bench(["ring2d"], [2], **settings)
    cached = tmp_path / "ring2d-nfe2.json"
    text = cached.read_text()
    cached.write_text(text[: len(text) // 2])  # a cut-off file
    lines: list[str] = []
    again = run_tuning_bench(["ring2d"], [2], progress=lines.append, **settings)
    assert any("corrupt cached plan" in line and str(cached) in line for line in lines)
    assert again[0].tuned_rmse == first[0].tuned_rmse
    assert Plan.load(cached).sigmas == first[0].plan["sigmas"]
    assert torch.isfinite(torch.tensor(again[0].tuned_rmse))
