"""Train the shipped 8×8-digits diffusion models (unconditional and class-conditional) and measure them.

Usage::

    python scripts/train_digits.py --variant unconditional          # train, save, evaluate
    python scripts/train_digits.py --variant conditional
    python scripts/train_digits.py --variant conditional --eval-only  # re-measure the shipped weights
    python scripts/train_digits.py --variant conditional --model-variant weak \
        --width 96 --blocks 2 --emb-dim 64 --steps 400                 # the weak model autoguidance uses
    python scripts/train_digits.py --variant unconditional --model-variant sd \
        --max-minutes 10                                                # a VP-ε unit on Stable Diffusion's table
    python scripts/train_digits.py --variant unconditional --model-variant sd16 \
        --steps 15000 --max-minutes 10                                  # the same on 16×16 images (digits16_data)
    python scripts/train_digits.py --variant unconditional --model-variant sd16_small --width 256 --blocks 3 \
        --emb-dim 96 --seed 2 --steps 15000 --max-minutes 10            # a third SD-table unit (16×16)
    python scripts/train_digits.py --variant unconditional --model-variant holdout --width 256 --blocks 3 \
        --emb-dim 96 --seed 1 --max-minutes 10                          # held-out networks of the defaults' figures
    python scripts/train_digits.py --variant conditional --model-variant sd_holdout --width 256 --blocks 3 \
        --emb-dim 96 --seed 1 --max-minutes 10

Model: :class:`diffsample.models.network.VPEpsNetwork` around a :class:`DigitsMLP` core, i.e. an
ε-prediction network on diffusers' default DDPM table (linear β 1e-4 → 0.02, 1000 steps) whose core
is trained with EDM's preconditioning, target and loss weighting (Karras et al. 2022, §5 and Table 1):

    L = E_{x0, σ, n} λ(σ) |D(x0 + σ n, σ) − x0|²,   λ(σ) = (σ² + σ_d²)/(σ σ_d)²,

σ_d the data's standard deviation. The noise level is drawn from EDM's log-normal
``ln σ ~ N(P_mean, P_std²)`` truncated to the table's span [σ(0), σ(999)] = [0.01, 157.4], mixed with
a fraction ``--p-uniform`` of log-uniform levels over that span, so the whole range the ε interface
serves (in particular the top of the table, which EDM's log-normal almost never visits) is trained.
The conditional variant drops labels to the null label (10) with probability ``--label-dropout``.
``--model-variant weak`` writes ``digits_cond_weak`` instead (same recipe and data, the size and step
count given on the command line): the deliberately worse model of autoguidance (Karras et al. 2024).

Adam with linear warm-up and cosine decay to 10 %, an exponential moving average (EMA) of the
weights, seeded data order and noise; one thread (fastest on a shared 2-core machine: run the two
variants as two processes). Writes ``<name>.safetensors`` (the EMA core's weights in float16)
and ``<name>.json`` (architecture, schedule, parameterisation, data statistics, training record and,
after evaluation, the Fréchet distances) to ``src/diffsample/models/weights/``.

Evaluation: ``--eval-samples`` draws with Heun on ``karras(--eval-steps, σ_min, σ_max)`` of the table,
their Fréchet distance (:func:`diffsample.models.frechet_distance`) to all 1797 digits, and for the
conditional model class accuracy and FD at each guidance weight of ``--eval-guidance``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import torch
from _diffusion_training import optimise, progress_and_lr, update_ema

import diffsample
from diffsample.files import atomic_write_text
from diffsample.models import NULL_LABEL, class_accuracy, frechet_distance, real_halves
from diffsample.models._io import save_safetensors
from diffsample.models.data import DATA_SOURCES, TRAINING_DATA, training_data
from diffsample.models.digits import MODEL_VARIANTS, WEIGHTS, load_digits_model, model_name
from diffsample.models.network import DigitsMLP, VPEpsNetwork
from diffsample.schedules import DiscreteVP

NAMES = {"unconditional": "digits_uncond", "conditional": "digits_cond"}

VARIANT_DEFAULTS: dict[str, tuple[str, str]] = {
    "default": ("linear", "digits"),
    "weak": ("linear", "digits"),
    "sd": ("scaled_linear", "digits"),
    "sd16": ("scaled_linear", "digits16"),
    "sd16_small": ("scaled_linear", "digits16"),
    "holdout": ("linear", "digits"),
    "sd_holdout": ("scaled_linear", "digits"),
}
"""Per ``--model-variant`` (:data:`MODEL_VARIANTS`): its default VP table (``--beta-schedule``; ``scaled_linear`` is
Stable Diffusion's, ``linear`` DDPM's) and training data (``--data``)."""


def output_name(args: argparse.Namespace) -> str:
    """The weight-set name the run writes: ``(--variant, --model-variant)`` in :data:`MODEL_VARIANTS`."""
    return model_name(args.variant == "conditional", args.model_variant)


def sample_log_sigma(n: int, args: argparse.Namespace, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    """``ln σ``: truncated N(P_mean, P_std²) on [lo, hi] by inverse CDF, a fraction p_uniform uniform on [lo, hi]."""
    normal = torch.distributions.Normal(
        torch.tensor(args.p_mean, dtype=torch.float64), torch.tensor(args.p_std, dtype=torch.float64)
    )
    c_lo, c_hi = normal.cdf(torch.tensor(lo, dtype=torch.float64)), normal.cdf(torch.tensor(hi, dtype=torch.float64))
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    lognormal = normal.icdf(c_lo + (c_hi - c_lo) * u).clamp(lo, hi)
    uniform = lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)
    pick = torch.rand(n, generator=gen) < args.p_uniform
    return torch.where(pick, uniform, lognormal)


def edm_loss(
    net: VPEpsNetwork, x0: torch.Tensor, log_sigma: torch.Tensor, noise: torch.Tensor, labels: torch.Tensor | None
) -> torch.Tensor:
    """Per-sample EDM loss ``λ(σ) mean |D(x0 + σ n, σ) − x0|²`` (equal to ``mean |F − F_target|²``)."""
    sigma = log_sigma.exp()
    s = sigma.to(x0.dtype)[:, None, None, None]
    denoised = net.denoise(x0 + s * noise, sigma, class_labels=labels)
    weight = ((sigma**2 + net.sigma_data**2) / (sigma * net.sigma_data) ** 2).to(x0.dtype)
    return weight * (denoised - x0).pow(2).mean(dim=(1, 2, 3))


def build(args: argparse.Namespace, conditional: bool, sigma_data: float, image_shape: tuple[int, ...]) -> VPEpsNetwork:
    core = DigitsMLP(
        args.width,
        args.blocks,
        10 if conditional else 0,
        image_shape=image_shape,
        emb_dim=args.emb_dim,
        time_scale=args.time_scale,
    )
    return VPEpsNetwork(core, DiscreteVP(beta_schedule=args.beta_schedule), sigma_data)


@torch.no_grad()
def fixed_loss(
    net: VPEpsNetwork, x: torch.Tensor, y: torch.Tensor | None, args: argparse.Namespace, conditional: bool
) -> float:
    """The EMA model's loss on all digits × 4 fixed noise draws (seed 12345): a reproducible final loss."""
    gen = torch.Generator().manual_seed(12345)
    sched = net.noise_schedule
    lo, hi = math.log(sched.sigma_min), math.log(sched.sigma_max)
    total, count = 0.0, 0
    for _ in range(4):
        for i in range(0, x.shape[0], 512):
            x0 = x[i : i + 512]
            ls = sample_log_sigma(x0.shape[0], args, lo, hi, gen)
            noise = torch.randn(x0.shape, generator=gen)
            labels = y[i : i + 512] if conditional and y is not None else None
            total += float(edm_loss(net, x0, ls, noise, labels).sum())
            count += x0.shape[0]
    return total / count


def train(args: argparse.Namespace, variant: str) -> dict[str, Any]:
    conditional = variant == "conditional"
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    x, y = training_data(args.data)
    data_std = float(x.std())
    sigma_data = round(data_std, 2) if args.sigma_data is None else args.sigma_data
    net = build(args, conditional, sigma_data, tuple(x.shape[1:]))
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    sched = net.noise_schedule
    lo, hi = math.log(sched.sigma_min), math.log(sched.sigma_max)
    n_params = sum(p.numel() for p in net.parameters())
    print(
        f"[{variant}] DigitsMLP {n_params} parameters, σ_data={sigma_data} (measured std {data_std:.4f}), "
        f"{args.steps} steps of batch {args.batch_size}",
        flush=True,
    )
    start = time.perf_counter()
    running = None
    steps_done = 0
    for step in range(args.steps):
        idx = torch.randint(0, x.shape[0], (args.batch_size,), generator=gen)
        x0 = x[idx]
        labels = None
        if conditional:
            drop = torch.rand(args.batch_size, generator=gen) < args.label_dropout
            labels = torch.where(drop, torch.full_like(y[idx], NULL_LABEL), y[idx])
        log_sigma = sample_log_sigma(args.batch_size, args, lo, hi, gen)
        noise = torch.randn(x0.shape, generator=gen)
        loss = edm_loss(net, x0, log_sigma, noise, labels).mean()
        # training stops at --steps or --max-minutes, whichever comes first; the LR follows the same progress
        _, lr = progress_and_lr(args, step, start)
        optimise(opt, loss, lr)
        update_ema(ema, net, step, args.ema_decay)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        steps_done = step + 1
        elapsed = time.perf_counter() - start
        if steps_done % args.log_every == 0 or steps_done == args.steps:
            print(
                f"[{variant}] step {steps_done:5d}  loss(avg) {running:.4f}  lr {lr:.2e}  {elapsed:6.0f}s", flush=True
            )
        if elapsed >= 60 * args.max_minutes:
            print(f"[{variant}] time limit of {args.max_minutes} min reached at step {steps_done}", flush=True)
            break
    seconds = time.perf_counter() - start
    final = fixed_loss(ema, x, y, args, conditional)
    print(f"[{variant}] trained {steps_done} steps in {seconds:.0f}s; EMA loss on fixed draws {final:.4f}", flush=True)
    name = output_name(args)
    args.out.mkdir(parents=True, exist_ok=True)
    state = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in ema.core.state_dict().items()}
    save_safetensors(state, args.out / f"{name}.safetensors", {"format": "pt"})
    return {
        "name": name,
        "weights": f"{name}.safetensors",
        "weights_dtype": "float16 (loaded as float32)",
        "network": "VPEpsNetwork(DigitsMLP): eps = net(x_t, t, class_labels=None), EDM-preconditioned residual MLP",
        "architecture": ema.core.hparams,
        "parameters": n_params,
        "conditional": conditional,
        "model_variant": args.model_variant,
        "null_label": NULL_LABEL if conditional else None,
        "schedule": sched.to_config(),
        "parameterization": {
            "prediction": "eps",
            "time_input": "native",
            "time_scale": 1.0,
            "core_preconditioning": "edm",
            "sigma_data": sigma_data,
        },
        "data": {
            "source": DATA_SOURCES[args.data],
            "count": int(x.shape[0]),
            "shape": list(x.shape[1:]),
            "scaling": "x = v/8 - 1 (v in 0..16)",
            "mean": float(x.mean()),
            "std": data_std,
        },
        "training": {
            "objective": "EDM loss (lambda(sigma) |D - x0|^2) on the sigma span of the table",
            "sigma_sampling": {
                "p_mean": args.p_mean,
                "p_std": args.p_std,
                "p_uniform_log": args.p_uniform,
                "span": [sched.sigma_min, sched.sigma_max],
            },
            "label_dropout": args.label_dropout if conditional else None,
            "steps": steps_done,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "warmup": args.warmup,
            "lr_schedule": "linear warm-up, cosine decay to 10% over max(step/steps, time/max_minutes)",
            "optimizer": "Adam",
            "max_steps": args.steps,
            "max_minutes": args.max_minutes,
            "ema_decay": args.ema_decay,
            "seed": args.seed,
            "threads": args.threads,
            "seconds": round(seconds, 1),
            "final_loss_running": running,
            "final_loss_ema_fixed": final,
            "machine": f"{platform.machine()} CPU, torch {torch.__version__}",
        },
    }


@torch.no_grad()
def evaluate(args: argparse.Namespace, variant: str) -> dict[str, Any]:
    """Fréchet distances (and class accuracies) of ``--eval-samples`` Heun draws; real-data floors."""
    conditional = variant == "conditional"
    den = load_digits_model(conditional, weights_dir=args.out, variant=args.model_variant)
    sched = den.noise_schedule
    sigmas = diffsample.steps.karras(args.eval_steps, sched.sigma_min, sched.sigma_max)
    n = args.eval_samples
    z = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(args.seed + 1000))
    x_init = sigmas[0].item() * z
    sampler = f"heun, karras({args.eval_steps}, {sched.sigma_min:.6g}, {sched.sigma_max:.6g}), rho 7"
    out: dict[str, Any] = {"samples": n, "sampler": sampler, "noise_seed": args.seed + 1000}
    half_a, half_b = real_halves()
    out["fd_real_half_vs_half"] = frechet_distance(half_a, half_b)
    out["fd_gaussian_noise"] = frechet_distance(torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(7)))
    start = time.perf_counter()
    if not conditional:
        xs = diffsample.sample(den, x_init, sigmas, solver="heun")
        out["fd"] = frechet_distance(xs)
        out["nfe_per_sample"] = den.nfe
    else:
        labels = torch.arange(n) % 10
        for w in args.eval_guidance:
            den.reset_counter()
            model = (
                den
                if w == 1
                else diffsample.cfg(
                    den,
                    w,
                    cond_kwargs={"class_labels": labels},
                    uncond_kwargs={"class_labels": NULL_LABEL},
                    batched=True,
                )
            )
            kwargs = {"class_labels": labels} if w == 1 else {}
            xs = diffsample.sample(lambda x_, s_, m=model, kw=kwargs: m(x_, s_, **kw), x_init, sigmas, solver="heun")
            out[f"guidance_{w:g}"] = {"fd": frechet_distance(xs), "class_accuracy": class_accuracy(xs, labels)}
            print(f"[{variant}] guidance {w:g}: {out[f'guidance_{w:g}']}", flush=True)
    out["seconds"] = round(time.perf_counter() - start, 1)
    print(f"[{variant}] evaluation: {json.dumps(out)}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", choices=sorted(NAMES), required=True)
    ap.add_argument(
        "--model-variant", choices=sorted(MODEL_VARIANTS), default="default", help="which weight set to write"
    )
    ap.add_argument(
        "--beta-schedule",
        default=None,
        help="the VP table (diffusers' names); default: the model variant's (VARIANT_DEFAULTS: scaled_linear, "
        "Stable Diffusion's, for the sd variants, else linear, DDPM's)",
    )
    ap.add_argument(
        "--data",
        choices=sorted(TRAINING_DATA),
        default=None,
        help="training data; default: the model variant's (VARIANT_DEFAULTS: digits16, 16x16, for the sd16 ones, "
        "else digits, 8x8)",
    )
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--ema-decay", type=float, default=0.999)
    ap.add_argument("--width", type=int, default=384)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--emb-dim", type=int, default=128)
    ap.add_argument("--time-scale", type=float, default=250.0)
    ap.add_argument("--sigma-data", type=float, default=None, help="default: the data's std, rounded to 0.01")
    ap.add_argument("--p-mean", type=float, default=-1.2)
    ap.add_argument("--p-std", type=float, default=1.2)
    ap.add_argument("--p-uniform", type=float, default=0.2)
    ap.add_argument("--label-dropout", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="1 is fastest on a shared 2-core machine")
    ap.add_argument("--max-minutes", type=float, default=15.0)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--eval-only", action="store_true")
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--eval-samples", type=int, default=1000)
    ap.add_argument("--eval-steps", type=int, default=100)
    ap.add_argument("--eval-guidance", type=float, nargs="+", default=[1.0, 2.0])
    ap.add_argument("--out", type=Path, default=WEIGHTS)
    args = ap.parse_args()
    if args.beta_schedule is None:
        args.beta_schedule = VARIANT_DEFAULTS[args.model_variant][0]
    if args.data is None:
        args.data = VARIANT_DEFAULTS[args.model_variant][1]
    if args.data != "digits" and not args.no_eval:
        print("the Fréchet distance is defined on 8x8 digits only: no evaluation of a 16x16 model", flush=True)
        args.no_eval = True
    torch.set_num_threads(args.threads)
    torch.backends.mkldnn.enabled = False  # the plain CPU convolution is faster on 8×8 maps
    path = args.out / f"{output_name(args)}.json"
    if args.eval_only:
        record = json.loads(path.read_text())
    else:
        record = train(args, args.variant)
        atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    if not args.no_eval:
        record["evaluation"] = evaluate(args, args.variant)
        atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
