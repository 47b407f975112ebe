"""The scripts in examples/ run as a user runs them (a fresh interpreter, from the repository root)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_example(name: str, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_kdiffusion_function_api_example_lands_on_the_ring() -> None:
    out = run_example("kdiffusion_function_api.py")
    assert "sample_dpmpp_2m_sde" in out and "callback saw 40 steps" in out


@pytest.mark.skipif(importlib.util.find_spec("diffusers") is None, reason="needs the diffusers peer")
def test_diffusers_example_samples_with_both_routes() -> None:
    out = run_example("sample_diffusers_model.py")
    assert "generate: 10 model calls" in out and "images (2, 8, 8, 1)" in out


@pytest.mark.slow
def test_tune_example_saves_and_reuses_a_plan() -> None:
    out = run_example("tune_a_plan.py", "4")
    assert "sampled (16, 1, 8, 8) with the saved plan in 4 model calls" in out


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("diffusers") is None, reason="needs the diffusers peer")
def test_attention_guidance_example_runs_pag_and_sag_in_two_solvers() -> None:
    out = run_example("attention_guidance.py")
    assert out.count("30 model evaluations for 10 steps") == 4  # PAG and SAG with CFG, ODE and SDE solver
