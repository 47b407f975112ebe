"""Sample a diffusers model with diffsample: as a σ-space denoiser, and as a drop-in pipeline scheduler.

Runs offline: it builds a tiny randomly initialised UNet and saves it as a local pipeline folder, which is
what `load_diffusers_denoiser` reads for a real checkpoint (pass that folder instead). Needs the peers
(`bash scripts/setup.sh test`). Run: `python examples/sample_diffusers_model.py [PIPELINE_DIR]`.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

import diffsample as ds
from diffsample.integrations import DiffsampleScheduler, load_diffusers_denoiser


def tiny_pipeline(folder: Path) -> Path:
    """A DDPM pipeline with an untrained 8×8 UNet, saved like any downloaded checkpoint."""
    import diffusers

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
    )
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler()).save_pretrained(folder)
    return folder


def main(pipeline_dir: str | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(pipeline_dir) if pipeline_dir else tiny_pipeline(Path(tmp) / "tiny-ddpm")

        # 1. The model as a denoiser D(x, σ) -> x̂0: any solver, any step schedule, an exact NFE count.
        denoiser = load_diffusers_denoiser(folder)
        sigma_max, sigma_min = float(denoiser.noise_schedule.sigma_max), float(denoiser.noise_schedule.sigma_min)
        x = ds.noise.seeded(range(4)).initial((4, 1, 8, 8), sigma_max)  # sample i has its own noise stream
        out = ds.generate(denoiser, x, nfe=10, sigma_min=sigma_min, sigma_max=sigma_max)
        print(f"generate: {denoiser.nfe} model calls, samples {tuple(out.shape)}, σ {sigma_max:.4g} → 0")

        sigmas = ds.steps.karras(8, sigma_min, sigma_max)
        out = ds.sample(denoiser, x, sigmas, solver="unipc")
        print(f"unipc on 8 Karras steps: range [{out.min():.3f}, {out.max():.3f}]")

        # 2. The same solvers inside an unmodified diffusers pipeline: a one-line scheduler swap.
        import diffusers

        pipe = diffusers.DDPMPipeline.from_pretrained(folder)
        pipe.scheduler = DiffsampleScheduler.from_config(pipe.scheduler.config, solver="dpmpp_2m")
        images = pipe(
            batch_size=2, num_inference_steps=10, generator=torch.Generator().manual_seed(0), output_type="np"
        ).images
        print(f"DDPMPipeline with DiffsampleScheduler(dpmpp_2m): images {images.shape}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
