"""Walks that end the trailing way (``"<schedule>+trailing"``): no model call at σ_min, the last step straight to 0.

Known answers: the levels are the first ``n`` of the schedule's ``n + 1`` followed by 0; on a DDPM table uniform
time steps ending this way are diffusers' ``"trailing"`` timesteps (Lin et al. 2024, Table 2) up to rounding; and a
walk on them makes ``n`` calls, none at σ_min, its last step (Euler or DDIM to σ = 0) returning the denoiser's
output at the last level exactly.
"""

from __future__ import annotations

import pytest
import torch

from diffsample import sample, steps
from diffsample.errors import UnknownNameError
from diffsample.schedules import DiscreteVP, RectifiedFlow


@pytest.mark.parametrize("name", ["logsnr", "karras", "kl_optimal"])
@pytest.mark.parametrize("n", [1, 4, 9])
def test_trailing_levels_are_the_first_n_of_n_plus_one_then_zero(name, n):
    full = steps.get(name)(n + 1, 0.002, 80.0)
    trailing = steps.get(f"{name}+trailing")(n, 0.002, 80.0)
    assert trailing.shape == (n + 1,)
    torch.testing.assert_close(trailing[:n], full[:n], rtol=0, atol=0)
    assert float(trailing[-1]) == 0.0 and float(trailing[-2]) > 0.002
    assert torch.equal(steps.get(name)(n, 0.002, 80.0, trailing=True), trailing)
    assert torch.equal(steps.get(f"{name}+trailing")(n, 0.002, 80.0, append_zero=False), trailing[:n])


def test_uniform_time_trailing_on_a_ddpm_table_is_diffusers_trailing_spacing_up_to_rounding():
    table = DiscreteVP()
    for n in (4, 5, 10, 25):
        _, timesteps = steps.time_uniform(n + 1, table, return_timesteps=True)
        ours = steps.get("time_uniform+trailing")(n, noise_schedule=table)
        torch.testing.assert_close(ours[:n], steps.time_uniform(n + 1, table)[:n], rtol=0, atol=0)
        _, diffusers_ts = steps.time_uniform(n, table, spacing="trailing", return_timesteps=True)
        assert (timesteps[:n] - diffusers_ts).abs().max() <= 1  # round(999 (n − i)/n) against round(1000 (n − i)/n) − 1


def test_uniform_time_trailing_on_a_flow_model_starts_at_its_sigma_max_and_skips_sigma_min():
    flow = RectifiedFlow()
    s = steps.get("time_uniform+trailing")(5, noise_schedule=flow)
    t = s[:-1] / (1 + s[:-1])  # σ = t/(1 − t)
    assert float(s[0]) == pytest.approx(flow.sigma_max)
    # diffusers' flow sigmas for 5 steps: t = 0.999 (1 − i/5) up to the difference of the end time 0.001
    torch.testing.assert_close(t, 0.999 - torch.arange(5, dtype=torch.float64) * 0.998 / 5, rtol=0, atol=1e-9)


def test_a_trailing_walk_never_calls_at_sigma_min_and_its_last_euler_step_returns_the_denoiser_output():
    calls: list[float] = []

    def den(x, sigma):
        level = float(torch.as_tensor(sigma).reshape(-1)[0])
        calls.append(level)
        return 0.5 * x / (1 + level**2) ** 0.5

    sig = steps.get("karras+trailing")(6, 0.002, 80.0)
    x = 80.0 * torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = sample(den, x, sig, solver="euler")
    assert len(calls) == 6 and min(calls) == pytest.approx(float(sig[-2])) and min(calls) > 0.002
    last = sample(den, x, sig[:-1], solver="euler")  # the walk stopped at the last level
    level = float(sig[-2])
    torch.testing.assert_close(out, 0.5 * last / (1 + level**2) ** 0.5)
    assert len(calls) == 6 + 5


def test_unknown_names_with_the_suffix_list_the_valid_ones_and_the_suffix():
    with pytest.raises(UnknownNameError, match=r"karras.*'<name>\+trailing'"):
        steps.get("nonsense+trailing")
