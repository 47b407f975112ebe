"""Cost of attention-perturbation guidance (PAG, SAG) per model family: NFE, wall time vs CFG, processor overhead.

``python -m benchmarks guidance_attention --steps 10 --repeats 5 --size 16 --batch 2``.

For each diffusers family (class-conditional UNet2DModel, text-conditional UNet2DConditionModel, DiT, SD3's
joint-attention transformer), randomly initialised at a small size, one Euler walk of ``--steps`` steps per
method: the plain conditional model, CFG, PAG, PAG + CFG (three calls, and one batched call), SAG, SAG + CFG
(not on SD3's joint attention). Columns: model evaluations and network calls per step (counted by the guided
denoiser), wall time per step (best of ``--repeats`` interleaved rounds after an untimed warm-up walk), its ratio
to CFG's, the time per model evaluation relative to the plain model's (the cost of swapping processors and of
SAG's map and blur), and how far the final sample moves from the same walk without the attention guidance
(relative L2; PAG/SAG vs the conditional model, + CFG vs CFG). The networks are random, so the moved distance
only shows that the guidance acts: no sample-quality claim can be made here.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

import diffsample
from diffsample.cli import positive_int

__all__ = ["add_arguments", "run"]

PAG_SCALE = 3.0
SAG_SCALE = 0.75
CFG_SCALE = 5.0


@dataclass
class Family:
    """A random diffusers network, its conditional / unconditional keywords and latent channels."""

    name: str
    model: torch.nn.Module
    cond: dict[str, Any]
    uncond: dict[str, Any]
    channels: int
    joint: bool = False


def families(size: int, batch: int) -> list[Family]:
    import diffusers

    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=size,
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        num_class_embeds=11,
    ).eval()
    torch.manual_seed(1)
    cond_unet = diffusers.UNet2DConditionModel(
        sample_size=size,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=8,
        attention_head_dim=8,
    ).eval()
    torch.manual_seed(2)
    dit = diffusers.DiTTransformer2DModel(
        num_attention_heads=4,
        attention_head_dim=16,
        in_channels=4,
        out_channels=4,
        num_layers=6,
        sample_size=size,
        patch_size=2,
        num_embeds_ada_norm=10,
    ).eval()
    torch.manual_seed(3)
    sd3 = diffusers.SD3Transformer2DModel(
        sample_size=size,
        patch_size=2,
        in_channels=4,
        num_layers=6,
        attention_head_dim=16,
        num_attention_heads=4,
        joint_attention_dim=32,
        caption_projection_dim=64,
        pooled_projection_dim=16,
        out_channels=4,
    ).eval()
    labels = torch.arange(batch) % 10
    prompt, empty = torch.randn(batch, 8, 32, generator=gen), torch.randn(batch, 8, 32, generator=gen)
    pooled = torch.randn(batch, 16, generator=gen)
    return [
        Family("UNet2DModel (class)", unet, {"class_labels": labels}, {"class_labels": torch.full((batch,), 10)}, 3),
        Family(
            "UNet2DConditionModel (text)",
            cond_unet,
            {"encoder_hidden_states": prompt},
            {"encoder_hidden_states": empty},
            4,
        ),
        Family("DiT (class)", dit, {"class_labels": labels}, {"class_labels": torch.full((batch,), 10)}, 4),
        Family(
            "SD3Transformer2DModel (text, flow)",
            sd3,
            {"encoder_hidden_states": prompt, "pooled_projections": pooled},
            {"encoder_hidden_states": empty, "pooled_projections": torch.zeros(batch, 16)},
            4,
            joint=True,
        ),
    ]


def methods(family: Family) -> dict[str, tuple[Callable[[Any], Any], str | None]]:
    """method -> (builder from the plain denoiser, the method whose walk it is compared against)."""
    from diffsample.integrations import pag, sag
    from diffsample.transforms import cfg

    cond, uncond = family.cond, family.uncond
    table = {
        "conditional": (lambda d: cfg(d, 1.0, cond_kwargs=cond), None),
        "CFG": (lambda d: cfg(d, CFG_SCALE, cond_kwargs=cond, uncond_kwargs=uncond), None),
        "PAG": (lambda d: pag(d, PAG_SCALE, cond_kwargs=cond), "conditional"),
        "PAG + CFG": (
            lambda d: pag(d, PAG_SCALE, cfg_scale=CFG_SCALE, cond_kwargs=cond, uncond_kwargs=uncond),
            "CFG",
        ),
        "PAG + CFG, batched": (
            lambda d: pag(d, PAG_SCALE, cfg_scale=CFG_SCALE, cond_kwargs=cond, uncond_kwargs=uncond, batched=True),
            "CFG",
        ),
        "SAG": (lambda d: sag(d, SAG_SCALE, cond_kwargs=cond), "conditional"),
        "SAG + CFG": (
            lambda d: sag(d, SAG_SCALE, cfg_scale=CFG_SCALE, cond_kwargs=cond, uncond_kwargs=uncond),
            "CFG",
        ),
    }
    if family.joint:  # SAG reads an image self-attention map: not defined on joint image-text attention
        table = {name: entry for name, entry in table.items() if not name.startswith("SAG")}
    return table


def measure(family: Family, steps: int, repeats: int, size: int, batch: int) -> list[dict[str, Any]]:
    """One row per method; walks are timed in interleaved rounds (every method once per round, best kept), so
    a change in machine load hits every method alike."""
    import diffusers

    from diffsample.integrations import load_diffusers_denoiser

    flow = isinstance(family.model, diffusers.SD3Transformer2DModel)
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler() if flow else diffusers.DDPMScheduler()
    base = load_diffusers_denoiser(family.model, scheduler=scheduler)
    sigmas = diffsample.steps.karras(steps, 0.03, 14.6)
    x = sigmas[0] * torch.randn(batch, family.channels, size, size, generator=torch.Generator().manual_seed(1))
    table = methods(family)
    guided = {name: build(base) for name, (build, _) in table.items()}
    finals: dict[str, torch.Tensor] = {}
    nfe: dict[str, int] = {}
    calls: dict[str, int] = {}
    best = dict.fromkeys(table, float("inf"))
    with torch.no_grad():
        for name, denoiser in guided.items():  # untimed warm-up walk: the final sample and the count
            denoiser.reset_counter()
            finals[name] = diffsample.sample(denoiser, x, sigmas, solver="euler")
            nfe[name] = denoiser.nfe
            calls[name] = denoiser.calls
        for _ in range(repeats):
            for name, denoiser in guided.items():
                start = time.perf_counter()
                diffsample.sample(denoiser, x, sigmas, solver="euler")
                best[name] = min(best[name], time.perf_counter() - start)
    per_nfe_plain = best["conditional"] / nfe["conditional"]
    rows = []
    for name, (_, against) in table.items():
        moved = None
        if against is not None:
            moved = float((finals[name] - finals[against]).norm() / finals[against].norm())
        rows.append(
            {
                "method": name,
                "nfe": nfe[name] / steps,  # Euler: one denoiser call per step
                "calls": calls[name] / steps,
                "ms": 1e3 * best[name] / steps,
                "vs_cfg": best[name] / best["CFG"],
                "per_nfe": (best[name] / nfe[name]) / per_nfe_plain,
                "moved": moved,
            }
        )
    return rows


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=positive_int, default=10, help="Euler steps per walk")
    p.add_argument("--repeats", type=positive_int, default=5, help="interleaved timing rounds (best is kept)")
    p.add_argument("--size", type=positive_int, default=16, help="latent height = width")
    p.add_argument("--batch", type=positive_int, default=2)
    p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    print(
        f"attention guidance cost, Euler {args.steps} steps, batch {args.batch}, {args.size}×{args.size} latents, "
        f"random networks, best of {args.repeats} interleaved rounds ({torch.get_num_threads()} CPU thread(s)); "
        f"PAG s={PAG_SCALE}, SAG s={SAG_SCALE}, CFG w={CFG_SCALE}"
    )
    print("| family | method | NFE/step | calls/step | ms/step | × CFG time | time/NFE × plain | moved (rel. L2) |")
    print("|---|---|---|---|---|---|---|---|")
    for family in families(args.size, args.batch):
        for r in measure(family, args.steps, args.repeats, args.size, args.batch):
            moved = "—" if r["moved"] is None else f"{r['moved']:.3f}"
            print(
                f"| {family.name} | {r['method']} | {r['nfe']:.0f} | {r['calls']:.0f} | {r['ms']:.1f} | "
                f"{r['vs_cfg']:.2f} | {r['per_nfe']:.2f} | {moved} |"
            )
    print("moved: relative L2 distance of the final sample from the same walk without the attention guidance")
    print("(PAG/SAG vs conditional, + CFG vs CFG); random networks, so no quality claim is possible.")
    return 0
