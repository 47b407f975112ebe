"""Perturbed-attention (PAG) and self-attention (SAG) guidance of a diffusers network, with any diffsample solver.

Runs offline on a tiny randomly initialised text-conditional UNet (so the samples are noise: this shows the
API and the cost, not image quality). With a real Stable Diffusion checkpoint, build the denoiser from the
pipeline and the prompt embeddings from its text encoder instead:

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(folder, local_files_only=True)
    cond, uncond = pipe.encode_prompt("a photo of a cat", "cpu", 2, True)  # 2 samples per prompt
    denoiser = load_diffusers_denoiser(pipe)

Needs the peers (`bash scripts/setup.sh test`). Run: `python examples/attention_guidance.py`.
"""

from __future__ import annotations

import torch

import diffsample as ds
from diffsample.integrations import load_diffusers_denoiser, pag, sag, self_attention_layers


def tiny_text_unet() -> torch.nn.Module:
    import diffusers

    torch.manual_seed(0)
    return diffusers.UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=4,
        attention_head_dim=8,
    ).eval()


def main() -> None:
    import diffusers

    unet = tiny_text_unet()
    denoiser = load_diffusers_denoiser(unet, scheduler=diffusers.DDPMScheduler())
    gen = torch.Generator().manual_seed(0)
    cond, uncond = torch.randn(2, 8, 32, generator=gen), torch.randn(2, 8, 32, generator=gen)  # prompt embeddings
    print("self-attention layers:", ", ".join(self_attention_layers(unet)))

    # PAG on top of CFG: three branches (uncond, cond, cond with identity self-attention in the mid block).
    guided_pag = pag(
        denoiser,
        3.0,
        cfg_scale=7.5,
        cond_kwargs={"encoder_hidden_states": cond},
        uncond_kwargs={"encoder_hidden_states": uncond},
    )
    # SAG on top of CFG: blurs x̂0 where the mid block's self-attention concentrates, on the unconditional branch.
    guided_sag = sag(
        denoiser,
        0.75,
        cfg_scale=7.5,
        cond_kwargs={"encoder_hidden_states": cond},
        uncond_kwargs={"encoder_hidden_states": uncond},
    )
    sigmas = ds.steps.karras(10, 0.03, 14.6)
    x = ds.noise.seeded([0, 1]).initial((2, 4, 8, 8), float(sigmas[0]))
    for name, guided in (("PAG", guided_pag), ("SAG", guided_sag)):
        print(f"{name} on layer(s) {getattr(guided, 'layers', None) or guided.layer}")
        for solver in ("dpmpp_2m", "dpmpp_2m_sde"):  # an ODE multistep solver and an SDE solver, unchanged
            guided.reset_counter()
            with torch.no_grad():
                out = ds.sample(guided, x, sigmas, solver=solver, noise=ds.noise.seeded([0, 1]))
            print(f"  {solver}: {guided.nfe} model evaluations for 10 steps, samples {tuple(out.shape)}")


if __name__ == "__main__":
    main()
