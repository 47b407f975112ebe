"""Every deterministic one-call-per-step solver written as ``nonstationary`` weights runs the same walk.

Known answer: the solver's own walk (``diffsample.sample``) on an exact bed; the weights are read off once, on
coefficient vectors, so agreement to rounding on a real model shows both the linearity and the bookkeeping.
"""

from __future__ import annotations

import pytest
import torch

from diffsample import noise, sample, solvers, steps
from diffsample.errors import DiffsampleError
from diffsample.solvers.nonstationary import coefficient_rows, solver_weights
from diffsample.testbeds import mixture64

SMAX, SMIN = 80.0, 0.002


NOT_PER_LEVEL = {"dpm_fast"}  # one call per step in the registry, but its steps are not the levels given


def one_call_solvers() -> list[str]:
    return [
        name
        for name in solvers.available()
        if not (s := solvers.spec(name)).stochastic
        and not s.adaptive
        and s.evals_per_step == 1
        and s.cost is None
        and name not in NOT_PER_LEVEL
    ]


@pytest.mark.parametrize("levels", ["karras", "trailing"])
def test_weights_of_every_one_call_solver_reproduce_its_walk(levels: str):
    bed = mixture64()
    x = noise.seeded(4).initial((8, *bed.shape), SMAX, dtype=torch.float64)
    sigmas = steps.karras(7, SMIN, SMAX) if levels == "karras" else steps.get("logsnr+trailing")(6, SMIN, SMAX)
    names = one_call_solvers()
    assert {"unipc_3m", "ipndm", "dpm_solver_3m", "deis", "dpmpp_2m", "euler"} <= set(names)
    for name in names:
        w = solver_weights(name, sigmas)
        assert [len(r) for r in w] == [j + 2 for j in range(len(sigmas) - 1)]
        a = sample(bed, x, sigmas, solver=name)
        b = sample(bed, x, sigmas, solver="nonstationary", weights=w)
        assert torch.allclose(a, b, rtol=0, atol=1e-10 * SMAX), name


@pytest.mark.parametrize("name", ["heun", "dpmpp_2s", "ddim", "dpmpp_2m_sde", "dpm_adaptive", "restart"])
def test_solvers_without_such_weights_are_refused_by_name(name: str):
    with pytest.raises(DiffsampleError, match=f"{name!r} has no nonstationary weights"):
        solver_weights(name, steps.karras(5, SMIN, SMAX))


def test_a_walk_that_skips_or_repeats_a_level_is_refused():
    sigmas = [80.0, 5.0, 0.5, 0.0]

    def skips(model, x0):  # one call, not three
        return model(x0, torch.tensor([80.0]))

    def repeats(model, x0):
        d = model(x0, torch.tensor([80.0]))
        return model(d, torch.tensor([80.0]))

    for walk in (skips, repeats):
        with pytest.raises(DiffsampleError, match="once at each level"):
            coefficient_rows(walk, sigmas, "walk")
    with pytest.raises(DiffsampleError, match="dpm_fast: the walk does not call the model once at each level"):
        solver_weights("dpm_fast", steps.karras(5, SMIN, SMAX))
    with pytest.raises(DiffsampleError, match="unknown solver|valid"):
        solver_weights("no_such_solver", sigmas)
