"""DiffsampleScheduler against diffusers' own schedulers in tiny pipelines, on the same noise levels.

Each row is a pipeline loop written as diffusers' pipelines write it (``init_noise_sigma``,
``scale_model_input``, ``step``; CFG as StableDiffusionPipeline does it; img2img with ``add_noise`` and
``set_begin_index``; flow as StableDiffusion3Pipeline does it), with a tiny randomly initialised network.
Each column pairs a diffsample solver with the diffusers scheduler that implements the same method.
Both schedulers get the same levels: the diffusers scheduler's own (Stable Diffusion's table and
``"leading"`` integer timesteps, where diffusers' Euler starts from ``sqrt(σ² + 1)·z`` as a VP sample does;
flow: its shifted sigmas, passed to a ``shift=1`` DiffsampleScheduler).
The figure is ``max |ours − diffusers|`` of the final latents. Where the pair is the same method on the
same levels it is float32 rounding; in the flow row, diffusers' Heun is Heun in ``t`` (here: in σ, after
an Euler step out of pure noise), and its flow DPM-Solver/UniPC call the network at integer-truncated
timesteps (with a network blind to ``t`` those two agree to rounding too).

Run ``python tests/integrations/diffusers_matrix.py`` to print the table (needs diffusers; a minute on one core).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

STEPS = 10
GUIDANCE = 7.5
STRENGTH = 0.6
SEED = 3

TABLE_PEERS: dict[str, tuple[str, dict[str, Any]]] = {
    "euler": ("EulerDiscreteScheduler", {}),
    "ddim": ("DDIMScheduler", {"set_alpha_to_one": True, "clip_sample": False}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "unipc": ("UniPCMultistepScheduler", {"solver_order": 2}),
}
"""diffsample solver → diffusers scheduler (on a DDPM table) running the same method."""

FLOW_PEERS: dict[str, tuple[str, dict[str, Any]]] = {
    "euler": ("FlowMatchEulerDiscreteScheduler", {"shift": 3.0}),
    "heun": ("FlowMatchHeunDiscreteScheduler", {"shift": 3.0}),
    "dpmpp_2m": (
        "DPMSolverMultistepScheduler",
        {"use_flow_sigmas": True, "prediction_type": "flow_prediction", "flow_shift": 3.0, "solver_order": 2},
    ),
    "unipc": (
        "UniPCMultistepScheduler",
        {"use_flow_sigmas": True, "prediction_type": "flow_prediction", "flow_shift": 3.0, "solver_order": 2},
    ),
}
"""diffsample solver → diffusers flow-matching scheduler running the same method."""


@dataclass
class Row:
    """A tiny pipeline: its network call ``model(latents, t)``, latent shape, and whether it is flow / img2img."""

    name: str
    model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    shape: tuple[int, ...]
    flow: bool = False
    img2img: bool = False


def tiny_unet(
    seed: int = 0,
    in_channels: int = 1,
    out_channels: int | None = None,
    num_class_embeds: int | None = None,
    **options: Any,
) -> torch.nn.Module:
    """The tiny random 8×8 UNet every diffusers test here runs (seeded, eval mode); ``options`` go to
    ``UNet2DModel`` (e.g. ``add_attention=False``)."""
    import diffusers

    torch.manual_seed(seed)
    return diffusers.UNet2DModel(
        sample_size=8,
        in_channels=in_channels,
        out_channels=out_channels or in_channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        num_class_embeds=num_class_embeds,
        **options,
    ).eval()


def tiny_cond_unet(seed: int = 1) -> torch.nn.Module:
    """The tiny random 8×8 text-conditioned UNet (UNet2DConditionModel, cross-attention dim 16), eval mode."""
    import diffusers

    torch.manual_seed(seed)
    return diffusers.UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        norm_num_groups=4,
        attention_head_dim=4,
    ).eval()


def rows() -> list[Row]:
    """The four pipelines: unconditional DDPM-style, SD-style with CFG, img2img, SD3-style flow."""
    import diffusers

    unet = tiny_unet()
    cond_unet = tiny_cond_unet()
    gen = torch.Generator().manual_seed(2)
    prompt, empty = torch.randn(2, 5, 16, generator=gen), torch.randn(2, 5, 16, generator=gen)

    def cfg(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # StableDiffusionPipeline's guidance
        out = cond_unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([empty, prompt])).sample
        uncond, cond = out.chunk(2)
        return uncond + GUIDANCE * (cond - uncond)

    torch.manual_seed(4)
    transformer = diffusers.SD3Transformer2DModel(
        sample_size=8,
        patch_size=2,
        in_channels=4,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=16,
        caption_projection_dim=16,
        pooled_projection_dim=8,
        out_channels=4,
    ).eval()
    text, pooled = torch.randn(2, 5, 16, generator=gen), torch.randn(2, 8, generator=gen)

    def sd3(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # StableDiffusion3Pipeline's call
        return transformer(
            hidden_states=x, timestep=t.expand(x.shape[0]), encoder_hidden_states=text, pooled_projections=pooled
        ).sample

    return [
        Row("unconditional (DDPM UNet)", lambda x, t: unet(x, t).sample, (2, 1, 8, 8)),
        Row("SD-style + CFG 7.5", cfg, (2, 4, 8, 8)),
        Row(f"img2img (strength {STRENGTH})", lambda x, t: unet(x, t).sample, (2, 1, 8, 8), img2img=True),
        Row("SD3-style flow (shift 3)", sd3, (2, 4, 8, 8), flow=True),
    ]


def peer_scheduler(solver: str, flow: bool) -> Any:
    import diffusers

    name, options = (FLOW_PEERS if flow else TABLE_PEERS)[solver]
    if not flow:
        options = {
            "timestep_spacing": "leading",
            "steps_offset": 1,
            "beta_schedule": "scaled_linear",
            "beta_start": 0.00085,
            "beta_end": 0.012,
            **options,
        }  # Stable Diffusion's table and spacing
    return getattr(diffusers, name)(**options)


def ours_on_the_same_levels(solver: str, peer: Any, flow: bool) -> Any:
    """A DiffsampleScheduler from the peer's config whose ``set_timesteps`` uses the peer's levels."""
    from diffsample.integrations import DiffsampleScheduler

    peer.set_timesteps(STEPS)
    if flow:
        ours = DiffsampleScheduler.from_config(peer.config, solver=solver, shift=1.0)
        levels = torch.unique_consecutive(peer.sigmas.to(torch.float64))  # flow t, already shifted
    else:
        ours = DiffsampleScheduler.from_config(peer.config, solver=solver)
        if hasattr(peer, "sigmas"):
            levels = torch.unique_consecutive(peer.sigmas.to(torch.float64))
        else:  # DDIM: the table's σ at its timesteps
            abar = peer.alphas_cumprod.to(torch.float64)[peer.timesteps]
            levels = ((1 - abar) / abar).sqrt()
    levels = levels[levels > 0].tolist()
    set_timesteps = ours.set_timesteps
    ours.set_timesteps = lambda num_inference_steps=None, device=None, **kw: set_timesteps(sigmas=levels, device=device)
    return ours


def run(row: Row, scheduler: Any) -> torch.Tensor:
    """The pipeline loop; returns the final latents."""
    gen = torch.Generator().manual_seed(SEED)
    z = torch.randn(row.shape, generator=gen)
    scheduler.set_timesteps(STEPS)
    timesteps = scheduler.timesteps
    if row.img2img:
        image = torch.randn(row.shape, generator=gen).clamp(-1, 1)
        t_start = STEPS - int(STEPS * STRENGTH)
        timesteps = timesteps[t_start * scheduler.order :]
        if hasattr(scheduler, "set_begin_index"):  # as StableDiffusionImg2ImgPipeline does
            scheduler.set_begin_index(t_start * scheduler.order)
        latents = scheduler.add_noise(image, z, timesteps[:1])
    else:
        latents = z * getattr(scheduler, "init_noise_sigma", 1.0)  # flow schedulers have none (1)
    scale = getattr(scheduler, "scale_model_input", lambda x, t: x)
    with torch.no_grad():
        for t in timesteps:
            out = row.model(scale(latents, t), t)
            latents = scheduler.step(out, t, latents).prev_sample
    return latents


def difference(row: Row, solver: str) -> tuple[float, float]:
    """``(max |ours − diffusers|, max |diffusers|)`` of the final latents."""
    peer = peer_scheduler(solver, row.flow)
    ours = ours_on_the_same_levels(solver, peer, row.flow)
    want = run(row, peer)
    got = run(row, ours)
    return float((got - want).abs().max()), float(want.abs().max())


def table() -> str:
    """The markdown table of max differences, pipeline × solver."""
    solvers = list(TABLE_PEERS)
    heads = [f"{s} ↔ {TABLE_PEERS[s][0].removesuffix('Scheduler')}" for s in solvers]
    lines = ["| pipeline | " + " | ".join(heads) + " |", "|---" * (len(solvers) + 1) + "|"]
    for row in rows():
        cells = []
        for s in solvers:
            if row.flow and s not in FLOW_PEERS:
                cells.append("—")
                continue
            diff, scale = difference(row, s)
            peer = FLOW_PEERS[s][0].removesuffix("Scheduler") if row.flow else ""
            cells.append(f"{diff:.1e} (of {scale:.2g}){' ↔ ' + peer if peer else ''}")
        lines.append(f"| {row.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
