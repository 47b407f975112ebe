"""The k-diffusion-style API: every registered solver as ``sample_<name>(model, x, sigmas, extra_args, callback,
disable, **options)``.

Checked two ways: bit-identical to :func:`diffsample.sample` on the same inputs (the wrapper adds
nothing to the maths), and against k-diffusion's own samplers run on the same k-diffusion model wrapper
(``external.DiscreteEpsDDPMDenoiser`` around a tiny class-conditional UNet), which is the calling
convention ComfyUI and k-diffusion users rely on.
"""

from __future__ import annotations

import importlib
import inspect
import math

import pytest
import torch

import diffsample
from diffsample import noise as noise_module
from diffsample import solvers, steps
from diffsample.integrations import kdiffusion_api
from diffsample.integrations.kdiffusion_api import KSAMPLER_NAMES, ksampler, noise_from_sampler
from diffsample.solvers.registry import SolverSpec


def gaussian_model(x: torch.Tensor, sigma: torch.Tensor, mean: float = 0.0, std: float = 0.7) -> torch.Tensor:
    """Exact denoiser of N(mean, std²) data, k-diffusion style: model(x, sigma, **extra_args) -> denoised."""
    w = (std**2 / (std**2 + sigma**2)).reshape(-1, *([1] * (x.dim() - 1)))
    return mean + w * (x - mean)


def test_names_and_signatures():
    assert KSAMPLER_NAMES and set(KSAMPLER_NAMES) <= set(solvers.available())
    for name in KSAMPLER_NAMES:
        fn = getattr(kdiffusion_api, f"sample_{name}")
        assert fn is ksampler(name) and fn.__name__ == f"sample_{name}"
        params = list(inspect.signature(fn).parameters)
        assert params[:6] == ["model", "x", "sigmas", "extra_args", "callback", "disable"]
    with pytest.raises(AttributeError):
        kdiffusion_api.sample_no_such_solver  # noqa: B018
    with pytest.raises(diffsample.UnknownNameError):
        ksampler("no_such_solver")


@pytest.mark.parametrize("name", KSAMPLER_NAMES)
def test_bit_identical_to_sample(name):
    x = 8.0 * torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(0))
    sigmas = steps.karras(12, 0.02, 8.0)
    extra = {"mean": 0.3, "std": 0.5}
    spec = solvers.spec(name)
    kwargs = {"seed": 7} if spec.stochastic else {}
    ref_noise = noise_module.seeded(7) if spec.stochastic else None
    want = diffsample.sample(lambda xs, s: gaussian_model(xs, s, **extra), x, sigmas, solver=name, noise=ref_noise)
    seen: list[dict] = []
    got = ksampler(name)(gaussian_model, x, sigmas, extra_args=extra, callback=seen.append, disable=True, **kwargs)
    assert torch.equal(got, want) and got.dtype == x.dtype
    assert seen and {"i", "x", "sigma", "sigma_hat", "denoised"} <= set(seen[0])
    steps_seen = [info["i"] for info in seen]
    assert steps_seen[0] == 0 and steps_seen == sorted(steps_seen)


def test_dtype_of_x_is_kept():
    x = torch.randn(2, 3, dtype=torch.float64)
    sigmas = steps.karras(5, 0.1, 5.0)
    out = kdiffusion_api.sample_dpmpp_2m(gaussian_model, 5.0 * x, sigmas)
    assert out.dtype == torch.float64
    half = kdiffusion_api.sample_euler(gaussian_model, (5.0 * x).half(), sigmas)
    assert half.dtype == torch.float16


def test_progress_bar(capsys):
    pytest.importorskip("tqdm")
    sigmas = steps.karras(6, 0.1, 5.0)
    x = torch.randn(1, 4)
    kdiffusion_api.sample_heun(gaussian_model, x, sigmas, disable=False)
    assert "6/6" in capsys.readouterr().err
    kdiffusion_api.sample_heun(gaussian_model, x, sigmas, disable=True)
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------------------ k-diffusion as the peer


@pytest.fixture(scope="module")
def k_model(k_sampling):
    """k-diffusion's DDPM ε-model wrapper around a tiny class-conditional diffusers UNet."""
    diffusers = pytest.importorskip("diffusers")
    external = importlib.import_module(k_sampling.__name__.rsplit(".", 1)[0] + ".external")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        num_class_embeds=3,
    ).eval()

    def inner(x, t, **kwargs):
        return unet(x, t, **kwargs).sample

    abar = diffusers.DDPMScheduler().alphas_cumprod
    return external.DiscreteEpsDDPMDenoiser(inner, abar, quantize=False)


PEERS = {
    "euler": ("sample_euler", {}),
    "heun": ("sample_heun", {}),
    "dpm_solver_2s": ("sample_dpm_2", {}),
    "dpmpp_2s": ("sample_dpmpp_2s_ancestral", {"eta": 0.0}),
    "dpmpp_2m": ("sample_dpmpp_2m", {}),
    "lms": ("sample_lms", {}),
}


@pytest.mark.parametrize("name", sorted(PEERS))
def test_matches_k_diffusion_under_its_calling_convention(k_sampling, k_model, name):
    k_name, k_options = PEERS[name]
    sigmas = steps.karras(8, float(k_model.sigma_min), float(k_model.sigma_max)).float()
    x = sigmas[0] * torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    extra = {"class_labels": torch.tensor([0, 2])}
    ours_seen: list[dict] = []
    theirs_seen: list[dict] = []
    with torch.no_grad():
        ours = ksampler(name)(k_model, x, sigmas, extra_args=extra, callback=ours_seen.append, disable=True)
        theirs = getattr(k_sampling, k_name)(
            k_model, x, sigmas, extra_args=extra, callback=theirs_seen.append, disable=True, **k_options
        )
        unconditional = ksampler(name)(k_model, x, sigmas, extra_args={"class_labels": torch.tensor([1, 1])})
    scale = float(theirs.abs().max())
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5 * scale)
    assert not torch.allclose(ours, unconditional, atol=1e-3 * scale)  # extra_args reached the model
    assert len(ours_seen) == len(theirs_seen) == len(sigmas) - 1
    for a, b in zip(ours_seen, theirs_seen, strict=True):
        assert a["i"] == b["i"] and math.isclose(a["sigma"], float(b["sigma"]), rel_tol=1e-6)
        torch.testing.assert_close(a["denoised"], b["denoised"], rtol=1e-4, atol=1e-5 * scale)


# ------------------------------------------------------------------------------------------ noise


def _euler_ancestral(denoiser, x, sigmas, *, noise=None, callback=None):
    """Euler-ancestral (η = 1), the stochastic solver used here to test the noise plumbing."""
    s = [float(v) for v in sigmas]
    for i in range(len(s) - 1):
        denoised = denoiser(x, torch.full((x.shape[0],), s[i], dtype=x.dtype))
        if callback is not None:
            callback({"i": i, "x": x, "sigma": s[i], "sigma_hat": s[i], "denoised": denoised})
        up = min(s[i + 1], math.sqrt(max(s[i + 1] ** 2 * (s[i] ** 2 - s[i + 1] ** 2) / s[i] ** 2, 0.0)))
        down = math.sqrt(s[i + 1] ** 2 - up**2)
        x = denoised + (x - denoised) * (down / s[i])
        if s[i + 1] > 0:
            x = x + noise(x, s[i], s[i + 1]) * up
    return x


@pytest.fixture
def ancestral(monkeypatch):
    from diffsample.solvers import registry

    spec = SolverSpec("test_euler_ancestral", _euler_ancestral, order=1, stochastic=True)
    monkeypatch.setitem(registry._REGISTRY, spec.name, spec)
    return spec.name


def seeded_sampler(x: torch.Tensor, seed: int):
    gen = torch.Generator().manual_seed(seed)
    return lambda sigma, sigma_next: torch.randn(x.shape, generator=gen)


def test_noise_sources_reach_stochastic_solvers(k_sampling, ancestral):
    fn = getattr(kdiffusion_api, f"sample_{ancestral}")  # registered after import: module __getattr__
    x = 5.0 * torch.randn(2, 6, generator=torch.Generator().manual_seed(2))
    sigmas = steps.karras(7, 0.05, 5.0).float()
    # k-diffusion's own Euler-ancestral with the same noise_sampler draws: the noise_sampler convention
    ours = fn(gaussian_model, x, sigmas, noise_sampler=seeded_sampler(x, 3))
    theirs = k_sampling.sample_euler_ancestral(
        gaussian_model, x, sigmas, disable=True, noise_sampler=seeded_sampler(x, 3)
    )
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ours, fn(gaussian_model, x, sigmas, noise_sampler=seeded_sampler(x, 4)))
    # seed= is diffsample.noise.seeded; noise= passes through
    by_seed = fn(gaussian_model, x, sigmas, seed=11)
    assert torch.equal(
        by_seed, diffsample.sample(gaussian_model, x, sigmas, solver=ancestral, noise=noise_module.seeded(11))
    )
    assert torch.equal(by_seed, fn(gaussian_model, x, sigmas, noise=noise_module.seeded(11)))
    with pytest.raises(TypeError, match="at most one"):
        fn(gaussian_model, x, sigmas, seed=1, noise_sampler=seeded_sampler(x, 1))


def test_noise_from_sampler_passes_levels():
    calls: list[tuple] = []

    def sampler(sigma, sigma_next):
        calls.append((sigma, sigma_next))
        return torch.ones(2, 3)

    out = noise_from_sampler(sampler)(torch.zeros(2, 3, dtype=torch.float64), 2.0, 1.0)
    assert calls == [(2.0, 1.0)] and out.dtype == torch.float64 and bool((out == 1).all())


# ----------------------------------------------------------------------------- generate on a k-diffusion wrapper


def test_generate_reads_the_span_of_a_k_diffusion_discrete_wrapper_and_takes_the_short_span_rows(k_sampling):
    """A Stable Diffusion-table ε network behind k-diffusion's own ``DiscreteEpsDDPMDenoiser`` (what ComfyUI and
    k-diffusion users hand a sampler): ``generate`` needs no span (the wrapper's ``sigma_min``/``sigma_max``), walks
    the short-span row there (it has no noise schedule, so it is of the ``edm`` family), and lands where it lands
    for the same network as this library's own model (k-diffusion's timestep interpolation differs only by
    rounding)."""
    from diffsample.generate import SHORT_SPAN_TABLES, configure
    from diffsample.model_family import model_family, model_span
    from diffsample.models import load_digits_model

    external = importlib.import_module(k_sampling.__name__.rsplit(".", 1)[0] + ".external")
    model = load_digits_model(False, variant="sd")
    table = model.noise_schedule
    abar = torch.as_tensor(table.alphas_cumprod, dtype=torch.float32)
    wrapped = external.DiscreteEpsDDPMDenoiser(lambda x, t, **kw: model.network(x, t, **kw), abar, quantize=False)
    lo, hi = float(wrapped.sigma_min), float(wrapped.sigma_max)
    assert model_family(wrapped) == "edm" and model_span(wrapped) == (lo, hi)
    assert math.isclose(hi, float(table.sigma_max), rel_tol=1e-5) and hi < 40  # Stable Diffusion's 14.6
    for nfe in (6, 10):
        walk = configure(nfe, lo, hi, model=wrapped)
        row = next(c for limit, c in SHORT_SPAN_TABLES["edm"] if nfe <= limit)
        assert (walk.solver, walk.step_schedule) == (row.solver, row.step_schedule)
        x = diffsample.noise.seeded(5).initial((4, 1, 8, 8), hi)
        with torch.no_grad():
            theirs = diffsample.generate(wrapped, x, nfe=nfe)
            ours = diffsample.generate(model, x, nfe=nfe, sigma_min=lo, sigma_max=hi)
        torch.testing.assert_close(theirs, ours, rtol=1e-3, atol=1e-3)
