"""Picard sampling against the sequential walk on the exact test beds (ParaDiGMS, Shih et al. 2023)."""

from __future__ import annotations

import pytest
import torch

from diffsample import noise, solvers, steps
from diffsample.errors import DiffsampleError
from diffsample.parallel import STEPWISE_SOLVERS, StepNoise, picard, sequential
from diffsample.sampling import sample
from diffsample.testbeds import get_bed

SIGMAS = steps.karras(12, 0.002, 80.0)


def _start(bed: str, batch: int, sigmas: torch.Tensor = SIGMAS) -> tuple[torch.nn.Module, torch.Tensor]:
    den = get_bed(bed)
    dim = 2 if bed == "ring2d" else 64
    return den, noise.seeded(7).initial((batch, dim), float(sigmas[0]), dtype=torch.float64)


@pytest.mark.parametrize("solver", sorted(STEPWISE_SOLVERS))
def test_listed_solvers_walk_as_a_composition_of_one_step_walks(solver: str) -> None:
    """What Picard relies on: the sequential walk is Φ_{n−1} ∘ … ∘ Φ_0 with Φ_j one call on sigmas[j:j+2], bitwise."""
    den, x = _start("ring2d", 16)
    fixed = StepNoise.draw(noise.seeded(3), x, SIGMAS)
    options = {"eta": 0.5} if solver == "ddim" else {}
    whole = sample(den, x, SIGMAS, solver=solver, noise=fixed, **options)
    composed = x
    for j in range(len(SIGMAS) - 1):
        composed = sample(
            den, composed, SIGMAS[j : j + 2], solver=solver, noise=fixed.rows(j, torch.arange(16)), **options
        )
    assert torch.equal(whole, composed)


@pytest.mark.parametrize("bed", ["ring2d", "mixture64"])
@pytest.mark.parametrize("solver", ["euler", "heun", "euler_ancestral"])
@pytest.mark.parametrize("window", [None, 4])
def test_zero_tolerance_is_the_sequential_walk(bed: str, solver: str, window: int | None) -> None:
    """Bitwise where the denoiser's rows do not depend on the batch (ring2d's elementwise posterior); mixture64's
    matrix products round differently with the batch's size, so there the walks agree to round-off."""
    den, x = _start(bed, 16)
    ref = sequential(den, x, SIGMAS, solver, noise=noise.seeded(5))
    out = picard(den, x, SIGMAS, solver, noise=noise.seeded(5), tol=0.0, window=window)
    if bed == "ring2d":
        assert torch.equal(out.x, ref)
    else:
        assert float((out.x - ref).abs().max()) < 1e-12
    assert out.rounds <= out.steps == len(SIGMAS) - 1
    assert out.sequential_calls == solvers.spec(solver).nfe_on(SIGMAS)


@pytest.mark.parametrize("bed", ["ring2d", "mixture64"])
@pytest.mark.parametrize("solver", ["euler", "dpmpp_2s", "ddpm"])
def test_tolerance_bounds_the_error_and_saves_rounds(bed: str, solver: str) -> None:
    """On 60 log-SNR steps the iteration stops early; every sample stays within the tolerance of its walk."""
    sigmas = steps.logsnr(60, 0.002, 80.0)
    den, x = _start(bed, 32, sigmas)
    tol = 1e-4
    ref = sequential(den, x, sigmas, solver, noise=noise.seeded(9))
    out = picard(den, x, sigmas, solver, noise=noise.seeded(9), tol=tol, window=20)
    rms = (out.x - ref).square().mean(1).sqrt()
    assert float(rms.max()) <= tol
    assert out.rounds < out.steps
    assert out.batched_calls < out.sequential_calls
    assert out.speedup > 1.0


def test_each_sample_is_independent_of_its_batch() -> None:
    """Per-sample windows and seeded per-sample noise: sample i alone equals sample i in a batch of 16 (bitwise on
    ring2d, whose rows do not depend on the batch; see the zero-tolerance test for mixture64)."""
    den, x = _start("ring2d", 16)
    batch = picard(den, x, SIGMAS, "euler_ancestral", noise=noise.seeded(11), tol=1e-3, window=5)
    for i in (0, 9):
        source = noise.seeded([noise.derive_seed(11, i)])
        alone = picard(den, x[i : i + 1], SIGMAS, "euler_ancestral", noise=source, tol=1e-3, window=5)
        assert torch.equal(alone.x[0], batch.x[i])


def test_one_batched_call_per_stage_and_round() -> None:
    den, x = _start("ring2d", 8)
    before = den.nfe
    out = picard(den, x, SIGMAS, "heun", tol=0.0, window=3)
    assert den.nfe - before == out.batched_calls  # the model is called once per stage of a round
    assert out.row_evaluations <= out.batched_calls * 3 * 8
    assert out.evaluations_per_sample == out.row_evaluations / 8


@pytest.mark.parametrize("solver", ["dpmpp_2m", "ipndm", "unipc", "edm"])
def test_solvers_whose_step_needs_more_than_its_two_levels_are_refused(solver: str) -> None:
    den, x = _start("ring2d", 2)
    with pytest.raises(DiffsampleError, match="step-wise"):
        picard(den, x, SIGMAS, solver)


def test_bad_window_and_tolerance_are_refused() -> None:
    den, x = _start("ring2d", 2)
    with pytest.raises(DiffsampleError, match="window"):
        picard(den, x, SIGMAS, window=0)
    with pytest.raises(DiffsampleError, match="tol"):
        picard(den, x, SIGMAS, tol=-1.0)
