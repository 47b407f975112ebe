"""Train the noise-aware digits classifier shipped in ``src/diffsample/models/weights/`` (for classifier guidance).

Usage: ``nice -n 5 python scripts/train_noisy_classifier.py [--epochs 150] [--seed 0] [--threads 1]``

Trains :class:`diffsample.models.noisy_classifier.NoisyDigitsClassifier` with AdamW on the training part of
:func:`diffsample.models.data.classifier_split` (1348 images; 449 held out), each batch noised afresh,
``x_σ = x0 + σ ε``, with ``log σ`` drawn from N(−0.5, 1.5²) (80 %) or uniformly over the digits models' span
[0.01, 160] (20 %), plus random ±1-pixel shifts. Writes ``digits_noisy_classifier.safetensors`` + ``.json``
(held-out accuracy per σ on fixed noise, split, seed, time).
"""

from __future__ import annotations

import json
import math
import time

import torch
from _classifier_training import parse_arguments, seeded, shift, train_epochs
from torch.nn import functional as F

from diffsample.models._io import save_safetensors
from diffsample.models.data import classifier_split, digits_data
from diffsample.models.noisy_classifier import WEIGHTS, NoisyDigitsClassifier

SPAN = (0.01, 160.0)
EVAL_SIGMAS = (0.01, 0.1, 0.3, 0.5, 1.0, 2.0, 5.0)


def draw_sigmas(n: int, gen: torch.Generator) -> torch.Tensor:
    lo, hi = math.log(SPAN[0]), math.log(SPAN[1])
    normal = (-0.5 + 1.5 * torch.randn(n, generator=gen)).clamp(lo, hi)
    uniform = lo + (hi - lo) * torch.rand(n, generator=gen)
    return torch.where(torch.rand(n, generator=gen) < 0.2, uniform, normal).exp()


@torch.no_grad()
def accuracy_per_sigma(net: NoisyDigitsClassifier, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    gen = torch.Generator().manual_seed(12345)
    out = {}
    for s in EVAL_SIGMAS:
        xs = x + s * torch.randn(x.shape, generator=gen)
        out[f"{s:g}"] = float((net(xs, s).argmax(1) == y).double().mean())
    return out


def main() -> None:
    args = parse_arguments(__doc__.splitlines()[0], epochs=150, batch_size=128, lr=3e-3, out=WEIGHTS)
    gen = seeded(args)

    x, y = digits_data()
    train_idx, test_idx = classifier_split()
    xtr, ytr = x[train_idx], y[train_idx]
    xte, yte = x[test_idx], y[test_idx]
    net = NoisyDigitsClassifier()

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        x0 = shift(xtr[idx], gen)
        sigma = draw_sigmas(idx.numel(), gen)
        xs = x0 + sigma[:, None, None, None] * torch.randn(x0.shape, generator=gen)
        return F.cross_entropy(net(xs, sigma), ytr[idx])

    def report(epoch: int, loss: float) -> None:
        acc = accuracy_per_sigma(net, xte, yte)
        print(f"epoch {epoch + 1:3d}  loss {loss:.4f}  held-out acc per sigma {acc}", flush=True)

    start = time.perf_counter()
    train_epochs(net, xtr.shape[0], args, gen, batch_loss, report, report_every=25)
    elapsed = time.perf_counter() - start
    net.eval()
    args.out.mkdir(parents=True, exist_ok=True)
    save_safetensors(net.state_dict(), args.out / "digits_noisy_classifier.safetensors", {"format": "pt"})
    info = {
        "architecture": {"width": 64, "features": 64, "sigma_data": net.sigma_data},
        "parameters": sum(p.numel() for p in net.parameters()),
        "input": "x_sigma = x0 + sigma * eps (sigma-space of the digits models), scaled by 1/sqrt(sigma^2 + 0.75^2); "
        "second channel log(sigma)/4",
        "data": "sklearn.datasets.load_digits, x = v/8 - 1",
        "split": "diffsample.models.data.classifier_split(n=1797, test_fraction=0.25, seed=0)",
        "n_train": int(xtr.shape[0]),
        "n_test": int(xte.shape[0]),
        "sigma_sampling": "log sigma ~ N(-0.5, 1.5^2) clipped to [0.01, 160] (80%), log-uniform on it (20%)",
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "augmentation": "random ±1 pixel shifts, fresh noise per batch",
        "seed": args.seed,
        "threads": args.threads,
        "train_seconds": round(elapsed, 1),
        "test_accuracy_per_sigma": accuracy_per_sigma(net, xte, yte),
    }
    (args.out / "digits_noisy_classifier.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
