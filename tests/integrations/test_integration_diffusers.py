"""diffusers integration: loading models as σ-space denoisers, and DiffsampleScheduler inside real pipelines.

Reference values come from outside the code under test: the σ-space conversions are computed by hand
from diffusers' own ``alphas_cumprod`` table and the network's raw output, ``add_noise`` is checked
against ``DDPMScheduler.add_noise``, and a pipeline run with ``DiffsampleScheduler`` is compared with
``diffsample.sample`` on the loaded denoiser from the same initial noise (the pipeline, not this
code, drives the model calls). All models are tiny, randomly initialised and built locally.
"""

from __future__ import annotations

import copy
import gc
import math
import subprocess
import sys

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

import diffsample  # noqa: E402
from diffsample import solvers  # noqa: E402
from diffsample.errors import DiffsampleError  # noqa: E402
from diffsample.integrations import DiffsampleScheduler, GeneratorNoise, load_diffusers_denoiser  # noqa: E402
from diffsample.schedules import DiscreteVP, RectifiedFlow  # noqa: E402

STEPS = 10


from diffusers_matrix import tiny_unet  # noqa: E402


@pytest.fixture(scope="module")
def unet() -> torch.nn.Module:
    return tiny_unet()


def table(config) -> tuple[torch.Tensor, torch.Tensor]:
    """(α_t, σ-space σ_t) for t = 0…N−1 from diffusers' own ``alphas_cumprod``."""
    abar = diffusers.DDPMScheduler.from_config(config).alphas_cumprod.to(torch.float64)
    return abar.sqrt(), ((1 - abar) / abar).sqrt()


def hand_x0(unet, x: torch.Tensor, t: int, alpha: float, prediction: str, **kwargs) -> torch.Tensor:
    """x̂0 by hand from the network's raw output at integer timestep t, with σ_t(model) = sqrt(1 − α²)."""
    sigma_model = math.sqrt(1 - alpha * alpha)
    with torch.no_grad():
        out = unet(alpha * x, torch.full((x.shape[0],), float(t)), **kwargs).sample
    if prediction == "epsilon":
        return x - (sigma_model / alpha) * out
    if prediction == "v_prediction":
        return alpha * (alpha * x) - sigma_model * out
    return out


# ------------------------------------------------------------------------------------------ loading


def test_import_diffsample_does_not_import_diffusers():
    code = (
        "import sys, diffsample, diffsample.integrations, diffsample.integrations.kdiffusion_api; "
        "assert 'diffusers' not in sys.modules, 'diffusers was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_loaded_denoiser_matches_hand_conversion(unet, tmp_path, prediction):
    sched = diffusers.DDPMScheduler(prediction_type=prediction)
    unet.save_pretrained(tmp_path)
    sched.save_pretrained(tmp_path)
    den = load_diffusers_denoiser(tmp_path)
    assert isinstance(den.noise_schedule, DiscreteVP) and den.time_dtype == torch.float32
    alphas, sig = table(sched.config)
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 5
    for t in (0, 10, 500, 999):
        with torch.no_grad():
            got = den(x, torch.full((3,), float(sig[t]), dtype=torch.float64))
        want = hand_x0(unet, x, t, float(alphas[t]), prediction)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))
    assert den.nfe == 4


def test_pipeline_directory_object_and_class_labels(tmp_path):
    net = tiny_unet(num_class_embeds=3)
    pipe = diffusers.DDPMPipeline(unet=net, scheduler=diffusers.DDPMScheduler(prediction_type="v_prediction"))
    pipe.save_pretrained(tmp_path)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([0, 2])
    alphas, sig = table(pipe.scheduler.config)
    want = hand_x0(net, x, 300, float(alphas[300]), "v_prediction", class_labels=labels)
    other = hand_x0(net, x, 300, float(alphas[300]), "v_prediction", class_labels=torch.tensor([1, 1]))
    assert not torch.allclose(want, other)  # the labels matter, so passing them through is tested
    for source in (tmp_path, pipe, net):
        den = load_diffusers_denoiser(source, scheduler=pipe.scheduler if source is net else None)
        with torch.no_grad():
            got = den(x, float(sig[300]), class_labels=labels)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    sub = load_diffusers_denoiser(tmp_path / "unet")  # the scheduler is found in ../scheduler
    assert sub.prediction == "v"


def test_fractional_times_reach_the_network_unrounded(unet):
    seen: list[torch.Tensor] = []
    den = load_diffusers_denoiser(unet, scheduler=diffusers.DDPMScheduler())
    den.network.model = lambda x, timestep, **kw: seen.append(timestep) or unet(x, timestep)
    _, sig = table(diffusers.DDPMScheduler().config)
    mid = math.sqrt(float(sig[400] * sig[401]))  # halfway in log σ: t = 400.5 on the log-σ interpolated table
    with torch.no_grad():
        den(torch.zeros(1, 1, 8, 8), mid)
    assert seen[0].dtype == torch.float32 and abs(float(seen[0]) - 400.5) < 1e-3
    q = load_diffusers_denoiser(unet, scheduler=diffusers.DDPMScheduler(), quantize=True)
    q.network.model = lambda x, timestep, **kw: seen.append(timestep) or unet(x, timestep)
    with torch.no_grad():
        q(torch.zeros(1, 1, 8, 8), mid)
    assert float(seen[1]) in (400.0, 401.0)


def test_flow_matching_config(unet, tmp_path):
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    unet.save_pretrained(tmp_path)
    sched.save_pretrained(tmp_path)
    den = load_diffusers_denoiser(tmp_path)
    assert isinstance(den.noise_schedule, RectifiedFlow) and den.noise_schedule.shift == 3.0
    assert den.prediction == "flow"
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    for s in (0.05, 1.0, 20.0):
        t = s / (1 + s)  # x_t = (1 − t) x0 + t ε = (1 − t) x in σ-space
        with torch.no_grad():
            out = unet((1 - t) * x, torch.full((2,), 1000 * t)).sample
            got = den(x, s)
        torch.testing.assert_close(got, (1 - t) * x - t * out, rtol=1e-5, atol=1e-5)
    with pytest.raises(DiffsampleError, match="dynamic shifting"):
        load_diffusers_denoiser(unet, scheduler=diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True))
    assert (
        load_diffusers_denoiser(
            unet, scheduler=diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True), shift=2.0
        ).noise_schedule.shift
        == 2.0
    )


def test_learned_variance_uses_the_mean_channels():
    net = tiny_unet(out_channels=2)
    sched = diffusers.DDPMScheduler(variance_type="learned_range")
    den = load_diffusers_denoiser(net, scheduler=sched)
    alphas, sig = table(sched.config)
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        got = den(x, float(sig[700]))
        out = net(float(alphas[700]) * x, torch.full((2,), 700.0)).sample[:, :1]
    a = float(alphas[700])
    torch.testing.assert_close(got, x - math.sqrt(1 - a * a) / a * out, rtol=1e-5, atol=1e-4)


def test_loading_errors(unet, tmp_path):
    with pytest.raises(DiffsampleError, match="local directory"):
        load_diffusers_denoiser("some-org/some-model")
    with pytest.raises(DiffsampleError, match="scheduler="):
        load_diffusers_denoiser(unet)
    unet.save_pretrained(tmp_path)
    with pytest.raises(DiffsampleError, match="no scheduler config"):
        load_diffusers_denoiser(tmp_path)


# ---------------------------------------------------------------------------------------- scheduler


def run_pipeline(unet, scheduler, seed: int = 3, batch: int = 2, steps: int = STEPS):
    """Run DDPMPipeline; return its images and the last pre-clamp latent (spied on ``step``, not changed)."""
    pipe = diffusers.DDPMPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    latents: list[torch.Tensor] = []
    step = scheduler.step

    def spy(*args, **kwargs):
        out = step(*args, **kwargs)
        latents.append(out.prev_sample if kwargs.get("return_dict", True) else out[0])
        return out

    scheduler.step = spy
    images = pipe(
        batch_size=batch, generator=torch.Generator().manual_seed(seed), num_inference_steps=steps, output_type="np"
    ).images
    del scheduler.step
    return images, latents


def reference(unet, scheduler, solver: str, seed: int = 3, batch: int = 2, noise=None, **options) -> torch.Tensor:
    """diffsample.sample on the loaded denoiser, from the pipeline's initial noise z moved to σ-space."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, 1, 8, 8, generator=gen)
    den = load_diffusers_denoiser(unet, scheduler=scheduler)
    sigma0 = float(torch.tensor(float(scheduler.sigmas[0]), dtype=torch.float32))
    alpha0 = den.network_inputs(torch.tensor([sigma0], dtype=torch.float64))[0].float()
    noise = noise(gen) if noise is not None else None
    with torch.no_grad():
        return diffsample.sample(den, z / alpha0, scheduler.sigmas, solver=solver, noise=noise, **options)


def assert_pipeline_matches(images, latents, ref):
    scale = float(ref.abs().max())
    torch.testing.assert_close(latents[-1], ref, rtol=1e-5, atol=1e-5 * max(1.0, scale))
    want = (ref / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()  # DDPMPipeline's own output processing
    # images = latents / 2 + 0.5, so the latent tolerance halves; float32 round-off scales with |latent|
    assert abs(images - want).max() < 1e-5 * max(1.0, scale)


PIPELINE_SOLVERS = [
    "euler",
    "dpmpp_2m",
    "unipc",
    "heun",
    "dpmpp_2s",
    "dpm_solver_3s",
    "dpm_fast",
    "lms",
    "deis",
    "ipndm_v",
    "dpmpp_3m",
]


@pytest.mark.parametrize("solver", PIPELINE_SOLVERS)
def test_ddpm_pipeline_runs_solver_and_matches_sample(unet, solver):
    sched = DiffsampleScheduler.from_config(diffusers.DDPMScheduler().config, solver=solver)
    images, latents = run_pipeline(unet, sched)
    assert len(latents) == len(sched.timesteps) == solvers.spec(solver).nfe(STEPS)
    assert_pipeline_matches(images, latents, reference(unet, sched, solver))


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_euler_in_the_pipeline_is_diffusers_ddim(unet, prediction):
    """A peer check of the whole path: deterministic DDIM is Euler in σ-space (Song et al. 2021; Karras et al.
    2022), so on the same 'leading' timesteps DDIMScheduler (η = 0, last step to ᾱ = 1) gives the same images."""
    common = {"prediction_type": prediction, "timestep_spacing": "leading"}
    ddim = diffusers.DDIMScheduler(set_alpha_to_one=True, clip_sample=False, **common)
    ours = DiffsampleScheduler(solver="euler", **common)
    images, latents = run_pipeline(unet, ours)
    peer_images, peer_latents = run_pipeline(unet, ddim)
    torch.testing.assert_close(ours.timesteps, ddim.timesteps.float())
    scale = float(peer_latents[-1].abs().max())
    torch.testing.assert_close(latents[-1], peer_latents[-1], rtol=1e-4, atol=1e-5 * scale)
    assert abs(images - peer_images).max() < 1e-4


@pytest.mark.parametrize("prediction", ["v_prediction", "sample"])
def test_pipeline_other_parameterisations(prediction):
    net = tiny_unet(seed=4)
    sched = DiffsampleScheduler(prediction_type=prediction, solver="dpmpp_2m", step_schedule="karras")
    images, latents = run_pipeline(net, sched)
    assert_pipeline_matches(images, latents, reference(net, sched, "dpmpp_2m"))


def test_pipeline_zero_terminal_snr(unet):
    """The first level is diffusers' Euler stand-in σ = sqrt(2^24 − 1) for σ = ∞, which the network sees at
    t = 999 (diffusers' label), not at the table's interpolated time of that level."""
    sched = DiffsampleScheduler(
        rescale_betas_zero_snr=True, timestep_spacing="trailing", solver="heun", prediction_type="v_prediction"
    )
    images, latents = run_pipeline(unet, sched)
    assert float(sched.timesteps[0]) == 999.0 and float(sched.sigmas[0]) == math.sqrt(2**24 - 1)
    assert bool(torch.isfinite(latents[-1]).all())

    def labelled_999(x, timestep, **kwargs):
        return unet(x, torch.where(timestep > 990, torch.full_like(timestep, 999.0), timestep), **kwargs)

    assert_pipeline_matches(images, latents, reference(labelled_999, sched, "heun"))


def test_heun_lists_its_second_stages():
    sched = DiffsampleScheduler(solver="heun")
    sched.set_timesteps(4)
    t = DiscreteVP.from_diffusers_config(sched.config).t_of_sigma_space(sched.sigmas[:-1]).float()
    # steps σ_i → σ_{i+1} evaluate at both ends; the last one, into σ = 0, is an Euler step (one evaluation)
    torch.testing.assert_close(sched.timesteps, torch.stack([t[0], t[1], t[1], t[2], t[2], t[3], t[3]]))
    torch.testing.assert_close(sched.timesteps, torch.tensor([999.0, 666.0, 666.0, 333.0, 333.0, 0.0, 0.0]))
    assert sched.order == 2
    torch.testing.assert_close(sched.eval_sigmas, sched.sigmas[[0, 1, 1, 2, 2, 3, 3]])


def test_adaptive_solver_refused():
    with pytest.raises(DiffsampleError, match="adaptive"):
        DiffsampleScheduler(solver="dpm_adaptive")


def test_config_from_other_schedulers_and_roundtrip(tmp_path):
    other = diffusers.DPMSolverMultistepScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, prediction_type="v_prediction"
    )
    sched = DiffsampleScheduler.from_config(other.config, solver="unipc", solver_options={"order": 3})
    assert sched.config.beta_schedule == "scaled_linear" and sched.prediction == "v"
    assert diffusers.DPMSolverMultistepScheduler in sched.compatibles
    torch.testing.assert_close(
        sched.noise_schedule.alphas_cumprod, other.alphas_cumprod.to(torch.float64), rtol=1e-6, atol=0
    )
    sched.set_timesteps(12)
    sched.save_pretrained(tmp_path)
    again = DiffsampleScheduler.from_pretrained(tmp_path)
    public = [k for k in sched.config if not k.startswith("_")]
    assert {k: again.config[k] for k in public} == {k: sched.config[k] for k in public}
    again.set_timesteps(12)
    torch.testing.assert_close(again.timesteps, sched.timesteps)
    with pytest.raises(DiffsampleError, match="EDM"):
        DiffsampleScheduler.from_config(diffusers.EDMEulerScheduler().config)


def test_custom_sigmas_and_timesteps():
    sched = DiffsampleScheduler(solver="euler")
    sched.set_timesteps(timesteps=[999, 850, 736, 645, 545, 455, 343, 233, 124, 24])
    torch.testing.assert_close(sched.timesteps, torch.tensor([999.0, 850, 736, 645, 545, 455, 343, 233, 124, 24]))
    assert float(sched.sigmas[-1]) == 0.0 and sched.num_inference_steps == 10
    sched.set_timesteps(sigmas=[14.6, 3.0, 0.5])
    torch.testing.assert_close(sched.sigmas, torch.tensor([14.6, 3.0, 0.5, 0.0], dtype=torch.float64))


def test_add_noise_matches_diffusers():
    ours, theirs = DiffsampleScheduler(), diffusers.DDPMScheduler()
    x0, eps = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    t = torch.tensor([0, 417, 999])
    torch.testing.assert_close(ours.add_noise(x0, eps, t), theirs.add_noise(x0, eps, t), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("solver", ["heun", "dpmpp_2m"])
def test_img2img_start_mid_plan(unet, solver):
    """diffusers' img2img convention: truncate timesteps at t_start·order, set_begin_index, add_noise."""
    sched = DiffsampleScheduler(solver=solver)
    sched.set_timesteps(STEPS)
    t_start = 4
    begin = t_start * sched.order
    timesteps = sched.timesteps[begin:]
    sched.set_begin_index(begin)
    gen = torch.Generator().manual_seed(5)
    x0, eps = torch.randn(2, 1, 8, 8, generator=gen), torch.randn(2, 1, 8, 8, generator=gen)
    latents = sched.add_noise(x0, eps, timesteps[:1])
    start = latents.clone()
    with torch.no_grad():
        for t in timesteps:
            latents = sched.step(unet(latents, t).sample, t, latents).prev_sample
    den = load_diffusers_denoiser(unet, scheduler=sched)
    sigmas = sched.sigmas[t_start:]
    alpha = den.network_inputs(torch.tensor([float(torch.tensor(float(sigmas[0]), dtype=torch.float32))]))[0]
    with torch.no_grad():
        ref = diffsample.sample(den, start / alpha.float(), sigmas, solver=solver)
    torch.testing.assert_close(latents, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


def test_mid_plan_start_refused_where_the_solver_replans(unet):
    sched = DiffsampleScheduler(solver="dpm_fast")
    sched.set_timesteps(STEPS)
    sched.set_begin_index(3)
    x = torch.randn(1, 1, 8, 8)
    t = sched.timesteps[3]
    with pytest.raises(DiffsampleError, match="mid-plan|first evaluation"), torch.no_grad():
        sched.step(unet(x, t).sample, t, x)


def test_edited_latents_are_refused(unet):
    sched = DiffsampleScheduler(solver="dpmpp_2m")
    sched.set_timesteps(5)
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        t0, t1 = sched.timesteps[:2]
        x = sched.step(unet(x, t0).sample, t0, x).prev_sample
        with pytest.raises(DiffsampleError, match="changed the latent"):
            sched.step(unet(x, t1).sample, t1, x + 0.1)


def test_repeated_and_abandoned_walks(unet):
    sched = DiffsampleScheduler(solver="unipc")
    first, _ = run_pipeline(unet, sched)
    second, _ = run_pipeline(unet, sched)
    assert (first == second).all()
    sched.set_timesteps(6)
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        for t in sched.timesteps[:3]:
            x = sched.step(unet(x, t).sample, t, x).prev_sample
    walk = sched._slot.walk
    assert walk is not None and walk._thread.is_alive()
    clone = copy.deepcopy(sched)  # a copy does not take the walk in progress
    assert clone._slot.walk is None and clone.step_index is None
    torch.testing.assert_close(clone.timesteps, sched.timesteps)
    sched.set_timesteps(6)  # abandons the walk: its worker thread ends
    assert not walk._thread.is_alive()
    third, _ = run_pipeline(unet, sched)
    assert (first == third).all()
    # a scheduler dropped in the middle of a walk stops its worker (weakref finaliser)
    with torch.no_grad():
        t = sched.timesteps[0]
        sched.step(unet(x, t).sample, t, x)
    walk = sched._slot.walk
    assert walk._thread.is_alive()
    del sched, clone
    gc.collect()
    walk._thread.join(timeout=10)
    assert not walk._thread.is_alive()


def test_solver_errors_reach_the_caller(unet):
    sched = DiffsampleScheduler(solver="euler")
    sched.set_timesteps(4)
    x = torch.randn(1, 1, 8, 8)
    t0, t1 = sched.timesteps[:2]
    with torch.no_grad():
        x = sched.step(unet(x, t0).sample, t0, x).prev_sample
        with pytest.raises(diffsample.NonFiniteError):
            sched.step(torch.full_like(x, math.nan), t1, x)
    assert sched.step_index is None


STOCHASTIC = [n for n in solvers.available() if solvers.spec(n).stochastic and not solvers.spec(n).adaptive]


NOISY_OPTIONS = {"ddim": {"eta": 1.0}}  # ddim is deterministic at its default η = 0


@pytest.mark.parametrize("solver", STOCHASTIC)
def test_pipeline_generator_drives_stochastic_solvers(unet, solver):
    options = NOISY_OPTIONS.get(solver, {})
    sched = DiffsampleScheduler(solver=solver, solver_options=options)
    images, latents = run_pipeline(unet, sched)
    assert len(latents) == len(sched.timesteps)
    ref = reference(unet, sched, solver, noise=GeneratorNoise, **options)  # the generator continues after z
    assert_pipeline_matches(images, latents, ref)
    other = reference(unet, sched, solver, noise=lambda g: GeneratorNoise(torch.Generator().manual_seed(99)), **options)
    assert not torch.allclose(other, ref)


@pytest.mark.parametrize("solver", STOCHASTIC[:1])
def test_scheduler_noise_source_overrides_the_generator(unet, solver):
    sched = DiffsampleScheduler(solver=solver)
    sched.noise = diffsample.noise.seeded(5)
    images, latents = run_pipeline(unet, sched)
    assert_pipeline_matches(images, latents, reference(unet, sched, solver, noise=lambda g: diffsample.noise.seeded(5)))
