"""ModelDenoiser checked against the exact posterior mean of a Gaussian, in every parameterisation.

Data ``x0 ~ N(μ, diag s²)``; in σ-space the exact denoiser is ``E[x0 | x] = μ + s²/(s² + σ²)(x − μ)``.
Each toy "network" receives the native ``(x_t, t_in)`` the wrapper builds, recovers ``(x, σ)`` from
the schedule's closed form written out *here* (not the library's), and returns the exact ε / x0 / v /
flow / score / EDM-F target. The wrapper must then give back the exact σ-space x̂0.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from diffsample.errors import ShapeError, UnknownNameError
from diffsample.parameterization import EDMNetwork, ModelDenoiser, VPTableNetwork, x0_coefficients
from diffsample.schedules import EDM, VE, ContinuousVPCosine, ContinuousVPLinear, DiscreteVP, RectifiedFlow

MU = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
S2 = torch.tensor([0.25, 1.0, 4.0], dtype=torch.float64)


def exact_x0(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    s2 = sigma.reshape(-1, 1) ** 2
    return MU + S2 / (S2 + s2) * (x - MU)


def _ddpm_alpha_sigma(t: torch.Tensor, beta_schedule: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Independent table: ᾱ = cumprod(1 − β) in numpy, log σ-space interpolated linearly in t."""
    if beta_schedule == "linear":
        betas = np.linspace(1e-4, 0.02, 1000)
    else:
        f = [math.cos((i / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2 for i in range(1001)]
        betas = np.minimum([1 - f[i + 1] / f[i] for i in range(1000)], 0.999)
    abar = np.cumprod(1 - betas)
    log_s = np.interp(t.numpy(), np.arange(1000), 0.5 * np.log((1 - abar) / abar))
    alpha = 1 / np.sqrt(1 + np.exp(2 * log_s))
    return torch.from_numpy(alpha), torch.from_numpy(alpha * np.exp(log_s))


# kind -> (schedule factory, time_scale, native α(t), σ(t) written out independently)
CASES = {
    "ddpm_linear": (lambda: DiscreteVP(beta_schedule="linear"), 1.0, lambda t: _ddpm_alpha_sigma(t, "linear")),
    "ddpm_cosine": (
        lambda: DiscreteVP(beta_schedule="squaredcos_cap_v2"),
        1.0,
        lambda t: _ddpm_alpha_sigma(t, "squaredcos_cap_v2"),
    ),
    "vp_linear_x999": (
        ContinuousVPLinear,
        999.0,
        lambda t: (torch.exp(-0.25 * t**2 * 19.9 - 0.05 * t), torch.sqrt(1 - torch.exp(-0.5 * t**2 * 19.9 - 0.1 * t))),
    ),
    "vp_cosine": (
        ContinuousVPCosine,
        1.0,
        lambda t: (
            torch.cos((t + 0.008) / 1.008 * math.pi / 2) / math.cos(0.008 / 1.008 * math.pi / 2),
            torch.sqrt(1 - (torch.cos((t + 0.008) / 1.008 * math.pi / 2) / math.cos(0.008 / 1.008 * math.pi / 2)) ** 2),
        ),
    ),
    "ve": (VE, 1.0, lambda t: (torch.ones_like(t), 0.01 * 5000.0**t)),
    "edm": (EDM, 1.0, lambda t: (torch.ones_like(t), t.clone())),
    "flow_shift3": (lambda: RectifiedFlow(shift=3.0), 1.0, lambda t: (1 - t, t.clone())),
}
PREDS = ["eps", "x0", "v", "flow", "score"]


def targets(x_t: torch.Tensor, alpha: torch.Tensor, sig: torch.Tensor, prediction: str) -> torch.Tensor:
    """The exact network output at native (x_t, α, σ_t) for the Gaussian data."""
    a, s = alpha.reshape(-1, 1), sig.reshape(-1, 1)
    x0 = exact_x0(x_t / a, sig / alpha)
    eps = (x_t - a * x0) / s
    return {"eps": eps, "x0": x0, "v": a * eps - s * x0, "flow": eps - x0, "score": -eps / s}[prediction]


def toy_network(alpha_sigma, time_scale: float, prediction: str, log: list | None = None):
    def net(x_t: torch.Tensor, t_in: torch.Tensor, **kwargs) -> torch.Tensor:
        if log is not None:
            log.append((t_in.clone(), kwargs))
        alpha, sig = alpha_sigma(t_in.to(torch.float64) / time_scale)
        return targets(x_t.to(torch.float64), alpha, sig, prediction).to(x_t.dtype)

    return net


def batch_in_span(sched, n: int = 9, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    sigma = torch.logspace(math.log10(sched.sigma_min), math.log10(sched.sigma_max), n, dtype=torch.float64)
    z = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return MU + (S2 + sigma.reshape(-1, 1) ** 2).sqrt() * z, sigma


@pytest.mark.parametrize("prediction", PREDS)
@pytest.mark.parametrize("kind", list(CASES))
def test_recovers_exact_posterior_mean(kind, prediction):
    make, scale, alpha_sigma = CASES[kind]
    sched = make()
    den = ModelDenoiser(toy_network(alpha_sigma, scale, prediction), sched, prediction, time_scale=scale)
    x, sigma = batch_in_span(sched)
    out = den(x, sigma)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, exact_x0(x, sigma), rtol=1e-6, atol=1e-6)


def edm_network(sigma_data: float = 0.5):
    """F for EDM preconditioning (Karras et al. 2022, Table 1), written out from its definition."""

    def net(z: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        sigma = torch.exp(4 * c_noise.to(torch.float64))
        total = (sigma**2 + sigma_data**2).reshape(-1, 1)
        x = z * total.sqrt()
        c_skip, c_out = sigma_data**2 / total, sigma.reshape(-1, 1) * sigma_data / total.sqrt()
        return (exact_x0(x, sigma) - c_skip * x) / c_out

    return net


@pytest.mark.parametrize("sched", [EDM(), EDM(sigma_data=1.3), VE()], ids=["edm", "edm_sd1.3", "ve"])
def test_edm_preconditioned_network(sched):
    sd = getattr(sched, "sigma_data", 0.5)
    den = ModelDenoiser(edm_network(sd), sched, "edm")
    x, sigma = batch_in_span(sched)
    torch.testing.assert_close(den(x, sigma), exact_x0(x, sigma), rtol=1e-9, atol=1e-9)
    with pytest.raises(AssertionError):  # the wrong σ_data must be noticed
        torch.testing.assert_close(
            ModelDenoiser(edm_network(sd), sched, "edm", sigma_data=sd * 2)(x, sigma),
            exact_x0(x, sigma),
            rtol=1e-6,
            atol=1e-6,
        )


def test_zero_terminal_snr_v_prediction_beyond_sigma_max():
    """Zero-SNR tables are used with v-prediction; σ beyond the last finite entry lands in (N−2, N−1].

    The toy net reads α, σ from the schedule here (its last-interval α is verified in test_schedules).
    """
    sched = DiscreteVP(beta_schedule="scaled_linear", zero_terminal_snr=True)
    log: list = []
    net = toy_network(lambda t: (sched.alpha(t), sched.sigma(t)), 1.0, "v", log)
    den = ModelDenoiser(net, sched, "v")
    sigma = torch.tensor([1.0, sched.sigma_max, 4096.0, 1e5], dtype=torch.float64)
    x = MU + (S2 + sigma.reshape(-1, 1) ** 2).sqrt() * torch.randn(4, 3, dtype=torch.float64)
    out = den(x, sigma)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, exact_x0(x, sigma), rtol=1e-6, atol=1e-6)
    t_in = log[0][0]
    assert torch.all(t_in[1:] >= 998) and torch.all(t_in <= 999)


def test_time_inputs_sigma_and_log_snr():
    """A net that takes the σ-space level (k-diffusion style) or λ recovers α from VP identities."""

    def net_sigma(x_t, s):
        alpha = (1 + s**2).rsqrt()
        return targets(x_t, alpha, alpha * s, "eps")

    def net_lambda(x_t, lam):
        alpha = torch.sigmoid(2 * lam).sqrt()  # λ = log(α/σ), α² + σ² = 1
        return targets(x_t, alpha, torch.sigmoid(-2 * lam).sqrt(), "eps")

    for sched in (DiscreteVP(), ContinuousVPCosine()):
        x, sigma = batch_in_span(sched)
        for net, ti in ((net_sigma, "sigma"), (net_lambda, "log_snr")):
            out = ModelDenoiser(net, sched, "epsilon", time_input=ti)(x, sigma)
            torch.testing.assert_close(out, exact_x0(x, sigma), rtol=1e-6, atol=1e-6)


def test_quantize_rounds_the_time_label_only():
    sched = DiscreteVP()
    log: list = []
    den = ModelDenoiser(toy_network(lambda t: _ddpm_alpha_sigma(t, "linear"), 1.0, "eps", log), sched, quantize=True)
    k = torch.tensor([0, 17, 500, 998], dtype=torch.float64)
    sigma = torch.cat([sched.sigmas[k.long()], sched.sigma_space(k + 0.3), sched.sigma_space(k + 0.7)])
    den(torch.zeros(12, 3, dtype=torch.float64), sigma)
    t_in = log[0][0]
    assert torch.equal(t_in, torch.cat([k, k, k + 1]))


def test_sigma_outside_the_domain_is_clamped():
    sched = VE(0.01, 50.0)
    log: list = []
    den = ModelDenoiser(toy_network(CASES["ve"][2], 1.0, "x0", log), sched, "x0")
    den(torch.zeros(3, 3, dtype=torch.float64), torch.tensor([1e-4, 1.0, 500.0], dtype=torch.float64))
    t_in = log[0][0]
    assert t_in[0].item() == 0.0 and t_in[2].item() == 1.0 and 0 < t_in[1].item() < 1
    # EDM's domain is unbounded: σ above its sampling span is still exact
    den = ModelDenoiser(toy_network(CASES["edm"][2], 1.0, "eps"), EDM(), "eps")
    x, sigma = torch.randn(2, 3, dtype=torch.float64) * 300, torch.tensor([200.0, 300.0], dtype=torch.float64)
    torch.testing.assert_close(den(x, sigma), exact_x0(x, sigma), rtol=1e-9, atol=1e-9)


def test_sigma_zero_returns_x():
    calls: list = []
    sched = RectifiedFlow()
    den = ModelDenoiser(toy_network(CASES["flow_shift3"][2], 1.0, "flow", calls), sched, "flow")
    x = torch.randn(3, 3, dtype=torch.float64)
    sigma = torch.tensor([0.0, 0.5, 0.0], dtype=torch.float64)
    out = den(x, sigma)
    assert torch.equal(out[0], x[0]) and torch.equal(out[2], x[2])
    torch.testing.assert_close(out[1], exact_x0(x[1:2], sigma[1:2])[0])
    assert len(calls) == 1
    assert torch.equal(den(x, 0.0), x) and len(calls) == 1  # all clean: no network call
    assert den.nfe == 2


class HalfNet(torch.nn.Module):
    """An eps network whose weights are in half precision; it checks the dtypes it is fed."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones((), dtype=dtype))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert x_t.dtype == self.w.dtype and t.dtype == self.w.dtype
        alpha, sig = CASES["vp_linear_x999"][2](t.to(torch.float64) / 999)
        return (self.w * targets(x_t.to(torch.float64), alpha, sig, "eps").to(self.w.dtype)).to(self.w.dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_networks(dtype):
    sched = ContinuousVPLinear()
    x64, sigma = batch_in_span(sched)
    x = x64.to(torch.float32)
    exact = exact_x0(x.to(torch.float64), sigma)
    out = ModelDenoiser(HalfNet(dtype), sched, "eps", time_scale=999.0)(x, sigma.to(torch.float32))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    ref32 = ModelDenoiser(HalfNet(torch.float32), sched, "eps", time_scale=999.0)(x, sigma)
    torch.testing.assert_close(ref32.to(torch.float64), exact, rtol=1e-4, atol=1e-4)
    # the half net's error is its own rounding of ε (and of t) scaled by σ; conversion adds none
    tol = (4e-2 if dtype == torch.bfloat16 else 5e-3) * (1 + sigma.reshape(-1, 1))
    assert torch.all((out.to(torch.float64) - exact).abs() <= tol)
    # float32 time embedding keeps t exact in bf16 networks
    seen: list = []

    def net(x_t, t):
        seen.append((x_t.dtype, t.dtype, t))
        return torch.zeros_like(x_t)

    ModelDenoiser(net, sched, "x0", dtype=dtype, time_dtype=torch.float32, time_scale=999.0)(x, sigma)
    assert seen[0][:2] == (dtype, torch.float32)
    torch.testing.assert_close(seen[0][2], (999 * sched.t_of_sigma_space(sigma)).float())


def test_kwargs_pass_through_and_nfe_counts():
    log: list = []

    def net(x_t, t, *, cond, scale=1.0):
        log.append((cond, scale))
        alpha, sig = CASES["ve"][2](t)
        return targets(x_t, alpha, sig, "x0") + cond * scale

    den = ModelDenoiser(net, "ve", "sample")
    x, sigma = batch_in_span(den.noise_schedule, 4)
    cond = torch.full((4, 3), 0.5, dtype=torch.float64)
    out = den(x, sigma, cond=cond, scale=2.0)
    torch.testing.assert_close(out, exact_x0(x, sigma) + 1.0)
    assert log[0][0] is cond and log[0][1] == 2.0
    for i in range(3):
        assert den.nfe == i + 1 and den.calls == i + 1
        den(x, sigma, cond=cond)


def test_network_output_forms_and_errors():
    sched = EDM()
    x, sigma = batch_in_span(sched, 2)
    plain = toy_network(CASES["edm"][2], 1.0, "x0")
    for wrap in (lambda o: SimpleNamespace(sample=o), lambda o: (o,)):
        den = ModelDenoiser(lambda x_t, t, w=wrap: w(plain(x_t, t)), sched, "x0")
        torch.testing.assert_close(den(x, sigma), exact_x0(x, sigma))
    with pytest.raises(ShapeError, match="variance"):
        ModelDenoiser(lambda x_t, t: torch.cat([x_t, x_t], 1), sched, "x0")(x, sigma)
    with pytest.raises(UnknownNameError) as info:
        ModelDenoiser(plain, sched, "mu")
    assert "parameterisation" in str(info.value) and "v_prediction" in str(info.value)
    with pytest.raises(UnknownNameError, match="log_snr"):
        ModelDenoiser(plain, sched, "x0", time_input="t")


def test_coefficients_are_linear_inverses_of_the_targets():
    """x̂0 = a·x + b·out inverts each parameterisation for arbitrary (x0, ε), α, σ_t (not only VP)."""
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64)
    alpha = torch.tensor([1.0, 0.9, 0.5, 0.1, 2.0], dtype=torch.float64)
    sig = torch.tensor([0.01, 0.3, 1.0, 3.0, 0.7], dtype=torch.float64)
    a_, s_ = alpha.reshape(-1, 1), sig.reshape(-1, 1)
    x_t = a_ * x0 + s_ * eps
    outs = {"eps": eps, "x0": x0, "v": a_ * eps - s_ * x0, "flow": eps - x0, "score": -eps / s_}
    for p, out in outs.items():
        a, b = x0_coefficients(p, alpha, sig)
        torch.testing.assert_close(a.reshape(-1, 1) * (x_t / a_) + b.reshape(-1, 1) * out, x0)


# ------------------------------------------------------------------ the inverse: denoiser -> network


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_vp_table_network_is_the_inverse_of_model_denoiser(prediction):
    """ModelDenoiser(VPTableNetwork(D)) == D on the exact ring2d bed, at integer and fractional timesteps."""
    from diffsample.testbeds import ring2d

    bed = ring2d()
    table = DiscreteVP(beta_schedule="linear")
    abar = table.alpha(torch.arange(1000, dtype=torch.float64)) ** 2
    network = VPTableNetwork(bed, abar, prediction, dtype=torch.float64)
    again = ModelDenoiser(network, table, prediction)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    sigma = torch.tensor([0.02, 0.3, 1.0, 4.0, 20.0, 100.0], dtype=torch.float64)
    assert torch.allclose(again(x, sigma), bed.denoise(x, sigma), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("sigma_data", [0.5, 1.0])
def test_edm_network_is_the_inverse_of_model_denoiser(sigma_data):
    from diffsample.testbeds import ring2d

    bed = ring2d()
    again = ModelDenoiser(EDMNetwork(bed, sigma_data, dtype=torch.float64), EDM(), "edm", sigma_data=sigma_data)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3
    sigma = torch.tensor([0.002, 0.1, 1.0, 10.0, 80.0], dtype=torch.float64)
    assert torch.allclose(again(x, sigma), bed.denoise(x, sigma), rtol=1e-10, atol=1e-10)


def test_inverse_networks_refuse_other_predictions():
    with pytest.raises(ValueError, match="VP-table"):
        VPTableNetwork(lambda x, s: x, torch.full((10,), 0.5), "flow")
    with pytest.raises(ValueError, match="EDM network"):
        EDMNetwork(lambda x, s: x, prediction="x0")
