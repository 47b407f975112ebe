"""Every diffsample solver with k-diffusion's (and ComfyUI's) sampler signature.

`sample_<name>(model, x, sigmas, extra_args=None, callback=None, disable=None, **options)`, where `model(x, sigma,
**extra_args)` returns the denoised sample: the functions drop into code written for `k_diffusion.sampling`.
Run: `python examples/kdiffusion_function_api.py`.
"""

from __future__ import annotations

import torch

from diffsample.integrations import kdiffusion_api as K
from diffsample.testbeds import get_bed


def main() -> None:
    bed = get_bed("ring2d")  # an exact denoiser (8 Gaussians on the unit circle) standing in for a k-diffusion model

    def model(x: torch.Tensor, sigma: torch.Tensor, **extra_args: object) -> torch.Tensor:
        return bed(x, sigma)

    sigmas = torch.cat(
        [torch.exp(torch.linspace(torch.log(torch.tensor(80.0)), torch.log(torch.tensor(0.002)), 10)), torch.zeros(1)]
    )
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    steps: list[int] = []
    for name in ("sample_euler", "sample_dpmpp_2m", "sample_unipc", "sample_dpmpp_2m_sde"):
        sampler = getattr(K, name)
        extra = {"seed": 0} if name.endswith("_sde") else {}  # stochastic: one seeded noise stream per sample
        out = sampler(model, x, sigmas, disable=True, callback=lambda info: steps.append(info["i"]), **extra)
        radius = out.norm(dim=1)
        print(f"{name:<22} |x| in [{radius.min():.3f}, {radius.max():.3f}] (the ring has radius 1)")
    print(f"callback saw {len(steps)} steps in all")


if __name__ == "__main__":
    main()
