"""Feynman–Kac correctors (Skreta et al. 2025) against closed forms and exact grid references in 1-d."""

from __future__ import annotations

import math

import pytest
import torch

from diffsample.errors import DiffsampleError, ShapeError
from diffsample.scaling import FKCorrectorProposal, fk_corrector_smc
from diffsample.testbeds import GaussianMixture
from diffsample.testbeds.grid_density import GridDensity

F64 = torch.float64


def _sigmas(n: int, top: float = 20.0, bottom: float = 1e-3) -> torch.Tensor:
    return torch.cat([torch.logspace(math.log10(top), math.log10(bottom), n, dtype=F64), torch.zeros(1, dtype=F64)])


def _gauss(mean: float, std: float) -> GaussianMixture:
    return GaussianMixture(torch.tensor([[mean]], dtype=F64), torch.tensor([std], dtype=F64), torch.ones(1, dtype=F64))


def _uneven() -> GaussianMixture:
    """Two equally likely modes of different widths: ``p²`` moves mass to the narrow one (0.5 → 0.77)."""
    return GaussianMixture(
        torch.tensor([[-2.0], [2.0]], dtype=F64),
        torch.tensor([0.3, 1.0], dtype=F64),
        torch.tensor([0.5, 0.5], dtype=F64),
    )


def _draws(proposal: FKCorrectorProposal, k: int, g: int) -> tuple[torch.Tensor, float]:
    res = fk_corrector_smc(proposal, particles=k, populations=g, seeds=0)
    log_z = float(torch.logsumexp(res.log_normalizer, 0) - math.log(g))
    return res.draw(1)[:, 0], log_z


def test_annealed_gaussian_reaches_the_tempered_gaussian_and_the_plain_sde_does_not() -> None:
    # p = N(1, s²), β = 2: target N(1, s²/2) with ∫ p² = (4π s²)^(-1/2); the uncorrected SDE ends at
    # variance s²/(2β − 1) (its linear variance ODE dV/da = 2βV/a − 1 with a = s² + σ²)
    s2, beta = 0.25, 2.0
    prop = FKCorrectorProposal.annealed(_gauss(1.0, 0.5), beta, _sigmas(200), (1,), dtype=F64)
    x, log_z = _draws(prop, 32, 2000)
    assert abs(float(x.mean()) - 1.0) < 0.03
    assert abs(float(x.var()) - s2 / beta) < 0.015
    assert abs(log_z - (-0.5 * math.log(4 * math.pi * s2))) < 0.5  # first-order discretisation bias (~0.35 here)
    plain = FKCorrectorProposal.annealed(_gauss(1.0, 0.5), beta, _sigmas(100), (1,), dtype=F64, corrected=False)
    y, _ = _draws(plain, 1, 2000)
    assert abs(float(y.var()) - s2 / (2 * beta - 1)) < 0.012


def test_product_of_two_gaussians_is_the_precision_weighted_gaussian() -> None:
    # N(−1, 1) · N(2, 0.25) ∝ N(1.4, 0.2), ∫ = N(−1; 2, 1.25)
    # (200 levels: the Euler–Maruyama + left-point weights leave a first-order bias of ~0.09 in the mean)
    prop = FKCorrectorProposal.product(_gauss(-1.0, 1.0), _gauss(2.0, 0.5), _sigmas(200), (1,), dtype=F64)
    x, log_z = _draws(prop, 32, 2000)
    assert abs(float(x.mean()) - 1.4) < 0.13
    assert abs(float(x.var()) - 0.2) < 0.02
    exact = -0.5 * math.log(2 * math.pi * 1.25) - 9 / (2 * 1.25)
    assert abs(log_z - exact) < 0.6
    plain = FKCorrectorProposal.product(
        _gauss(-1.0, 1.0), _gauss(2.0, 0.5), _sigmas(200), (1,), dtype=F64, corrected=False
    )
    y, _ = _draws(plain, 1, 2000)
    assert float(y.mean()) < 1.2 and float(y.var()) < 0.17


def test_annealed_mixture_mode_mass_matches_the_grid_only_when_corrected() -> None:
    bed = _uneven()
    exact = GridDensity(lambda t: 2 * bed.log_prob(t[:, None], 0.0), -10.0, 10.0)
    assert abs(exact.mass_above(0.0) - 0.2301) < 1e-3
    x, _ = _draws(FKCorrectorProposal.annealed(bed, 2.0, _sigmas(100), (1,), dtype=F64), 16, 1000)
    y, _ = _draws(FKCorrectorProposal.annealed(bed, 2.0, _sigmas(100), (1,), dtype=F64, corrected=False), 1, 1000)
    assert abs(float((x > 0).to(F64).mean()) - exact.mass_above(0.0)) < 0.06
    assert float((y > 0).to(F64).mean()) > 0.38
    assert exact.wasserstein1(x) < 0.5 * exact.wasserstein1(y)


def test_cfg_geometric_mixture_normaliser_and_mass() -> None:
    # p_1^{−1} p_2^{2} of two same-width mixtures: mode weights ∝ w_2²/w_1
    def mix(w: list[float]) -> GaussianMixture:
        return GaussianMixture(
            torch.tensor([[-2.0], [2.0]], dtype=F64), torch.tensor([0.5, 0.5], dtype=F64), torch.tensor(w, dtype=F64)
        )

    uncond, cond = mix([0.5, 0.5]), mix([0.2, 0.8])
    exact = GridDensity(lambda t: 2 * cond.log_prob(t[:, None], 0.0) - uncond.log_prob(t[:, None], 0.0), -8.0, 8.0)
    prop = FKCorrectorProposal.geometric_mixture(uncond, cond, 2.0, _sigmas(100), (1,), dtype=F64)
    x, log_z = _draws(prop, 16, 1000)
    assert abs(float((x > 0).to(F64).mean()) - exact.mass_above(0.0)) < 0.03
    assert abs(log_z - exact.log_normalizer) < 0.1


def test_batch_invariant_seeded_and_counted() -> None:
    def run(g: int) -> object:
        prop = FKCorrectorProposal.product(_uneven(), _gauss(0.0, 2.0), _sigmas(20), (1,), dtype=F64)
        return fk_corrector_smc(prop, particles=8, populations=g, seeds=[11, 12, 13][:g])

    one, three = run(1), run(3)
    assert torch.equal(one.x[0], three.x[0]) and torch.equal(one.log_weights[0], three.log_weights[0])
    assert torch.equal(one.log_normalizer[0], three.log_normalizer[0])
    # two denoisers, one call per row at each of the 20 levels with σ > 0
    assert three.cost.network_evaluations == 2 * 20 * 3 * 8


def test_bad_input_is_named() -> None:
    with pytest.raises(DiffsampleError, match="beta"):
        FKCorrectorProposal.annealed(_gauss(0.0, 1.0), 0.0, _sigmas(5), (1,))
    with pytest.raises(ShapeError, match="one exponent per denoiser"):
        FKCorrectorProposal([_gauss(0.0, 1.0)], [1.0, 2.0], _sigmas(5), (1,))
    with pytest.raises(DiffsampleError, match="sigmas"):
        FKCorrectorProposal.annealed(_gauss(0.0, 1.0), 2.0, [1.0, 2.0, 0.0], (1,))
    with pytest.raises(DiffsampleError, match="positive sum"):
        FKCorrectorProposal.geometric_mixture(_gauss(0.0, 1.0), _gauss(1.0, 1.0), 2.0, _sigmas(5), (1,)).__class__(
            [_gauss(0.0, 1.0)], [-1.0], _sigmas(5), (1,)
        )
