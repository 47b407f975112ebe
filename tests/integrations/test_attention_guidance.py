"""PAG and SAG on tiny randomly initialised diffusers networks (UNet2DModel, UNet2DConditionModel, DiT).

Known answers: the perturbed branch against diffusers' own attention processor run with an identity attention
map (a mask allowing only the diagonal), the captured map against ``softmax(q kᵀ/√d)`` by hand, SAG's degraded
input against diffusers' ``StableDiffusionSAGPipeline.sag_masking``, and the guidance rules against their
formulas on the branches; zero scales give the plain model bit for bit.
"""

from __future__ import annotations

import threading
import types

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from diffusers_matrix import tiny_cond_unet, tiny_unet  # noqa: E402

import diffsample  # noqa: E402
from diffsample.errors import DiffsampleError  # noqa: E402
from diffsample.integrations import load_diffusers_denoiser, pag, sag, self_attention_layers  # noqa: E402
from diffsample.integrations.attention_guidance import gaussian_blur, sag_degrade  # noqa: E402
from diffsample.integrations.attention_layers import installed, model_lock, resolve_layers  # noqa: E402

SIGMA = 1.3


def tiny_dit(seed: int = 2, layers: int = 3) -> torch.nn.Module:
    torch.manual_seed(seed)
    return diffusers.DiTTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        num_layers=layers,
        sample_size=8,
        patch_size=2,
        num_embeds_ada_norm=10,
        norm_num_groups=4,
    ).eval()


@pytest.fixture(scope="module")
def families() -> dict[str, tuple[torch.nn.Module, dict, dict, tuple[int, ...]]]:
    """name -> (model, conditional keywords, unconditional keywords, x shape)."""
    gen = torch.Generator().manual_seed(7)
    prompt, empty = torch.randn(2, 5, 16, generator=gen), torch.randn(2, 5, 16, generator=gen)
    pooled = torch.randn(2, 8, generator=gen)
    return {
        "unet": (tiny_unet(), {}, {}, (2, 1, 8, 8)),
        "cond_unet": (
            tiny_cond_unet(),
            {"encoder_hidden_states": prompt},
            {"encoder_hidden_states": empty},
            (2, 4, 8, 8),
        ),
        "dit": (
            tiny_dit(),
            {"class_labels": torch.tensor([1, 2])},
            {"class_labels": torch.tensor([0, 0])},
            (2, 4, 8, 8),
        ),
        "sd3": (
            tiny_sd3(),
            {"encoder_hidden_states": prompt, "pooled_projections": pooled},
            {"encoder_hidden_states": empty, "pooled_projections": torch.zeros(2, 8)},
            (2, 4, 8, 8),
        ),
    }


def tiny_sd3(seed: int = 4) -> torch.nn.Module:
    torch.manual_seed(seed)
    return diffusers.SD3Transformer2DModel(
        sample_size=8,
        patch_size=2,
        in_channels=4,
        num_layers=3,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=16,
        caption_projection_dim=16,
        pooled_projection_dim=8,
        out_channels=4,
    ).eval()


def denoiser_of(model: torch.nn.Module):
    if isinstance(model, diffusers.SD3Transformer2DModel):
        return load_diffusers_denoiser(model, scheduler=diffusers.FlowMatchEulerDiscreteScheduler())
    return load_diffusers_denoiser(model, scheduler=diffusers.DDPMScheduler())


def inputs(shape: tuple[int, ...], seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    x = SIGMA * torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    return x, torch.full((shape[0],), SIGMA)


def processors(model: torch.nn.Module) -> dict[str, object]:
    attention = diffusers.models.attention_processor.Attention
    return {name: m.processor for name, m in model.named_modules() if isinstance(m, attention)}


# ------------------------------------------------------------------------------------------ layers


def test_default_layers_per_family(families):
    assert resolve_layers(families["cond_unet"][0], None) == ["mid_block.attentions.0.transformer_blocks.0.attn1"]
    assert resolve_layers(families["unet"][0], None) == ["mid_block.attentions.0"]
    assert resolve_layers(families["dit"][0], None) == ["transformer_blocks.1.attn1"]  # the middle of 3 blocks
    assert resolve_layers(families["sd3"][0], None) == ["transformer_blocks.1.attn"]  # joint attention
    torch.manual_seed(3)
    pixart = diffusers.PixArtTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        num_layers=5,
        sample_size=8,
        patch_size=2,
        cross_attention_dim=16,
        caption_channels=16,
        norm_num_groups=4,
    )
    assert resolve_layers(pixart, None) == ["transformer_blocks.2.attn1"]  # attn2 is cross-attention


def test_layer_names_and_patterns(families):
    cond_unet, dit = families["cond_unet"][0], families["dit"][0]
    assert "mid_block.attentions.0.transformer_blocks.0.attn2" not in self_attention_layers(cond_unet)  # cross
    assert resolve_layers(cond_unet, "down_blocks") == ["down_blocks.0.attentions.0.transformer_blocks.0.attn1"]
    assert resolve_layers(dit, r"transformer_blocks\.(0|2)") == [
        "transformer_blocks.0.attn1",
        "transformer_blocks.2.attn1",
    ]
    assert resolve_layers(tiny_dit(layers=11), "transformer_blocks.1") == ["transformer_blocks.1.attn1"]  # not 10
    with pytest.raises(DiffsampleError, match="selects no self-attention layer.*transformer_blocks.0.attn1"):
        pag(denoiser_of(dit), layers="mid")
    with pytest.raises(DiffsampleError, match="selects no self-attention"):
        pag(denoiser_of(cond_unet), layers="attn2")
    with pytest.raises(DiffsampleError, match="not a valid regular expression"):
        pag(denoiser_of(dit), layers="blocks.(")
    with pytest.raises(DiffsampleError, match="one attention map"):
        sag(denoiser_of(dit), layer="transformer_blocks")


def test_models_without_self_attention_are_refused():
    with pytest.raises(DiffsampleError, match="no self-attention layer.*no diffusers Attention"):
        pag(denoiser_of(tiny_unet(add_attention=False)))
    torch.manual_seed(5)
    flux = diffusers.FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=16,
        pooled_projection_dim=8,
        axes_dims_rope=(2, 2, 4),
    )
    with pytest.raises(DiffsampleError, match="no self-attention layer.*FluxAttention"):
        pag(flux_denoiser := load_diffusers_denoiser(flux, scheduler=diffusers.FlowMatchEulerDiscreteScheduler()))
    assert flux_denoiser.network.model is flux
    with pytest.raises(DiffsampleError, match="joint image-text"):
        sag(denoiser_of(tiny_sd3()))
    with pytest.raises(DiffsampleError, match="pass model="):
        pag(lambda x, sigma: x)


# ------------------------------------------------------------------------------------------ PAG


def identity_map_copy(model: torch.nn.Module, layers: list[str]) -> torch.nn.Module:
    """A copy of ``model`` whose ``layers`` run diffusers' own processor with an attention mask that allows only
    the diagonal: the attention map is the identity, so each token's output is its value projection."""
    import copy

    clone = copy.deepcopy(model)
    modules = dict(clone.named_modules())

    def diagonal_only(module, args, kwargs):
        h = args[0] if args else kwargs["hidden_states"]
        tokens = h.shape[2] * h.shape[3] if h.dim() == 4 else h.shape[1]
        mask = torch.full((tokens, tokens), float("-inf")).fill_diagonal_(0.0)
        kwargs["attention_mask"] = mask.expand(h.shape[0], tokens, tokens)
        return args, kwargs

    for name in layers:
        modules[name].register_forward_pre_hook(diagonal_only, with_kwargs=True)
    return clone


@pytest.mark.parametrize("family", ["unet", "cond_unet", "dit", "sd3"])
def test_perturbed_branch_equals_diffusers_pag_processors(families, family):
    """diffusers' PAG processors run the perturbed rule on the second half of a doubled batch."""
    import copy

    from diffusers.models.attention_processor import PAGIdentitySelfAttnProcessor2_0, PAGJointAttnProcessor2_0

    model, cond_kw, _, shape = families[family]
    guided = pag(denoiser_of(model), 2.0, cond_kwargs=cond_kw)
    clone = copy.deepcopy(model)
    reference = PAGJointAttnProcessor2_0() if family == "sd3" else PAGIdentitySelfAttnProcessor2_0()
    modules = dict(clone.named_modules())
    for name in guided.layers:
        modules[name].set_processor(reference)
    x, sigma = inputs(shape)
    net = denoiser_of(clone)
    with torch.no_grad():
        got = guided.perturbed_branch(x, sigma)
        doubled = net(
            torch.cat([x, x]), torch.cat([sigma, sigma]), **{k: torch.cat([v, v]) for k, v in cond_kw.items()}
        )
    torch.testing.assert_close(got, doubled[2:], rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", ["unet", "cond_unet", "dit"])
def test_perturbed_branch_equals_the_identity_map_network(families, family):
    model, cond_kw, _, shape = families[family]
    guided = pag(denoiser_of(model), 2.0, cond_kwargs=cond_kw)
    before = processors(model)
    x, sigma = inputs(shape)
    with torch.no_grad():
        got = guided.perturbed_branch(x, sigma)
        want = denoiser_of(identity_map_copy(model, guided.layers))(x, sigma, **cond_kw)
        plain = denoiser_of(model)(x, sigma, **cond_kw)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert (got - plain).abs().max() > 1e-3  # the perturbation changes the prediction
    assert processors(model) == before  # restored, the same objects


@pytest.mark.parametrize("family", ["unet", "dit", "sd3"])
def test_pag_rule_costs_and_zero_scale(families, family):
    model, cond_kw, _, shape = families[family]
    x, sigma = inputs(shape)
    base = denoiser_of(model)
    guided = pag(base, 2.5, cond_kwargs=cond_kw)
    with torch.no_grad():
        d_c = base(x, sigma, **cond_kw)
        d_p = guided.perturbed_branch(x, sigma)
        guided.reset_counter()
        out = guided(x, sigma)
        off = pag(base, 0.0, cond_kwargs=cond_kw)
        out_off = off(x, sigma)
    torch.testing.assert_close(out, d_c + 2.5 * (d_c - d_p), rtol=0, atol=1e-6)
    assert (guided.nfe, guided.calls, guided.nfe_per_call) == (2, 2, 2)
    assert torch.equal(out_off, d_c) and (off.nfe, off.nfe_per_call) == (1, 1)


def test_pag_with_cfg_three_branches(families):
    model, cond_kw, uncond_kw, shape = families["cond_unet"]
    x, sigma = inputs(shape)
    base = denoiser_of(model)
    guided = pag(base, 3.0, cfg_scale=5.0, cond_kwargs=cond_kw, uncond_kwargs=uncond_kw)
    with torch.no_grad():
        d_c, d_u = base(x, sigma, **cond_kw), base(x, sigma, **uncond_kw)
        d_p = guided.perturbed_branch(x, sigma)
        guided.reset_counter()
        out = guided(x, sigma)
        cfg_only = pag(base, 0.0, cfg_scale=5.0, cond_kwargs=cond_kw, uncond_kwargs=uncond_kw)(x, sigma)
    torch.testing.assert_close(out, d_u + 5.0 * (d_c - d_u) + 3.0 * (d_c - d_p), rtol=0, atol=1e-5)
    assert (guided.nfe, guided.calls, guided.nfe_per_call) == (3, 3, 3)
    torch.testing.assert_close(cfg_only, torch.lerp(d_u, d_c, 5.0), rtol=0, atol=0)
    with pytest.raises(DiffsampleError, match="uncond_kwargs"):
        pag(base, cfg_scale=5.0, cond_kwargs=cond_kw)


def test_adaptive_scale_decays_with_the_timestep(families):
    model, _, _, shape = families["unet"]
    base = denoiser_of(model)
    guided = pag(base, 3.0, adaptive_scale=0.005)
    sigma = torch.tensor([0.05, 2.0, 80.0], dtype=torch.float64)
    t = base.network_inputs(sigma)[1]
    assert torch.equal(guided.scale_at(sigma), (3.0 - 0.005 * (1000.0 - t)).clamp_min(0.0))
    assert guided.scale_at(sigma)[0] == 0 and 0 < guided.scale_at(sigma)[2] < 3.0
    x = 0.05 * torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = guided(x, 0.05)  # scale 0 at this level for every sample: the perturbed call is skipped
    assert guided.nfe == 1 and torch.equal(out, base(x, 0.05))


# ------------------------------------------------------------------------------------------ SAG


def test_captured_map_is_the_softmax_and_leaves_the_output_unchanged(families):
    model, cond_kw, _, shape = families["dit"]
    guided = sag(denoiser_of(model), 0.75, cond_kwargs=cond_kw)
    attn = dict(model.named_modules())[guided.layer]
    seen = {}
    hook = attn.register_forward_pre_hook(lambda m, args, kwargs: seen.update(h=args[0]), with_kwargs=True)
    x, sigma = inputs(shape)
    try:
        with torch.no_grad():
            out, probs = guided.captured_branch(x, sigma, cond_kw)
            plain = denoiser_of(model)(x, sigma, **cond_kw)
    finally:
        hook.remove()
    h = seen["h"]
    q = attn.to_q(h).view(2, -1, 2, 8).transpose(1, 2)
    k = attn.to_k(h).view(2, -1, 2, 8).transpose(1, 2)
    want = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, dim=-1)
    torch.testing.assert_close(probs, want, rtol=0, atol=1e-6)
    torch.testing.assert_close(out, plain, rtol=0, atol=1e-6)


def test_degraded_input_matches_diffusers_sag_masking():
    sag_module = pytest.importorskip(
        "diffusers.pipelines.deprecated.stable_diffusion_sag.pipeline_stable_diffusion_sag",
        reason="diffusers' deprecated SAG pipeline is not importable here",
    )
    gen = torch.Generator().manual_seed(11)
    batch, heads, channels = 2, 4, 4
    probs = torch.softmax(3 * torch.randn(batch, heads, 16, 16, generator=gen), dim=-1)  # a 4×4 map
    x0, eps = torch.randn(batch, channels, 8, 8, generator=gen), torch.randn(batch, channels, 8, 8, generator=gen)
    scheduler = diffusers.DDPMScheduler()
    t = torch.tensor(500)
    alpha = float(scheduler.alphas_cumprod[500].sqrt())
    sigma = float((1 - scheduler.alphas_cumprod[500]).sqrt()) / alpha
    fake = types.SimpleNamespace(
        unet=types.SimpleNamespace(config=types.SimpleNamespace(attention_head_dim=heads)), scheduler=scheduler
    )
    want = sag_module.StableDiffusionSAGPipeline.sag_masking(fake, x0, probs.reshape(-1, 16, 16), (4, 4), t, eps)
    got = alpha * sag_degrade(x0 + sigma * eps, x0, probs)  # σ-space state, back to diffusers' x_t = α x
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    torch.testing.assert_close(gaussian_blur(x0), sag_module.gaussian_blur_2d(x0, 9, 1.0), rtol=0, atol=1e-6)
    mass = probs.mean(1).sum(1)
    assert 0 < int((mass > 1).sum()) < mass.numel()  # the mask is neither empty nor full


@pytest.mark.parametrize("family", ["unet", "dit"])
def test_sag_rule_costs_and_zero_scale(families, family):
    model, cond_kw, _, shape = families[family]
    x, sigma = inputs(shape)
    base = denoiser_of(model)
    guided = sag(base, 0.75, cond_kwargs=cond_kw)
    before = processors(model)
    with torch.no_grad():
        d, probs = guided.captured_branch(x, sigma, cond_kw)
        d_deg = base(sag_degrade(x, d, probs), sigma, **cond_kw)
        guided.reset_counter()
        out = guided(x, sigma)
        off = sag(base, 0.0, cond_kwargs=cond_kw)
        out_off = off(x, sigma)
    x_deg = sag_degrade(x, d, probs)
    eps, eps_deg = (x - d) / SIGMA, (x_deg - d_deg) / SIGMA  # the paper's rule on noise predictions
    torch.testing.assert_close(out, x - SIGMA * (eps + 0.75 * (eps - eps_deg)), rtol=0, atol=1e-5)
    assert (out - d).abs().max() > 1e-4
    assert (guided.nfe, guided.calls, guided.nfe_per_call) == (2, 2, 2)
    assert torch.equal(out_off, base(x, sigma, **cond_kw)) and off.nfe == 1
    assert processors(model) == before


def test_sag_with_cfg_guides_the_unconditional_branch(families):
    model, cond_kw, uncond_kw, shape = families["cond_unet"]
    x, sigma = inputs(shape)
    base = denoiser_of(model)
    guided = sag(base, 0.75, cfg_scale=4.0, cond_kwargs=cond_kw, uncond_kwargs=uncond_kw)
    with torch.no_grad():
        d_c = base(x, sigma, **cond_kw)
        d_u, probs = guided.captured_branch(x, sigma, uncond_kw)
        d_deg = base(sag_degrade(x, d_u, probs), sigma, **uncond_kw)
        guided.reset_counter()
        out = guided(x, sigma)
    eps_c, eps_u = (x - d_c) / SIGMA, (x - d_u) / SIGMA
    eps_deg = (sag_degrade(x, d_u, probs) - d_deg) / SIGMA
    want = x - SIGMA * (eps_u + 4.0 * (eps_c - eps_u) + 0.75 * (eps_u - eps_deg))  # diffusers' SAG pipeline rule
    torch.testing.assert_close(out, want, rtol=0, atol=1e-5)
    assert (guided.nfe, guided.calls) == (3, 3)


# ------------------------------------------------------------------------------------------ with solvers


@pytest.mark.parametrize("solver", ["dpmpp_2m", "dpmpp_2m_sde"])
@pytest.mark.parametrize("method", ["pag", "sag"])
def test_guidance_runs_unchanged_in_ode_multistep_and_sde_solvers(families, solver, method):
    model, cond_kw, _, shape = families["dit"]
    base = denoiser_of(model)
    build = pag if method == "pag" else sag
    sigmas = diffsample.steps.karras(4, 0.05, 10.0)
    z = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    before = processors(model)

    def run(scale: float) -> tuple[torch.Tensor, int]:
        guided = build(base, scale, cond_kwargs=cond_kw)
        with torch.no_grad():
            out = diffsample.sample(guided, 10.0 * z, sigmas, solver=solver, noise=diffsample.noise.seeded([1, 2]))
        return out, guided.nfe

    with torch.no_grad():
        plain = diffsample.sample(
            lambda x, s: base(x, s, **cond_kw), 10.0 * z, sigmas, solver=solver, noise=diffsample.noise.seeded([1, 2])
        )
    guided_out, nfe = run(1.0)
    off_out, off_nfe = run(0.0)
    assert torch.isfinite(guided_out).all() and (guided_out - plain).abs().max() > 1e-3
    assert torch.equal(off_out, plain)
    assert nfe == 2 * off_nfe  # every model evaluation of the walk costs two
    assert processors(model) == before


# ------------------------------------------------------------------------------------------ threads


def test_concurrent_walks_do_not_see_each_others_processors(families):
    model, cond_kw, _, shape = families["dit"]
    guided = pag(denoiser_of(model), 2.0, cond_kwargs=cond_kw)
    xs = [inputs(shape, seed)[0] for seed in range(4)]
    sigma = torch.full((2,), SIGMA)
    with torch.no_grad():
        want = [guided(x, sigma) for x in xs]
        got: dict[int, list[torch.Tensor]] = {}

        def walk(i: int) -> None:
            got[i] = [guided(xs[i], sigma) for _ in range(3)]

        threads = [threading.Thread(target=walk, args=(i,)) for i in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    for i in range(4):
        for out in got[i]:
            torch.testing.assert_close(out, want[i], rtol=0, atol=1e-6)
    # while processors are installed the model's lock is held: another thread cannot take it
    taken = []
    with installed(model, {guided.layers[0]: object()}):
        th = threading.Thread(target=lambda: taken.append(model_lock(model).acquire(blocking=False)))
        th.start()
        th.join()
    assert taken == [False] and model_lock(model).acquire(blocking=False)
    model_lock(model).release()


# ------------------------------------------------------------------------------------------ benchmark


@pytest.mark.slow
def test_benchmark_suite_counts_two_and_three_evaluations_per_step(capsys):
    from benchmarks.__main__ import main

    assert main(["guidance_attention", "--steps", "2", "--repeats", "1", "--size", "8"]) == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    nfe = {(r[0].strip(), r[1].strip()): r[2].strip() for r in rows[1:]}
    per_method = {
        "conditional": "1",
        "CFG": "2",
        "PAG": "2",
        "PAG + CFG": "3",
        "PAG + CFG, batched": "3",
        "SAG": "2",
        "SAG + CFG": "3",
    }
    assert len({family for family, _ in nfe}) == 4
    assert all(per_method[method] == value for (_, method), value in nfe.items())


def test_an_unguided_caller_in_another_thread_keeps_the_original_processors(families):
    from diffsample.integrations.attention_layers import identity_processor

    model, cond_kw, _, shape = families["cond_unet"]
    base = denoiser_of(model)
    guided = pag(base, 2.0, cond_kwargs=cond_kw)
    x, sigma = inputs(shape)
    modules = dict(model.named_modules())
    seen: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        plain, perturbed = base(x, sigma, **cond_kw), guided.perturbed_branch(x, sigma)
        with installed(model, {name: identity_processor(modules[name]) for name in guided.layers}):
            other = threading.Thread(target=lambda: seen.update(other=base(x, sigma, **cond_kw)))
            other.start()
            other.join()
            seen["here"] = base(x, sigma, **cond_kw)
    torch.testing.assert_close(seen["other"], plain, rtol=0, atol=0)  # no lock taken, still the plain network
    torch.testing.assert_close(seen["here"], perturbed, rtol=0, atol=0)
    assert (plain - perturbed).abs().max() > 1e-3


@pytest.mark.parametrize("family", ["unet", "cond_unet", "dit", "sd3"])
def test_batched_pag_is_one_call_with_the_same_result(families, family):
    model, cond_kw, uncond_kw, shape = families[family]
    base = denoiser_of(model)
    cfg = {"cfg_scale": 4.0, "uncond_kwargs": uncond_kw} if uncond_kw else {}
    x, sigma = inputs(shape)
    before = processors(model)
    with torch.no_grad():
        separate = pag(base, 2.0, cond_kwargs=cond_kw, **cfg)
        batched = pag(base, 2.0, cond_kwargs=cond_kw, batched=True, **cfg)
        want, got = separate(x, sigma), batched(x, sigma)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    branches = 3 if cfg else 2
    assert (separate.nfe, separate.calls) == (branches, branches)
    assert (batched.nfe, batched.calls, batched.network_calls_per_call) == (branches, 1, 1)
    assert processors(model) == before


def test_batched_branches_need_stackable_keywords(families):
    model, cond_kw, _, shape = families["cond_unet"]
    guided = pag(denoiser_of(model), 2.0, cfg_scale=3.0, cond_kwargs=cond_kw, uncond_kwargs={"foo": None}, batched=True)
    with pytest.raises(DiffsampleError, match="same keywords in every branch"):
        guided(*inputs(shape))


# ------------------------------------------------------------------------------------------ diffusers' pipelines


def pipeline_parts(seed: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """Prompt and negative-prompt embeddings, initial latents, and the components every SD pipeline takes."""
    gen = torch.Generator().manual_seed(seed)
    prompt, empty = torch.randn(2, 5, 16, generator=gen), torch.randn(2, 5, 16, generator=gen)
    z = torch.randn(2, 4, 8, 8, generator=gen)
    none = dict(
        vae=None, text_encoder=None, tokenizer=None, safety_checker=None, feature_extractor=None
    )  # latents in, latents out: no VAE or text encoder runs
    return prompt, empty, z, none


def test_pag_with_cfg_matches_diffusers_stable_diffusion_pag_pipeline():
    from diffsample.integrations import DiffsampleScheduler

    unet = tiny_cond_unet()
    prompt, empty, z, none = pipeline_parts()
    scheduler = DiffsampleScheduler.from_config(diffusers.DDPMScheduler(steps_offset=1).config, solver="euler")
    pipe = diffusers.StableDiffusionPAGPipeline(
        unet=unet, scheduler=scheduler, requires_safety_checker=False, pag_applied_layers="mid", **none
    )
    pipe.set_progress_bar_config(disable=True)
    want = pipe(
        prompt_embeds=prompt,
        negative_prompt_embeds=empty,
        height=64,
        width=64,
        num_inference_steps=10,
        guidance_scale=5.0,
        pag_scale=3.0,
        latents=z,
        output_type="latent",
    ).images
    den = load_diffusers_denoiser(unet, scheduler=scheduler)
    alpha0 = den.network_inputs(scheduler.sigmas[:1].to(torch.float64))[0].float()
    guided = pag(
        den,
        3.0,
        cfg_scale=5.0,
        cond_kwargs={"encoder_hidden_states": prompt},
        uncond_kwargs={"encoder_hidden_states": empty},
    )
    with torch.no_grad():
        got = diffsample.sample(guided, z * scheduler.init_noise_sigma / alpha0, scheduler.sigmas, solver="euler")
    scale = float(want.abs().max())
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5 * scale)


def test_sag_with_cfg_matches_diffusers_stable_diffusion_sag_pipeline():
    sag_module = pytest.importorskip(
        "diffusers.pipelines.deprecated.stable_diffusion_sag.pipeline_stable_diffusion_sag",
        reason="diffusers' deprecated SAG pipeline is not importable here",
    )
    unet = tiny_cond_unet()
    prompt, empty, z, none = pipeline_parts()
    scheduler = diffusers.DDIMScheduler(set_alpha_to_one=True, clip_sample=False)
    pipe = sag_module.StableDiffusionSAGPipeline(unet=unet, scheduler=scheduler, requires_safety_checker=False, **none)
    pipe.set_progress_bar_config(disable=True)
    want = pipe(
        prompt_embeds=prompt,
        negative_prompt_embeds=empty,
        height=64,
        width=64,
        num_inference_steps=10,
        guidance_scale=5.0,
        sag_scale=0.75,
        latents=z,
        output_type="latent",
    ).images
    abar = scheduler.alphas_cumprod.to(torch.float64)[scheduler.timesteps]  # DDIM's levels, then σ = 0
    levels = torch.cat([((1 - abar) / abar).sqrt(), torch.zeros(1, dtype=torch.float64)])
    den = load_diffusers_denoiser(unet, scheduler=scheduler)
    guided = sag(
        den,
        0.75,
        cfg_scale=5.0,
        cond_kwargs={"encoder_hidden_states": prompt},
        uncond_kwargs={"encoder_hidden_states": empty},
    )
    with torch.no_grad():
        got = diffsample.sample(guided, z / float(abar[0].sqrt()), levels, solver="ddim")
    scale = float(want.abs().max())
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5 * scale)
