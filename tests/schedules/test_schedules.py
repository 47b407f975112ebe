"""Noise schedules checked against closed forms written out here, identities and autograd."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffsample.errors import DiffsampleError, UnknownNameError
from diffsample.schedules import (
    EDM,
    VE,
    ContinuousVPCosine,
    ContinuousVPLinear,
    DiscreteVP,
    NoiseSchedule,
    RectifiedFlow,
    available_schedules,
    edm_preconditioning,
    get_schedule,
    make_betas,
    rescale_zero_terminal_snr,
    resolution_shift,
)

SCHEDULES = {
    "ddpm_linear": lambda: DiscreteVP(beta_schedule="linear"),
    "sd_scaled_linear": lambda: DiscreteVP(beta_schedule="scaled_linear"),
    "cosine_table": lambda: DiscreteVP(beta_schedule="squaredcos_cap_v2"),
    "zero_snr": lambda: DiscreteVP(beta_schedule="scaled_linear", zero_terminal_snr=True),
    "vp_linear": ContinuousVPLinear,
    "vp_cosine": ContinuousVPCosine,
    "ve": VE,
    "edm": EDM,
    "flow": lambda: RectifiedFlow(shift=3.0),
}
VP = ["ddpm_linear", "sd_scaled_linear", "cosine_table", "zero_snr", "vp_linear", "vp_cosine"]
DISCRETE = ["ddpm_linear", "sd_scaled_linear", "cosine_table", "zero_snr"]


def interior_grid(s: NoiseSchedule, n: int = 1001) -> torch.Tensor:
    """Times strictly inside the sampling span, where every quantity is finite and invertible."""
    lo, hi = float(s.t_of_sigma_space(s.sigma_min)), float(s.t_of_sigma_space(s.sigma_max))
    return torch.linspace(lo, hi, n, dtype=torch.float64)


@pytest.mark.parametrize("key", VP)
def test_vp_alpha_sigma_squares_sum_to_one(key):
    s = SCHEDULES[key]()
    t = torch.linspace(s.t_min, s.t_max, 1001, dtype=torch.float64)
    torch.testing.assert_close(s.alpha(t) ** 2 + s.sigma(t) ** 2, torch.ones_like(t), atol=1e-13, rtol=0)


@pytest.mark.parametrize("key", list(SCHEDULES))
def test_definitions_are_consistent(key):
    s = SCHEDULES[key]()
    t = interior_grid(s)
    a, sg = s.alpha(t), s.sigma(t)
    torch.testing.assert_close(s.sigma_space(t), sg / a, rtol=1e-11, atol=0)
    torch.testing.assert_close(s.log_snr(t), torch.log(a / sg), rtol=0, atol=1e-10)
    assert torch.all(s.sigma_space(t)[1:] > s.sigma_space(t)[:-1])  # σ-space increases with t


@pytest.mark.parametrize("key", list(SCHEDULES))
def test_inverses_round_trip(key):
    s = SCHEDULES[key]()
    t = interior_grid(s)
    tol = 1e-6 if key in DISCRETE else 1e-10
    scale = max(1.0, float(t.abs().max()))
    torch.testing.assert_close(s.t_of_log_snr(s.log_snr(t)), t, rtol=0, atol=tol * scale)
    torch.testing.assert_close(s.t_of_sigma_space(s.sigma_space(t)), t, rtol=0, atol=tol * scale)
    sig = torch.logspace(math.log10(s.sigma_min), math.log10(s.sigma_max), 200, dtype=torch.float64)
    torch.testing.assert_close(s.sigma_space(s.t_of_sigma_space(sig)), sig, rtol=1e-9, atol=0)


@pytest.mark.parametrize("key", list(SCHEDULES))
def test_span_is_finite_positive_and_float_inputs_work(key):
    s = SCHEDULES[key]()
    assert 0 < s.sigma_min < s.sigma_max < math.inf
    assert s.t_min <= float(s.t_of_sigma_space(s.sigma_min)) < float(s.t_of_sigma_space(s.sigma_max)) <= s.t_max
    v = s.alpha(float(s.t_of_sigma_space(1.0)))
    assert isinstance(v, torch.Tensor) and v.dtype == torch.float64 and v.dim() == 0


# ---- DiscreteVP ------------------------------------------------------------------------------


def test_ddpm_linear_alphas_cumprod_is_the_product():
    s = DiscreteVP(beta_schedule="linear")
    betas = [1e-4 + (0.02 - 1e-4) * i / 999 for i in range(1000)]
    for k in (0, 1, 10, 500, 999):
        assert s.alphas_cumprod[k].item() == pytest.approx(math.prod(1 - b for b in betas[: k + 1]), rel=1e-12)
    # diffusers (float32 linspace + cumprod) gives 4.0358e-05 at the last step; both agree with the product
    b32 = np.linspace(1e-4, 0.02, 1000, dtype=np.float32)
    assert s.alphas_cumprod[-1].item() == pytest.approx(float(np.cumprod(1 - b32)[-1]), rel=1e-5)
    assert s.alphas_cumprod[-1].item() == pytest.approx(4.0358e-05, rel=1e-4)
    # integer timesteps read the table: α(t)² = ᾱ_t, σ-space = sqrt((1 − ᾱ)/ᾱ)
    k = torch.arange(1000, dtype=torch.float64)
    torch.testing.assert_close(s.alpha(k) ** 2, s.alphas_cumprod, rtol=1e-12, atol=0)
    torch.testing.assert_close(s.sigma_space(k), ((1 - s.alphas_cumprod) / s.alphas_cumprod).sqrt(), rtol=1e-12, atol=0)
    torch.testing.assert_close(s.sigmas, s.sigma_space(s.timesteps), rtol=1e-12, atol=0)


def test_named_beta_tables_match_their_formulas():
    b = make_betas("scaled_linear", 1000)
    ref = [(math.sqrt(0.00085) + (math.sqrt(0.012) - math.sqrt(0.00085)) * i / 999) ** 2 for i in range(1000)]
    torch.testing.assert_close(b, torch.tensor(ref, dtype=torch.float64), rtol=1e-12, atol=0)
    b = make_betas("linear", 10, beta_start=0.001, beta_end=0.01)
    torch.testing.assert_close(b, torch.tensor([0.001 + 0.001 * i for i in range(10)], dtype=torch.float64))


def test_cosine_table_telescopes_to_the_continuous_cosine():
    """Unclipped cosine betas give ᾱ_k = f((k+1)/N)/f(0) (the product telescopes) = ᾱ_cont((k+1)/N)."""
    n = 1000
    table = DiscreteVP(beta_schedule="squaredcos_cap_v2", num_train_timesteps=n)
    cont = ContinuousVPCosine(T=1.0)
    assert table.betas.max().item() == pytest.approx(0.999)  # the cap is active at the very end
    unclipped = int((table.betas < 0.999).nonzero().max()) + 1
    k = torch.arange(unclipped, dtype=torch.float64)

    def f(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    ref = torch.tensor([f((i + 1) / n) / f(0) for i in range(unclipped)], dtype=torch.float64)
    torch.testing.assert_close(table.alphas_cumprod[:unclipped], ref, rtol=1e-9, atol=1e-15)
    torch.testing.assert_close(cont.alpha((k + 1) / n) ** 2, ref, rtol=1e-9, atol=1e-15)


def test_discrete_interpolates_log_sigma_linearly():
    s = DiscreteVP()
    k = torch.arange(999, dtype=torch.float64)
    for w in (0.25, 0.5):
        mid = s.sigma_space(k + w).log()
        torch.testing.assert_close(mid, (1 - w) * s.log_sigmas[:-1] + w * s.log_sigmas[1:], rtol=1e-12, atol=0)
    assert s.t_of_sigma_space(1e-6).item() == 0.0 and s.t_of_sigma_space(1e6).item() == 999.0  # clamped table


def test_zero_terminal_snr_is_algorithm_1_and_nan_free():
    plain = DiscreteVP(beta_schedule="scaled_linear")
    s = DiscreteVP(beta_schedule="scaled_linear", zero_terminal_snr=True)
    assert s.alphas_cumprod[-1].item() == 0.0 and s.betas[-1].item() == 1.0
    assert s.alphas_cumprod[0].item() == pytest.approx(plain.alphas_cumprod[0].item(), rel=1e-14)
    r, r0, rT = plain.alphas_cumprod.sqrt(), plain.alphas_cumprod[0].sqrt(), plain.alphas_cumprod[-1].sqrt()
    torch.testing.assert_close(s.alphas_cumprod.sqrt(), (r - rT) * r0 / (r0 - rT), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(torch.cumprod(1 - s.betas, 0), s.alphas_cumprod, rtol=1e-10, atol=1e-300)

    t = torch.linspace(0, 999, 9991, dtype=torch.float64)
    for fn in (s.alpha, s.sigma, s.log_snr):
        assert torch.isfinite(fn(t)).all()
    assert s.alpha(999.0).item() == 0.0 and s.sigma(999.0).item() == 1.0
    ss = s.sigma_space(t)
    assert not torch.isnan(ss).any() and torch.isinf(ss[-1]) and torch.isfinite(ss[:-1]).all()
    assert math.isinf(s.sigmas[-1].item()) and s.sigma_max == s.sigmas[-2].item()
    # large σ maps into the last interval, monotonically, inf to exactly N−1
    big = torch.tensor([s.sigma_max, 4096.0, 1e5, 1e6, 1e12, math.inf], dtype=torch.float64)
    tb = s.t_of_sigma_space(big)
    assert torch.isfinite(tb).all() and torch.all(tb[1:] > tb[:-1]) and tb[0] == 998.0 and tb[-1] == 999.0
    # α is linear on the last interval; round trip there
    tt = torch.linspace(998, 998.999, 101, dtype=torch.float64)
    torch.testing.assert_close(s.alpha(tt), s.alpha(998.0) * (999 - tt), rtol=1e-12, atol=0)
    torch.testing.assert_close(s.t_of_sigma_space(s.sigma_space(tt)), tt, rtol=0, atol=1e-6)
    torch.testing.assert_close(s.t_of_log_snr(s.log_snr(tt)), tt, rtol=0, atol=1e-6)


def test_rescale_function_and_table_with_unit_last_beta():
    abar = torch.cumprod(1 - make_betas("linear"), 0)
    z = rescale_zero_terminal_snr(abar)
    assert z[-1].item() == 0.0 and z[0].item() == pytest.approx(abar[0].item(), rel=1e-14)
    betas = 1 - z / torch.cat([torch.ones(1, dtype=torch.float64), z[:-1]])
    s = DiscreteVP(betas)  # a trained table ending in β = 1 is zero-terminal-SNR too
    assert s.zero_terminal and math.isfinite(s.sigma_max)


def test_from_diffusers_config():
    cfg = {
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "num_train_timesteps": 1000,
        "rescale_betas_zero_snr": True,
        "prediction_type": "v_prediction",
    }
    assert DiscreteVP.from_diffusers_config(cfg) == DiscreteVP(beta_schedule="scaled_linear", zero_terminal_snr=True)
    s = DiscreteVP.from_diffusers_config({"trained_betas": [0.1, 0.2, 0.3]})
    torch.testing.assert_close(s.alphas_cumprod, torch.tensor([0.9, 0.72, 0.504], dtype=torch.float64))


def test_bad_betas_are_rejected():
    with pytest.raises(DiffsampleError):
        DiscreteVP([0.1, 1.0, 0.2])
    with pytest.raises(DiffsampleError):
        DiscreteVP([0.1, 0.0, 0.2])
    with pytest.raises(UnknownNameError, match="squaredcos_cap_v2"):
        make_betas("cosine")


# ---- continuous schedules --------------------------------------------------------------------


def test_vp_linear_matches_score_sde_and_its_beta():
    s = ContinuousVPLinear(beta_min=0.1, beta_max=20.0)
    t = torch.linspace(0, 1, 101, dtype=torch.float64, requires_grad=True)
    log_alpha = torch.log(s.alpha(t))
    ref = -0.25 * t**2 * (20.0 - 0.1) - 0.5 * t * 0.1
    torch.testing.assert_close(log_alpha, ref, rtol=1e-12, atol=1e-14)
    # the SDE's β(t) = −d log ᾱ/dt = β_min + t(β_max − β_min), by autograd
    (g,) = torch.autograd.grad((2 * log_alpha).sum(), t)
    torch.testing.assert_close(-g, 0.1 + t.detach() * 19.9, rtol=1e-12, atol=1e-12)


def test_vp_cosine_closed_form():
    s = ContinuousVPCosine(s=0.008)
    t = torch.linspace(0, 0.99, 100, dtype=torch.float64)
    ref = torch.cos((t + 0.008) / 1.008 * math.pi / 2) / math.cos(0.008 / 1.008 * math.pi / 2)
    torch.testing.assert_close(s.alpha(t), ref, rtol=1e-12, atol=0)
    assert s.alpha(0.0).item() == 1.0 and s.sigma_space(0.0).item() == 0.0


def test_ve_is_geometric():
    s = VE(0.01, 50.0)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    torch.testing.assert_close(s.sigma(t), 0.01 * (50.0 / 0.01) ** t, rtol=1e-13, atol=0)
    assert torch.all(s.alpha(t) == 1)
    assert s.t_of_sigma_space(0.01).item() == pytest.approx(0.0, abs=1e-15)
    assert s.t_of_sigma_space(50.0).item() == pytest.approx(1.0, abs=1e-15)


def test_edm_time_is_sigma_and_preconditioning_is_table_1():
    s = EDM()
    sig = torch.tensor([0.002, 0.1, 0.5, 3.0, 80.0], dtype=torch.float64)
    assert torch.equal(s.sigma_space(sig), sig) and torch.equal(s.t_of_sigma_space(sig), sig)
    c_skip, c_out, c_in, c_noise = s.preconditioning(sig)
    sd = 0.5
    torch.testing.assert_close(c_skip, sd**2 / (sig**2 + sd**2))
    torch.testing.assert_close(c_out, sig * sd / (sig**2 + sd**2).sqrt())
    torch.testing.assert_close(c_in, 1 / (sig**2 + sd**2).sqrt())
    torch.testing.assert_close(c_noise, torch.log(sig) / 4)
    # EDM's design: unit-variance network input and training target for data of std σ_d
    torch.testing.assert_close(c_in**2 * (sig**2 + sd**2), torch.ones_like(sig))
    target_var = (sd**2 * (1 - c_skip) ** 2 + c_skip**2 * sig**2) / c_out**2  # Var[(x0 − c_skip x)/c_out]
    torch.testing.assert_close(target_var, torch.ones_like(sig))
    assert edm_preconditioning(1.0, 1.0)[0].item() == 0.5


def test_rectified_flow_and_resolution_shift():
    s = RectifiedFlow()
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    assert torch.equal(s.alpha(t), 1 - t) and torch.equal(s.sigma(t), t)
    ss = s.sigma_space(t)
    assert ss[0] == 0 and torch.isinf(ss[-1]) and not torch.isnan(ss).any()
    torch.testing.assert_close(ss[:-1], t[:-1] / (1 - t[:-1]))
    assert s.t_of_sigma_space(math.inf).item() == 1.0 and s.t_of_sigma_space(0.0).item() == 0.0
    assert torch.isfinite(s.log_snr(t)).all()
    # SD3 shift: closed form, fixed end points, σ-space scaling by `shift`, inverse by 1/shift
    assert resolution_shift(0.5, 3.0).item() == pytest.approx(0.75)
    assert resolution_shift(0.0, 3.0).item() == 0.0 and resolution_shift(1.0, 3.0).item() == 1.0
    u = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    torch.testing.assert_close(s.sigma_space(resolution_shift(u, 3.0)), 3.0 * s.sigma_space(u))
    torch.testing.assert_close(resolution_shift(resolution_shift(u, 3.0), 1 / 3.0), u)
    shifted = RectifiedFlow(shift=3.0)
    torch.testing.assert_close(shifted.sampling_time(u), resolution_shift(u, 3.0))
    assert torch.equal(shifted.alpha(u), 1 - u)  # shift changes the sampled times, not the network's α, σ
    assert shifted.sigma_max == pytest.approx(3.0 * 0.999 / 0.001) and math.isfinite(shifted.sigma_max)


# ---- registry and configs --------------------------------------------------------------------


@pytest.mark.parametrize("name", available_schedules())
def test_config_round_trip(name):
    s = get_schedule(name)
    cfg = s.to_config()
    import json

    back = NoiseSchedule.from_config(json.loads(json.dumps(cfg)))
    assert type(back) is type(s) and back == s and back.to_config() == cfg
    t = interior_grid(s, 101)
    torch.testing.assert_close(back.sigma_space(t), s.sigma_space(t), rtol=0, atol=0)


def test_config_round_trip_keeps_parameters():
    for s in (
        DiscreteVP([0.01, 0.02, 0.05, 0.1], zero_terminal_snr=True),
        RectifiedFlow(shift=3.0, eps=0.01),
        DiscreteVP(beta_schedule="linear", beta_start=0.001, beta_end=0.03, num_train_timesteps=50),
        ContinuousVPLinear(beta_min=0.2, beta_max=10.0),
        EDM(sigma_data=1.0),
    ):
        back = NoiseSchedule.from_config(s.to_config())
        assert back == s
        torch.testing.assert_close(back.alpha(back.t_of_sigma_space(1.0)), s.alpha(s.t_of_sigma_space(1.0)))


def test_unknown_schedule_lists_valid_names():
    with pytest.raises(UnknownNameError) as info:
        get_schedule("karras_vp")
    msg = str(info.value)
    assert "karras_vp" in msg and all(n in msg for n in ("discrete_vp", "edm", "rectified_flow", "ve"))
    assert info.value.valid == available_schedules()
