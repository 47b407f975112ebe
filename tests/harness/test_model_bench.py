"""The digits-model benchmark: honest NFE, a reference that agrees with DOP853, tuned plans on held-out noise, CLI."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from benchmarks.__main__ import main
from benchmarks.model_bench import (
    ModelRow,
    format_figure_table,
    format_model_table,
    reference_solve,
    run_model_bench,
    write_model_csv,
)
from diffsample import solvers
from diffsample.errors import DiffsampleError, UnknownNameError
from diffsample.generate import default_choice
from diffsample.models import DigitsMLP, load_digits_model

SAMPLES = 10
REF_STEPS = 60  # the row tests only need a fixed reference; its accuracy is tested below at 1000 steps


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("model-bench-cache")


class _CountCalls:
    """Counts forward calls of the digits network core (one call on a batch = one evaluation per sample)."""

    def __enter__(self):
        self.calls = 0

        def hook(module, args, output):
            if isinstance(module, DigitsMLP):
                self.calls += 1

        self.handle = torch.nn.modules.module.register_module_forward_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def _run(cache, **kw):
    opts = {
        "nfes": (4,),
        "samples": SAMPLES,
        "solver_names": ("heun", "dpmpp_2m"),
        "schedules": ("logsnr", "time_uniform-trailing"),
        "tuned": False,
        "peers": None,
        "reference_steps": REF_STEPS,
        "cache_dir": cache,
    }
    opts.update(kw)
    return run_model_bench("digits", **opts)


def test_rows_and_network_calls(cache):
    _run(cache, solver_names=(), include_generate=False, floors=False)  # the references, now cached
    with _CountCalls() as counter:
        rows = _run(cache, floors=False)
    walks = [r for r in rows if not r.method.startswith("reference")]
    assert {(r.method, r.schedule) for r in walks} == {
        ("heun", "logsnr"),
        ("heun", "time_uniform-trailing"),
        ("dpmpp_2m", "logsnr"),
        ("dpmpp_2m", "time_uniform-trailing"),
        ("generate", default_choice(4, "vp_eps").step_schedule),  # the VP family's default at NFE 4
    }
    for r in walks:
        assert r.budget == 4 and r.samples == SAMPLES and r.sigma_end == 0.0
        assert r.nfe == solvers.spec(r.solver).nfe(r.steps) <= r.budget
        assert math.isfinite(r.fd) and math.isfinite(r.fd_cond) and 0.0 <= r.accuracy <= 1.0
        assert 0.0 < r.rmse < math.inf
    heun = next(r for r in walks if r.method == "heun" and r.schedule == "logsnr")
    assert (heun.steps, heun.nfe) == (2, 3)  # 2 steps; the last into σ = 0 is one evaluation
    # Heun's one real step jumps from σ_max to σ_min and its corrector divides the model error by σ_min
    # (it diverges), while DPM-Solver++(2M) on the same 4 evaluations lands near the ODE solution
    dpm = next(r for r in walks if r.method == "dpmpp_2m" and r.schedule == "logsnr")
    assert dpm.rmse < 0.5 < 10 < heun.rmse
    # every counted evaluation is one real network call, for the unconditional and the conditional walk
    assert counter.calls == 2 * sum(r.nfe for r in walks)
    # the time-uniform trailing schedule starts at t = 999, i.e. exactly at σ_max of the table
    assert all(r.sigma_start == pytest.approx(157.40728, rel=1e-6) for r in walks)


def test_peer_rows_count_real_calls(cache):
    pytest.importorskip("diffusers")
    _run(cache, solver_names=(), include_generate=False, floors=False)
    with _CountCalls() as counter:
        rows = _run(cache, solver_names=(), include_generate=False, floors=False, peers=("diffusers:dpm++2m",))
    (peer,) = [r for r in rows if r.library == "diffusers"]
    assert peer.nfe == 4 and counter.calls == 2 * 4
    assert peer.sigma_start == pytest.approx(157.40728, rel=1e-6) and peer.sigma_end == 0.0
    # diffusers' DPM-Solver++(2M) is our dpmpp_2m on its timesteps: the same ODE, so similar error
    assert 0.0 < peer.rmse < 1.0


@pytest.mark.slow
def test_reference_agrees_with_dop853():
    """The 1000-step DPM-Solver++(3M) reference against scipy's DOP853 on the network's PF-ODE.

    In ``u = log σ`` the PF-ODE is ``dx/du = x − D(x, e^u)`` (Karras et al. 2022, eq. 4); DOP853 integrates it
    from σ_max to σ_min with tight tolerances. A coarse solve must be far worse, so the check discriminates.
    """
    integrate = pytest.importorskip("scipy.integrate")
    den = load_digits_model()
    smin, smax = float(den.noise_schedule.sigma_min), float(den.noise_schedule.sigma_max)
    gen = torch.Generator().manual_seed(5)
    x = smax * torch.randn(1, 1, 8, 8, generator=gen, dtype=torch.float64)
    at_min, final = reference_solve(den, x, smin, smax, 1000)
    assert den.nfe == 1000

    def rhs(u, y):
        xs = torch.from_numpy(y).reshape(x.shape)
        with torch.no_grad():
            return (xs - den(xs, math.exp(u)).to(torch.float64)).reshape(-1).numpy()

    sol = integrate.solve_ivp(
        rhs, (math.log(smax), math.log(smin)), x.reshape(-1).numpy(), method="DOP853", rtol=1e-6, atol=1e-6
    )
    assert sol.success
    exact = torch.from_numpy(sol.y[:, -1]).reshape(x.shape)
    err = float((at_min - exact).abs().max())
    coarse, _ = reference_solve(den, x, smin, smax, 20)
    coarse_err = float((coarse - exact).abs().max())
    # measured: 5.9e-6 (1000 steps, within DOP853's own tolerance) against 7.5e-3 for 20 steps
    assert err < 1e-4 and coarse_err > 100 * err, (err, coarse_err)
    with torch.no_grad():  # the last step to σ = 0 is x̂0 at σ_min
        assert torch.allclose(final, den(at_min, smin).to(torch.float64))


def test_tuned_plan_is_cached_and_held_out(cache):
    opts = {"refine": 1, "max_evals": 4, "kicks": 0, "teacher_levels": 12, "teacher_substeps": 1}
    kw = {
        "solver_names": (),
        "include_generate": False,
        "floors": False,
        "tuned": True,
        "nfes": (3,),
        "calibration_size": 8,
        "tune_options": opts,
    }
    (row,) = [r for r in _run(cache, **kw) if r.method == "tuned plan"]
    plans = list((cache / "plans").glob("*.json"))
    assert len(plans) == 1
    prov = json.loads(plans[0].read_text())["provenance"]
    assert prov["calibration_seed"] == 1 and prov["calibration_size"] == 8 and prov["nfe"] == 3
    assert row.nfe <= 3 and row.sigma_end == 0.0 and math.isfinite(row.rmse)
    (again,) = [r for r in _run(cache, **kw) if r.method == "tuned plan"]  # loads the cached plan
    assert len(list((cache / "plans").glob("*.json"))) == 1
    assert (again.fd, again.rmse, again.nfe) == (row.fd, row.rmse, row.nfe)
    with pytest.raises(DiffsampleError, match="calibration seed"):
        _run(cache, **kw, calibration_seed=0)


def test_bad_input(cache):
    with pytest.raises(UnknownNameError):
        run_model_bench("cifar10", cache_dir=cache)
    with pytest.raises(DiffsampleError):
        _run(cache, samples=1)


def test_tables_and_csv(tmp_path):
    nan = math.nan
    rows = [
        ModelRow(
            "digits",
            "generate",
            "diffsample",
            "ipndm",
            "logsnr",
            10,
            10,
            10,
            1.5,
            0.7,
            0.99,
            0.05,
            157.4,
            0.0,
            1000,
            1.0,
        ),
        ModelRow("digits", "real half vs other half", "data", "", "", 0, 0, 0, 1.12, nan, nan, nan, nan, nan, 898, 0.0),
    ]
    table = format_model_table(rows)
    assert table.splitlines()[2].startswith("| — | real half") and "99.0 %" in table
    assert "| generate | 1.5 / 99.0 % |" in format_figure_table(rows, methods=("generate",))
    with write_model_csv(rows, tmp_path / "x.csv").open() as fh:
        assert [r["method"] for r in csv.DictReader(fh)] == ["generate", "real half vs other half"]


def test_cli_model_bench(cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("benchmarks.model_bench._cache_dir", lambda _dir: cache)
    monkeypatch.setattr("benchmarks.model_bench.REFERENCE_STEPS", REF_STEPS)  # the cached one
    code = main(
        [
            "model",
            "--nfe",
            "4",
            "--samples",
            str(SAMPLES),
            "--solvers",
            "euler",
            "--schedules",
            "logsnr",
            "--no-tune",
            "--out",
            str(tmp_path / "out"),
            "--quiet",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "| 4 | euler | diffsample | logsnr | 4 |" in text and "real half vs other half" in text
    assert (tmp_path / "out" / "digits-model.csv").exists() and (tmp_path / "out" / "digits-model.md").exists()


def test_stochastic_samplers_run_on_the_network_with_seeded_noise(cache):
    """SDE rows (the issue's "real case" for stochastic samplers): they draw per-sample seeded noise, so a
    rerun gives the same samples, and they spend exactly their budget."""
    first = _run(
        cache, solver_names=("ddpm", "dpmpp_2m_sde"), schedules=("karras",), include_generate=False, floors=False
    )
    again = _run(
        cache, solver_names=("ddpm", "dpmpp_2m_sde"), schedules=("karras",), include_generate=False, floors=False
    )
    sde = [r for r in first if r.solver in ("ddpm", "dpmpp_2m_sde")]
    assert len(sde) == 2 and all("stochastic" in r.note and r.nfe == 4 for r in sde)
    assert [r.fd for r in sde] == [r.fd for r in again if r.solver in ("ddpm", "dpmpp_2m_sde")]
    assert all(math.isfinite(r.fd) and math.isfinite(r.rmse) for r in sde)
