"""DiffsampleScheduler as a drop-in diffusers scheduler.

Part 1 adapts the checks of diffusers' ``SchedulerCommonTest`` (its test suite is not installed; each
check is written here): save/load round trip, step shapes, ``return_dict`` equivalence, ``add_noise``
dtypes, timestep dtypes and devices, steps with and without a generator, compatibles, custom
timesteps/sigmas, pickling and deep copies. They run on a DDPM-table config and a flow-matching config.

Part 2 is one regression test per defect of issue #11 ("diffusers drop-in"), each compared with
diffusers' own schedulers on the same inputs where diffusers implements the same thing: a missing
generator, other schedulers' config keys, flow matching, the exposed tables, and the pipeline matrix
of ``tests/integrations/diffusers_matrix.py``. All networks are tiny, random and built locally.
"""

from __future__ import annotations

import copy
import math
import pickle

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

import diffusers_matrix as matrix  # noqa: E402

import diffsample  # noqa: E402
from diffsample import solvers  # noqa: E402
from diffsample.errors import DiffsampleError  # noqa: E402
from diffsample.integrations import DiffsampleScheduler, GeneratorNoise, load_diffusers_denoiser  # noqa: E402
from diffsample.integrations.diffusers_scheduler import FLOW_PURE_NOISE_SIGMA  # noqa: E402

STEPS = 6
STOCHASTIC = [n for n in solvers.available() if solvers.spec(n).stochastic and not solvers.spec(n).adaptive]
NEEDS_OPTIONS = {"plan", "dc_solver", "dpm_solver_v3"}  # they need a plan or model statistics
DETERMINISTIC = [
    n
    for n in solvers.available()
    if not solvers.spec(n).stochastic and not solvers.spec(n).adaptive and n not in NEEDS_OPTIONS
]
NOISY_OPTIONS = {"ddim": {"eta": 1.0}}


@pytest.fixture(scope="module")
def unet() -> torch.nn.Module:
    return matrix.tiny_unet()


CONFIGS = {
    "table": lambda **kw: DiffsampleScheduler(solver="dpmpp_2m", **kw),
    "table-heun-v": lambda **kw: DiffsampleScheduler(solver="heun", prediction_type="v_prediction", **kw),
    "flow": lambda **kw: DiffsampleScheduler.from_config(
        diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0).config, solver="unipc", **kw
    ),
    "flow-ancestral": lambda **kw: DiffsampleScheduler.from_config(
        diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0).config, solver="euler_ancestral", **kw
    ),
}


def loop(sched, unet, x: torch.Tensor, generator=None, return_dict: bool = True) -> list[torch.Tensor]:
    """A diffusers pipeline loop from the noise ``x``; returns every ``prev_sample``."""
    x = x * getattr(sched, "init_noise_sigma", 1.0)
    out = []
    with torch.no_grad():
        for t in sched.timesteps:
            model_output = unet(sched.scale_model_input(x, t), t).sample
            step = sched.step(model_output, t, x, generator=generator, return_dict=return_dict)
            x = step.prev_sample if return_dict else step[0]
            out.append(x)
    return out


def noise(seed: int = 0, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


# ===================================================================== part 1: SchedulerCommonTest checks


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_common_from_save_pretrained(kind, unet, tmp_path):
    sched = CONFIGS[kind]()
    sched.save_pretrained(tmp_path)
    again = DiffsampleScheduler.from_pretrained(tmp_path)
    sched.set_timesteps(STEPS)
    again.set_timesteps(STEPS)
    assert torch.equal(sched.timesteps, again.timesteps)
    a = loop(sched, unet, noise(), generator=torch.Generator().manual_seed(1))
    b = loop(again, unet, noise(), generator=torch.Generator().manual_seed(1))
    assert torch.equal(a[-1], b[-1])


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_common_step_shape(kind, unet):
    sched = CONFIGS[kind]()
    sched.set_timesteps(STEPS)
    outs = loop(sched, unet, noise(), generator=torch.Generator().manual_seed(1))
    assert len(outs) == len(sched.timesteps)
    assert all(o.shape == (2, 1, 8, 8) for o in outs)


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_common_scheduler_outputs_equivalence(kind, unet):
    sched = CONFIGS[kind]()
    sched.set_timesteps(STEPS)
    as_dict = loop(sched, unet, noise(), generator=torch.Generator().manual_seed(1))
    sched.set_timesteps(STEPS)
    as_tuple = loop(sched, unet, noise(), generator=torch.Generator().manual_seed(1), return_dict=False)
    assert all(torch.equal(a, b) for a, b in zip(as_dict, as_tuple, strict=True))


@pytest.mark.parametrize("kind", list(CONFIGS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_common_add_noise_device_and_dtype(kind, dtype):
    sched = CONFIGS[kind]()
    sched.set_timesteps(STEPS)
    x0, eps = noise(0).to(dtype), noise(1).to(dtype)
    for t in (sched.timesteps[:1], sched.timesteps[-1:], sched.timesteps[:2]):
        out = sched.add_noise(x0, eps, t)
        assert out.dtype == dtype and out.device == x0.device and out.shape == x0.shape
        assert bool(torch.isfinite(out).all())


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_common_timesteps_dtype_and_device(kind):
    sched = CONFIGS[kind]()
    sched.set_timesteps(STEPS, device="cpu")
    assert sched.timesteps.dtype == torch.float32 and sched.timesteps.device.type == "cpu"
    assert sched.sigmas.dtype == torch.float64
    assert bool((sched.timesteps[:-1] >= sched.timesteps[1:]).all())
    assert len(sched) == sched.config.num_train_timesteps
    assert sched.init_noise_sigma == 1.0
    x = noise()
    assert sched.scale_model_input(x, sched.timesteps[0]) is x


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_common_step_with_and_without_generator(kind, unet):
    """With a generator the walk is reproducible; without one it draws from torch's default generator."""
    sched = CONFIGS[kind]()
    sched.set_timesteps(STEPS)
    a = loop(sched, unet, noise(), generator=torch.Generator().manual_seed(7))[-1]
    b = loop(sched, unet, noise(), generator=torch.Generator().manual_seed(7))[-1]
    assert torch.equal(a, b)
    torch.manual_seed(11)
    c = loop(sched, unet, noise())[-1]
    torch.manual_seed(11)
    d = loop(sched, unet, noise())[-1]
    assert torch.equal(c, d) and bool(torch.isfinite(c).all())


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_common_compatibles(kind):
    sched = CONFIGS[kind]()
    assert diffusers.EulerDiscreteScheduler in sched.compatibles
    assert diffusers.FlowMatchEulerDiscreteScheduler in sched.compatibles
    for other in sched.compatibles:
        if other is DiffsampleScheduler:
            continue
        assert type(other.from_config(sched.config)) is other
    if kind.startswith("table"):
        back = DiffsampleScheduler.from_config(diffusers.DDIMScheduler.from_config(sched.config).config)
        assert back.config.prediction_type == sched.config.prediction_type


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_common_custom_timesteps_and_sigmas(kind, unet):
    sched = CONFIGS[kind]()
    flow = kind.startswith("flow")
    timesteps = [1000.0, 812.5, 600.25, 411.0, 200.0, 33.3] if flow else [999, 812, 600, 411, 200, 33]
    sched.set_timesteps(timesteps=timesteps)
    assert sched.num_inference_steps == len(timesteps) and float(sched.sigmas[-1]) == 0.0
    starts = sorted(sched._plan.starts.values())
    torch.testing.assert_close(sched.timesteps[starts], torch.tensor(timesteps, dtype=torch.float32))
    sigmas = [1.0, 0.8, 0.5, 0.2] if flow else [14.6, 3.0, 0.5]
    sched.set_timesteps(sigmas=sigmas)
    assert sched.num_inference_steps == len(sigmas)
    sched.set_timesteps(sigmas=sigmas + [0.0])  # a list ending in 0 gets no second 0
    assert sched.num_inference_steps == len(sigmas)
    assert bool(torch.isfinite(loop(sched, unet, noise(), generator=torch.Generator().manual_seed(1))[-1]).all())
    with pytest.raises(DiffsampleError, match="exactly one"):
        sched.set_timesteps(timesteps=timesteps, sigmas=sigmas)
    with pytest.raises(DiffsampleError, match="num_inference_steps"):
        sched.set_timesteps(len(sigmas) + 2, sigmas=sigmas)


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_common_pickle_and_deepcopy(kind, unet):
    sched = CONFIGS[kind]()
    sched.set_timesteps(STEPS)
    for clone in (pickle.loads(pickle.dumps(sched)), copy.deepcopy(sched)):
        assert torch.equal(clone.timesteps, sched.timesteps) and dict(clone.config) == dict(sched.config)
        a = loop(clone, unet, noise(), generator=torch.Generator().manual_seed(3))[-1]
        b = loop(sched, unet, noise(), generator=torch.Generator().manual_seed(3))[-1]
        assert torch.equal(a, b)


def test_common_trained_betas(tmp_path):
    betas = diffusers.DDPMScheduler(beta_schedule="scaled_linear").betas
    sched = DiffsampleScheduler(trained_betas=betas.tolist())
    sched.save_pretrained(tmp_path)
    again = DiffsampleScheduler.from_pretrained(tmp_path)
    torch.testing.assert_close(again.betas, betas)
    want = diffusers.DDPMScheduler(trained_betas=betas.tolist()).alphas_cumprod
    torch.testing.assert_close(sched.alphas_cumprod, want)


# ================================================================ part 2: issue #11 regression tests
# ------------------------------------------------------------------------- 1. generator=None and lists


@pytest.mark.parametrize("solver", STOCHASTIC)
def test_step_without_generator_draws_from_torch_default(solver, unet):
    """A plain ``pipe(prompt)`` passes generator=None: it must work, as in diffusers, from torch's RNG."""
    sched = DiffsampleScheduler(solver=solver, solver_options=NOISY_OPTIONS.get(solver))
    sched.set_timesteps(STEPS)
    torch.manual_seed(5)
    a = loop(sched, unet, noise())[-1]
    torch.manual_seed(5)
    b = loop(sched, unet, noise())[-1]
    torch.manual_seed(6)
    c = loop(sched, unet, noise())[-1]
    assert torch.equal(a, b) and not torch.allclose(a, c)


@pytest.mark.parametrize("solver", ["euler_ancestral", "ddpm"])
def test_generator_list_gives_each_sample_its_stream(solver, unet):
    """Pipelines pass one generator per image (num_images_per_prompt): sample i follows generator i alone."""
    sched = DiffsampleScheduler(solver=solver)
    sched.set_timesteps(STEPS)
    x = noise(batch=3)
    both = loop(sched, unet, x, generator=[torch.Generator().manual_seed(s) for s in (10, 11, 12)])[-1]
    alone = loop(sched, unet, x[1:2], generator=[torch.Generator().manual_seed(11)])[-1]
    other = loop(sched, unet, x[1:2], generator=[torch.Generator().manual_seed(12)])[-1]
    # the UNet's convolutions may round differently for a batch of 3 and of 1 (seen on AMD EPYC CPUs: 7.5e-5 after
    # the loop); another stream moves the sample by orders of magnitude more
    torch.testing.assert_close(both[1:2], alone, rtol=1e-3, atol=1e-3)
    assert float((other - alone).abs().max()) > 100 * 1e-3
    z = GeneratorNoise([torch.Generator().manual_seed(s) for s in (10, 11)])(torch.zeros(2, 3))
    torch.testing.assert_close(z[1], torch.randn(3, generator=torch.Generator().manual_seed(11)))
    with pytest.raises(DiffsampleError, match="one per sample"):
        GeneratorNoise([torch.Generator()])(torch.zeros(2, 3))


# ------------------------------------------------------------------------------- 2. other configs' keys


@pytest.mark.parametrize(
    ("flag", "peer"),
    [
        ("use_karras_sigmas", "EulerDiscreteScheduler"),
        ("use_exponential_sigmas", "EulerDiscreteScheduler"),
        ("use_beta_sigmas", "EulerDiscreteScheduler"),
        ("use_lu_lambdas", "DPMSolverMultistepScheduler"),
    ],
)
@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
def test_respacing_flags_give_diffusers_levels(flag, peer, spacing):
    pytest.importorskip("scipy")
    if peer == "DPMSolverMultistepScheduler" and spacing != "linspace":
        pytest.skip("DPMSolverMultistep spans the whole table for use_lu_lambdas; here the spaced span (as Euler)")
    theirs = getattr(diffusers, peer)(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        timestep_spacing=spacing,
        steps_offset=1 if spacing == "leading" else 0,
        **{flag: True},
    )
    ours = DiffsampleScheduler.from_config(theirs.config, solver="euler")
    assert ours.config[flag]
    theirs.set_timesteps(12)
    ours.set_timesteps(12)
    # diffusers computes σ = sqrt((1 − ᾱ)/ᾱ) in float32: 1 − ᾱ_0 loses ~1e-5 to cancellation
    torch.testing.assert_close(ours.sigmas, theirs.sigmas.to(torch.float64), rtol=3e-5, atol=0)


def test_respacing_flags_conflict():
    with pytest.raises(DiffsampleError, match="only one"):
        DiffsampleScheduler(use_karras_sigmas=True, use_beta_sigmas=True)
    with pytest.raises(DiffsampleError, match="conflicts"):
        DiffsampleScheduler(use_karras_sigmas=True, step_schedule="logsnr")


def big_output_unet() -> torch.nn.Module:
    """A tiny UNet whose x̂0 leaves [−1, 1], so clipping and thresholding change the result."""
    net = matrix.tiny_unet(seed=5)
    with torch.no_grad():
        net.conv_out.weight.mul_(20)
    return net


def test_clip_sample_matches_ddpm():
    """DDPM's clip_sample clips x̂0 before its posterior mean: ``ddpm`` with the config's clipping is the same
    sampler, drawing the same noise from the same generator."""
    net = big_output_unet()
    theirs = diffusers.DDPMScheduler(clip_sample=True, clip_sample_range=1.5, timestep_spacing="leading")
    ours = DiffsampleScheduler.from_config(theirs.config, solver="ddpm")
    plain = DiffsampleScheduler(solver="ddpm", timestep_spacing="leading")
    for sched in (theirs, ours, plain):
        sched.set_timesteps(STEPS)
    want, got, unclipped = (
        loop(s, net, noise(), generator=torch.Generator().manual_seed(1))[-1] for s in (theirs, ours, plain)
    )
    torch.testing.assert_close(got, want, rtol=1e-4, atol=3e-4)
    assert float((unclipped - want).abs().max()) > 0.1  # the clipping matters here
    assert float(got.abs().max()) <= 1.5 + 1e-6


def test_thresholding_matches_dpm_solver():
    """DPM-Solver++'s first-order step is Euler in σ-space; diffusers thresholds its x̂0 (per-sample quantile,
    capped by sample_max_value, rescaled into [−1, 1]) and so does the scheduler's denoiser here."""
    net = big_output_unet()
    options = {"thresholding": True, "dynamic_thresholding_ratio": 0.9, "sample_max_value": 1.7}
    theirs = diffusers.DPMSolverMultistepScheduler(solver_order=1, timestep_spacing="trailing", **options)
    ours = DiffsampleScheduler.from_config(theirs.config, solver="euler")
    plain = DiffsampleScheduler(solver="euler", timestep_spacing="trailing")
    for sched in (theirs, ours, plain):
        sched.set_timesteps(STEPS)
    want, got, unclipped = (loop(s, net, noise())[-1] for s in (theirs, ours, plain))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=3e-5)
    assert float((unclipped - want).abs().max()) > 0.1
    assert float(got.abs().max()) <= 1.0 + 1e-6


def test_final_sigmas_type_sigma_min(unet):
    theirs = diffusers.DPMSolverMultistepScheduler(final_sigmas_type="sigma_min", timestep_spacing="trailing")
    ours = DiffsampleScheduler.from_config(theirs.config, solver="euler")
    ours.set_timesteps(STEPS)
    theirs.set_timesteps(STEPS)
    sigma_min = float(theirs.sigmas[-1])  # diffusers' σ(t = 0), computed in float32
    assert math.isclose(float(ours.sigmas[-1]), sigma_min, rel_tol=1e-4) and float(ours.sigmas[-2]) > sigma_min
    last = loop(ours, unet, noise())[-1]
    den = load_diffusers_denoiser(unet, scheduler=ours)
    alpha0 = den.network_inputs(torch.tensor([float(torch.tensor(float(ours.sigmas[0])).float())]))[0].float()
    with torch.no_grad():
        ref = diffsample.sample(den, noise() / alpha0, ours.sigmas, solver="euler")
    alpha_end = float(ours.alphas_cumprod[0].sqrt())  # the walk ends on a VP sample at σ_min, not at x̂0
    torch.testing.assert_close(last, ref * alpha_end, rtol=1e-4, atol=1e-5 * float(last.abs().max()))
    with pytest.raises(DiffsampleError, match="final_sigmas_type"):
        DiffsampleScheduler(final_sigmas_type="one")


def test_learned_variance_uses_the_mean_channels():
    net = matrix.tiny_unet(out_channels=2, seed=2)
    theirs = diffusers.DDIMScheduler(clip_sample=False, set_alpha_to_one=True, timestep_spacing="leading")
    ours = DiffsampleScheduler.from_config(
        diffusers.DDPMScheduler(variance_type="learned_range").config, solver="euler", timestep_spacing="leading"
    )
    ours.set_timesteps(STEPS)
    theirs.set_timesteps(STEPS)
    got = loop(ours, net, noise())[-1]
    x = noise()
    with torch.no_grad():  # diffusers' DDIM on the mean channels
        for t in theirs.timesteps:
            x = theirs.step(net(x, t).sample[:, :1], t, x).prev_sample
    torch.testing.assert_close(got, x, rtol=1e-4, atol=1e-5)
    with pytest.raises(DiffsampleError, match="learned"):
        DiffsampleScheduler(variance_type="learned", solver="ddpm")
    assert DiffsampleScheduler(variance_type="fixed_large", solver="ddpm").solver_options == {"variance": "large"}


def test_zero_terminal_snr_starts_at_999_like_diffusers_euler():
    """rescale_betas_zero_snr: diffusers' Euler starts at ᾱ = 2^-24 with the network at t = 999; so does Euler
    here (first call at 999, same images), and timesteps=[999, …] is accepted."""
    net = matrix.tiny_unet(seed=3)
    common = {"rescale_betas_zero_snr": True, "timestep_spacing": "trailing", "prediction_type": "v_prediction"}
    theirs = diffusers.EulerDiscreteScheduler(**common)
    ours = DiffsampleScheduler.from_config(theirs.config, solver="euler")
    seen = []

    def spy(x, t):
        seen.append(float(t))
        return net(x, t)

    theirs.set_timesteps(STEPS)
    ours.set_timesteps(STEPS)
    want, got = (loop(s, net, noise())[-1] for s in (theirs, ours))
    loop(ours, type("Spy", (), {"__call__": lambda self, x, t: spy(x, t)})(), noise())
    assert seen[0] == 999.0
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    ours.set_timesteps(timesteps=[999, 666, 333, 1])
    assert float(ours.timesteps[0]) == 999.0 and bool(torch.isfinite(ours.sigmas).all())


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("timestep_type", "continuous"),
        ("interpolation_type", "log_linear"),
        ("sigma_max", 80.0),
        ("stochastic_sampling", True),
        ("invert_sigmas", True),
    ],
)
def test_keys_that_cannot_be_honoured_are_refused(key, value):
    config = dict(diffusers.EulerDiscreteScheduler().config)
    config[key] = value
    with pytest.raises(DiffsampleError, match=key):
        DiffsampleScheduler.from_config(config)


def test_spacing_and_offset_follow_diffusers():
    sd = diffusers.DDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, timestep_spacing="leading", steps_offset=1
    )
    ours = DiffsampleScheduler.from_config(sd.config, solver="euler")
    for n in (10, 25):
        sd.set_timesteps(n)
        ours.set_timesteps(n)
        torch.testing.assert_close(ours.timesteps, sd.timesteps.float())


# ------------------------------------------------------------------------------------- 3. flow matching


def flow_sched(solver: str = "euler", **config):
    return DiffsampleScheduler.from_config(diffusers.FlowMatchEulerDiscreteScheduler(**config).config, solver=solver)


def test_flow_euler_matches_diffusers_flow_match_euler(unet):
    """Same (unshifted) sigmas in, shifted once by both: Euler agrees to float32 rounding."""
    u = [1.0, 0.8, 0.6, 0.45, 0.3, 0.1]
    for config, mu in (
        ({"shift": 3.0}, None),
        ({"use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15}, 0.9),
    ):
        theirs = diffusers.FlowMatchEulerDiscreteScheduler(**config)
        ours = flow_sched("euler", **config)
        theirs.set_timesteps(sigmas=u, mu=mu)
        ours.set_timesteps(sigmas=u, mu=mu)
        torch.testing.assert_close(ours.timesteps, theirs.timesteps, rtol=1e-6, atol=1e-4)
        t = ours.sigmas / (1 + ours.sigmas)
        torch.testing.assert_close(t[1:], theirs.sigmas[1:].double(), rtol=1e-6, atol=1e-7)
        x = noise()
        want = x.clone()
        with torch.no_grad():
            for step in theirs.timesteps:
                want = theirs.step(unet(want, step).sample, step, want).prev_sample
        got = loop(ours, unet, x)[-1]
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # defaults with dynamic shifting: the same levels as diffusers (its sigma_min is not pre-shifted there)
    theirs = diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    ours = flow_sched("euler", use_dynamic_shifting=True)
    theirs.set_timesteps(8, mu=0.7)
    ours.set_timesteps(8, mu=0.7)
    torch.testing.assert_close(ours.timesteps, theirs.timesteps, rtol=1e-6, atol=1e-4)
    with pytest.raises(DiffsampleError, match="mu"):
        ours.set_timesteps(8)


def test_flow_shift_applied_once():
    ours = flow_sched("euler", shift=3.0)
    ours.set_timesteps(4)
    u = torch.tensor([1000.0, 667.0, 334.0, 1.0], dtype=torch.float64) / 1000
    sigma = 3.0 * u / (1 - u)  # SD3's shift is σ → 3σ in σ-space, once
    torch.testing.assert_close(ours.sigmas[1:-1], sigma[1:], rtol=1e-12, atol=0)
    assert float(ours.sigmas[0]) == FLOW_PURE_NOISE_SIGMA and float(ours.timesteps[0]) == 1000.0


@pytest.mark.parametrize(
    "config",
    [
        {"use_karras_sigmas": True},
        {"use_exponential_sigmas": True},
        {"use_beta_sigmas": True},
        {"shift_terminal": 0.1},
        {"time_shift_type": "linear"},
    ],
)
def test_flow_level_options_match_diffusers(config):
    """Re-spacing in flow time t, shift_terminal and the linear time shift, with dynamic shifting (where
    diffusers' span is shifted once, as here)."""
    pytest.importorskip("scipy")
    common = {"use_dynamic_shifting": True, **config}
    theirs = diffusers.FlowMatchEulerDiscreteScheduler(**common)
    ours = flow_sched("euler", **common)
    mu = 1.3 if config.get("time_shift_type") == "linear" else 0.8
    theirs.set_timesteps(9, mu=mu)
    ours.set_timesteps(9, mu=mu)
    torch.testing.assert_close(ours.timesteps, theirs.timesteps, rtol=1e-5, atol=2e-4)
    t = ours.sigmas / (1 + ours.sigmas)
    torch.testing.assert_close(t[1:], theirs.sigmas[1:].double(), rtol=1e-5, atol=1e-7)


def flow_reference(unet, sched, solver: str, x: torch.Tensor, noise_source=None, **options) -> torch.Tensor:
    """diffsample.sample on the loaded flow denoiser: Euler out of pure noise (labelled t = 1), then the solver."""

    def labelled(x_t, timestep, **kwargs):
        return unet(x_t, torch.where(timestep > 999.9, torch.full_like(timestep, 1000.0), timestep), **kwargs)

    den = load_diffusers_denoiser(labelled, scheduler=sched)
    alpha0 = den.network_inputs(torch.tensor([FLOW_PURE_NOISE_SIGMA], dtype=torch.float64))[0].float()
    with torch.no_grad():
        x1 = diffsample.sample(den, x / alpha0, sched.sigmas[:2], solver="euler")
        out = diffsample.sample(den, x1, sched.sigmas[1:], solver=solver, noise=noise_source, **options)
    return out


@pytest.mark.parametrize("solver", DETERMINISTIC + STOCHASTIC)
def test_flow_runs_every_solver(solver, unet):
    options = NOISY_OPTIONS.get(solver, {})
    sched = DiffsampleScheduler.from_config(
        diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0).config, solver=solver, solver_options=options
    )
    sched.set_timesteps(STEPS)
    x = noise()
    got = loop(sched, unet, x, generator=torch.Generator().manual_seed(4))[-1]
    source = GeneratorNoise(torch.Generator().manual_seed(4)) if solvers.spec(solver).stochastic else None
    want = flow_reference(unet, sched, solver, x, source, **options)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * max(1.0, float(want.abs().max())))


def test_flow_scale_noise_and_img2img(unet):
    theirs = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    ours = flow_sched("euler", shift=3.0)
    u = [1.0, 0.85, 0.7, 0.5, 0.3, 0.1]  # the same sigmas for both (diffusers' default shifts its last twice)
    theirs.set_timesteps(sigmas=u)
    ours.set_timesteps(sigmas=u)
    x0, eps = noise(0), noise(1)
    t = theirs.timesteps[2:3]
    torch.testing.assert_close(ours.scale_noise(x0, t, eps), theirs.scale_noise(x0, t, eps), rtol=1e-5, atol=1e-6)
    for sched in (theirs, ours):  # StableDiffusion3Img2ImgPipeline's start
        sched.set_timesteps(sigmas=u)
        sched.set_begin_index(2)
    outs = []
    for sched in (theirs, ours):
        x = sched.scale_noise(x0, sched.timesteps[2:3], eps)
        with torch.no_grad():
            for step in sched.timesteps[2:]:
                x = sched.step(unet(x, step).sample, step, x).prev_sample
        outs.append(x)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)


def test_flow_configs_of_other_schedulers():
    wan_like = diffusers.UniPCMultistepScheduler(
        use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=5.0
    )
    sched = DiffsampleScheduler.from_config(wan_like.config, solver="dpmpp_2m")
    assert sched.is_flow and sched.config.shift == 5.0
    with pytest.raises(AttributeError, match="alphas_cumprod"):
        sched.alphas_cumprod  # noqa: B018
    with pytest.raises(DiffsampleError, match="EDM"):
        DiffsampleScheduler.from_config(diffusers.EDMEulerScheduler().config)


# ------------------------------------------------------------------------------- 4. the exposed tables


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
        {"beta_schedule": "squaredcos_cap_v2"},
        {"rescale_betas_zero_snr": True},
    ],
)
def test_tables_exposed_like_diffusers(config):
    theirs = diffusers.DDIMScheduler(**config)
    ours = DiffsampleScheduler.from_config(theirs.config)
    for name in ("betas", "alphas", "alphas_cumprod"):
        got, want = getattr(ours, name), getattr(theirs, name)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)  # diffusers' rescale runs in float32


# --------------------------------------------------------------------------- 5. the tiny-pipeline matrix


@pytest.fixture(scope="module")
def matrix_rows():
    return {row.name: row for row in matrix.rows()}


EXACT_PAIRS = [
    (row, s)
    for row in ("unconditional (DDPM UNet)", "SD-style + CFG 7.5", "img2img (strength 0.6)")
    for s in matrix.TABLE_PEERS
] + [("SD3-style flow (shift 3)", "euler")]
OTHER_DISCRETISATION = [("SD3-style flow (shift 3)", s) for s in ("heun", "dpmpp_2m", "unipc")]


@pytest.mark.parametrize(("row", "solver"), EXACT_PAIRS)
def test_matrix_same_method_same_images(matrix_rows, row, solver):
    diff, scale = matrix.difference(matrix_rows[row], solver)
    assert diff <= 5e-6 * max(1.0, scale)


@pytest.mark.parametrize(("row", "solver"), OTHER_DISCRETISATION)
def test_matrix_flow_peers_with_other_discretisations(matrix_rows, row, solver):
    """diffusers' flow Heun is Heun in t (ours: in σ, after an Euler step out of pure noise) and its flow
    DPM-Solver/UniPC feed integer-truncated timesteps; both are close, not equal."""
    diff, scale = matrix.difference(matrix_rows[row], solver)
    assert diff <= 0.02 * max(1.0, scale)


@pytest.mark.parametrize("solver", ["euler", "dpmpp_2m", "unipc"])
def test_matrix_flow_multistep_equal_when_the_model_ignores_time(solver):
    """diffusers' flow DPM-Solver/UniPC call the model at integer-truncated timesteps (their sigmas are not
    truncated); with a network blind to t that difference vanishes and the methods agree to rounding."""
    row = matrix.Row("flow, time-blind", lambda x, t: torch.tanh(1.7 * x) - 0.4 * x, (2, 4, 8, 8), flow=True)
    diff, scale = matrix.difference(row, solver)
    assert diff <= 5e-6 * max(1.0, scale)
