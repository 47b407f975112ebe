"""Train the shipped 8×8-digits rectified-flow (flow-matching) network ``digits_flow``.

Usage::

    nice -n 5 python scripts/train_digits_flow.py                 # train (≈ 6 min on one thread), save, evaluate
    python scripts/train_digits_flow.py --name digits16_flow --data digits16 --width 384 --blocks 4 \
        --steps 15000 --max-minutes 10                            # the same recipe on 16×16 images
    python scripts/train_digits_flow.py --eval-only               # re-measure the shipped weights

Model: a :class:`diffsample.models.network.DigitsMLP` core predicting the rectified-flow velocity
``u = ε − x0`` of the straight path ``x_t = (1 − t) x0 + t ε`` (Liu, Gong & Liu 2023, "Flow straight and fast";
Lipman et al. 2023, "Flow matching for generative modeling", the conditional flow-matching loss):

    L = E_{x0, ε, t} |u_θ(x_t, t) − (ε − x0)|²,

with ``t`` drawn from SD3's logit-normal ``t = sigmoid(N(0, 1))`` (Esser et al. 2024, §3.1) mixed with a fraction
``--p-uniform`` of uniform times, so that both ends of the path are trained. The network takes the native time
``t ∈ [0, 1]`` (embedded after multiplying by ``--time-scale``). It serves the library through
:func:`diffsample.models.digits_flow.load_digits_flow_model`, a
:class:`~diffsample.parameterization.ModelDenoiser` on :class:`~diffsample.schedules.RectifiedFlow` with
prediction ``"flow"`` (optionally with SD3's resolution shift, which moves the sampling times, not the model).

Adam with linear warm-up and cosine decay to 10 %, EMA of the weights, seeded; one thread. Writes
``digits_flow.safetensors`` (EMA weights, float16) and ``digits_flow.json`` (architecture, schedule,
parameterisation, training record, evaluation) to ``src/diffsample/models/weights/``. The evaluation draws
``--eval-samples`` digits with Heun on 100 uniform-time steps and reports their Fréchet distance
(:func:`diffsample.models.frechet_distance`) to all 1797 digits.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch
from _diffusion_training import optimise, progress_and_lr, update_ema

import diffsample
from diffsample.models import digits_data, frechet_distance, real_halves
from diffsample.models._io import save_safetensors
from diffsample.models.data import DATA_SOURCES, TRAINING_DATA, training_data
from diffsample.models.digits import WEIGHTS
from diffsample.models.digits_flow import FLOW_NAME, load_digits_flow_model
from diffsample.models.network import DigitsMLP


def sample_times(n: int, p_uniform: float, gen: torch.Generator) -> torch.Tensor:
    """``t``: logit-normal ``sigmoid(N(0, 1))`` (SD3), a fraction ``p_uniform`` uniform on [0, 1]."""
    logit = torch.sigmoid(torch.randn(n, generator=gen))
    uniform = torch.rand(n, generator=gen)
    pick = torch.rand(n, generator=gen) < p_uniform
    return torch.where(pick, uniform, logit).clamp(1e-4, 1 - 1e-4)


def flow_loss(net: DigitsMLP, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Per-sample conditional flow-matching loss ``mean |u_θ(x_t, t) − (ε − x0)|²``."""
    tt = t[:, None, None, None]
    x_t = (1 - tt) * x0 + tt * noise
    return (net(x_t, t) - (noise - x0)).pow(2).mean(dim=(1, 2, 3))


@torch.no_grad()
def fixed_loss(net: DigitsMLP, x: torch.Tensor, p_uniform: float) -> float:
    """The EMA model's loss on all digits × 4 fixed noise draws (seed 12345)."""
    gen = torch.Generator().manual_seed(12345)
    total, count = 0.0, 0
    for _ in range(4):
        for i in range(0, x.shape[0], 512):
            x0 = x[i : i + 512]
            t = sample_times(x0.shape[0], p_uniform, gen)
            total += float(flow_loss(net, x0, t, torch.randn(x0.shape, generator=gen)).sum())
            count += x0.shape[0]
    return total / count


def train(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    x, _ = training_data(args.data)
    net = DigitsMLP(
        args.width, args.blocks, 0, image_shape=tuple(x.shape[1:]), emb_dim=args.emb_dim, time_scale=args.time_scale
    )
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    n_params = sum(p.numel() for p in net.parameters())
    print(f"DigitsMLP {n_params} parameters, {args.steps} steps of batch {args.batch_size}", flush=True)
    start = time.perf_counter()
    running = None
    steps_done = 0
    for step in range(args.steps):
        idx = torch.randint(0, x.shape[0], (args.batch_size,), generator=gen)
        t = sample_times(args.batch_size, args.p_uniform, gen)
        loss = flow_loss(net, x[idx], t, torch.randn(x[idx].shape, generator=gen)).mean()
        progress, lr = progress_and_lr(args, step, start)
        optimise(opt, loss, lr)
        update_ema(ema, net, step, args.ema_decay)
        value = float(loss.detach())
        running = value if running is None else 0.99 * running + 0.01 * value
        steps_done = step + 1
        if step % 250 == 0:
            print(f"step {step}: loss {running:.4f}, lr {lr:.2e}, {time.perf_counter() - start:.0f}s", flush=True)
        if progress >= 1.0:
            break
    seconds = time.perf_counter() - start
    final = fixed_loss(ema, x, args.p_uniform)
    print(f"done: {steps_done} steps, {seconds:.0f}s, EMA loss {final:.4f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    state = {k: v.to(torch.float16) for k, v in ema.state_dict().items()}
    save_safetensors(state, args.out / f"{args.name}.safetensors", {"format": "pt"})
    return {
        "name": args.name,
        "weights": f"{args.name}.safetensors",
        "weights_dtype": "float16 (loaded as float32)",
        "network": "DigitsMLP: u = net(x_t, t), the rectified-flow velocity eps - x0 at native time t in [0, 1]",
        "architecture": ema.hparams,
        "parameters": n_params,
        "schedule": {"name": "rectified_flow", "eps": 1e-3},
        "parameterization": {"prediction": "flow", "time_input": "native", "time_scale": 1.0},
        "data": {
            "source": DATA_SOURCES[args.data],
            "count": int(x.shape[0]),
            "shape": list(x.shape[1:]),
            "scaling": "x = v/8 - 1",
        },
        "training": {
            "objective": "conditional flow matching |u - (eps - x0)|^2 on x_t = (1 - t) x0 + t eps",
            "time_sampling": {"logit_normal": [0.0, 1.0], "p_uniform": args.p_uniform},
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
            "threads": torch.get_num_threads(),
            "seconds": round(seconds, 1),
            "final_loss_running": running,
            "final_loss_ema_fixed": final,
            "machine": f"{platform.machine()} CPU, torch {torch.__version__}",
        },
    }


@torch.no_grad()
def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    den = load_digits_flow_model(weights_dir=args.out, name=args.name)
    sched = den.noise_schedule
    sigmas = diffsample.steps.get("time_uniform")(args.eval_steps, noise_schedule=sched)
    z = diffsample.noise.seeded(1000).initial((args.eval_samples, 1, 8, 8), float(sigmas[0]))
    t0 = time.perf_counter()
    samples = diffsample.sample(den, z, sigmas, solver="heun")
    x, _ = digits_data()
    a, b = real_halves()
    return {
        "samples": args.eval_samples,
        "sampler": f"heun, time_uniform({args.eval_steps}) on RectifiedFlow()",
        "noise_seed": 1000,
        "fd_real_half_vs_half": frechet_distance(a, b),
        "fd": frechet_distance(samples, x),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=WEIGHTS)
    p.add_argument("--name", default=FLOW_NAME, help="weight-set name (file stem in --out)")
    p.add_argument("--data", choices=sorted(TRAINING_DATA), default="digits", help="8x8 digits or digits16_data")
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--blocks", type=int, default=3)
    p.add_argument("--emb-dim", type=int, default=128)
    p.add_argument("--time-scale", type=float, default=1000.0)
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--max-minutes", type=float, default=6.0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--p-uniform", type=float, default=0.2)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-samples", type=int, default=1000)
    p.add_argument("--eval-steps", type=int, default=100)
    p.add_argument("--eval-only", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    config_path = args.out / f"{args.name}.json"
    config = json.loads(config_path.read_text()) if args.eval_only else train(args)
    if not args.eval_only:
        config_path.write_text(json.dumps(config, indent=2) + "\n")  # the loader reads it for the evaluation
    if args.data != "digits":
        print("the Fréchet distance is defined on 8x8 digits only: no evaluation of a 16x16 model", flush=True)
        return
    config["evaluation"] = evaluate(args)
    print(f"evaluation: {json.dumps(config['evaluation'])}", flush=True)
    config_path.write_text(json.dumps(config, indent=2) + "\n")


if __name__ == "__main__":
    main()
