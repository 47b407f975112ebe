"""``python -m benchmarks guidance_digits``: budgets are matched on measured NFE (a guided evaluation costs 2, the
weak network of autoguidance included, an evaluation outside the guidance interval 1), and the suite runs end to end.
"""

from __future__ import annotations

import pytest

pytest.importorskip("sklearn")

from benchmarks.__main__ import main  # noqa: E402
from benchmarks.suites.guidance_digits import (  # noqa: E402
    GUIDANCE_INTERVAL,
    METHODS,
    DigitsModels,
    build_cfg,
    karras_levels,
    steps_for_budget,
)
from diffsample import solvers  # noqa: E402
from diffsample.models import load_digits_model  # noqa: E402


@pytest.fixture(scope="module")
def models() -> DigitsModels:
    return DigitsModels(load_digits_model(conditional=True), load_digits_model(conditional=True, variant="weak"))


def interval_cost(levels) -> int:
    """NFE of one dpmpp_2m walk on ``levels`` with interval CFG: 2 at σ in (σ_lo, σ_hi], 1 elsewhere."""
    lo, hi = GUIDANCE_INTERVAL
    return sum(2 if lo < s <= hi else 1 for s in levels[:-1].tolist())


def test_equal_nfe_budgets_count_both_networks_and_the_interval(models):
    levels = lambda n: karras_levels(models.good, n)  # noqa: E731
    evals = solvers.spec("dpmpp_2m").nfe_on
    for budget in (10, 20):
        # unguided: one evaluation a step
        assert steps_for_budget(lambda y: build_cfg(models, 1.0, y), levels, "dpmpp_2m", budget) == (budget, budget)
        # CFG and autoguidance: two a step (the weak model counted like the good one)
        for name in ("cfg", "autoguidance"):
            build = METHODS[name].build
            steps, nfe = steps_for_budget(lambda y, b=build: b(models, 2.0, y), levels, "dpmpp_2m", budget)
            assert (steps, nfe) == (budget // 2, budget) and evals(levels(steps)) == budget // 2
        # interval: 2 inside (σ_lo, σ_hi], 1 outside; the most steps that fit
        build = METHODS["cfg_interval"].build
        steps, nfe = steps_for_budget(lambda y, b=build: b(models, 2.0, y), levels, "dpmpp_2m", budget)
        assert nfe == interval_cost(levels(steps)) <= budget < interval_cost(levels(steps + 1))
        assert budget // 2 < steps < budget


def test_suite_runs_end_to_end(capsys):
    argv = ["guidance_digits", "--samples", "20", "--nfe", "4", "--scales", "2", "--error-seeds", "1"]
    assert main([*argv, "--methods", "autoguidance"]) == 0
    out = capsys.readouterr().out
    assert "autoguidance" in out and "best operating points" in out
    assert main([*argv, "--methods", "nope"]) == 2
