"""Minority guidance, self-guided minority generation, CADS and gradient-free classifier guidance: figures and costs.

``python -m benchmarks guidance_minority [--samples 2000] [--digits-samples 500] [--steps 20] [--parts bed,cads]``

* bed: an exact 2-D mixture of 6 components with weights 0.40 … 0.04; the rarest level is its 2 lightest
  components (10 % of the mass). Share of samples whose exact most probable component is in the rarest level,
  next to plain sampling at the same steps and at the same NFE; mean exact log-density; costs.
* digits: the shipped digits models, 5-NN rarity (mean distance to the 5 nearest training digits; "rare" =
  above the real digits' own leave-one-out 90 % quantile), class accuracy of conditional samples by the shipped
  classifier, Fréchet distance to all real digits; minority guidance with the shipped minority classifier and the
  self-guided version, on the class-conditional model (labels 0…9 in turn).
* cads: CFG on the conditional digits model, with and without CADS on its label embedding: accuracy, Fréchet
  distance, within-class diversity (mean pairwise L2 distance between samples of the same class).
* gfcg: gradient-free classifier guidance with the shipped digits classifier on x̂0, alone and with CFG.

Every row reports the cost per sample: NFE, backward passes and classifier calls.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from diffsample import sample, steps
from diffsample.cli import positive_int, str_list
from diffsample.denoisers import CountingDenoiser
from diffsample.noise import seeded
from diffsample.testbeds import GaussianMixture, level_log_probs, rarity_groups
from diffsample.transforms import cads, cfg, gradient_free_guidance, minority_guidance, self_guided_minority

__all__ = ["add_arguments", "run"]

PARTS = ("bed", "digits", "cads", "gfcg")
F64 = torch.float64


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--samples", type=positive_int, default=2000, help="samples per row on the exact bed")
    p.add_argument("--digits-samples", type=positive_int, default=500, help="samples per row on digits")
    p.add_argument("--steps", type=positive_int, default=20, help="solver steps")
    p.add_argument("--solver", default="dpmpp_2m", help="solver (an ODE multistep one by default)")
    p.add_argument("--parts", type=str_list, default=list(PARTS), help=f"parts to run: {', '.join(PARTS)}")
    p.add_argument("--threads", type=positive_int, default=1)


def _table(header: list[str], rows: list[list[object]]) -> str:
    cells = [header] + [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _run(den: CountingDenoiser, x: torch.Tensor, sigmas: torch.Tensor, solver: str, **kw: object) -> torch.Tensor:
    den.reset_counter()
    with torch.no_grad():
        return sample(den, x.clone(), sigmas, solver=solver, noise=seeded(99), **kw)


def _cost(den: CountingDenoiser) -> list[object]:
    c = den.cost()
    return [c.nfe, c.backward_passes, c.auxiliary_calls]


# ----------------------------------------------------------------------------------------------- exact bed
def bed_part(args: argparse.Namespace) -> None:
    means = torch.tensor([[-2.5, 0.0], [2.5, 0.0], [0.0, 2.5], [0.0, -2.5], [2.2, 2.2], [-2.2, -2.2]], dtype=F64)
    weights = torch.tensor([0.40, 0.25, 0.15, 0.10, 0.06, 0.04], dtype=F64)
    mix = GaussianMixture(means, torch.full((6,), 0.45, dtype=F64), weights)
    groups = rarity_groups(mix, 3)
    rare = torch.tensor(groups[-1])
    n, k = args.samples, args.steps
    x = 40.0 * seeded(1).standard_normal((n, 2), dtype=F64)
    low = float(torch.quantile(mix.log_prob(mix.sample(20000, torch.Generator().manual_seed(0)), 0.01), 0.1))

    def level_classifier(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return level_log_probs(mix, groups, x, s)

    methods: list[tuple[str, CountingDenoiser, int]] = [
        ("plain", mix, k),
        ("plain, same NFE as self-guided", mix, 2 * k),
        ("minority guidance w=1 (exact level classifier)", minority_guidance(mix, level_classifier, 2, 1.0), k),
        ("minority guidance w=0.5", minority_guidance(mix, level_classifier, 2, 0.5), k),
        ("self-guided w=0.5, sigma_p=0.5", self_guided_minority(mix, 0.5, 0.5, seeds=3), k),
        ("self-guided w=1, sigma_p=0.5", self_guided_minority(mix, 1.0, 0.5, seeds=3), k),
        ("self-guided w=2, sigma_p=0.5", self_guided_minority(mix, 2.0, 0.5, seeds=3), k),
    ]
    rows = []
    for name, den, n_steps in methods:
        sigmas = steps.karras(n_steps, 0.01, 40.0)
        out = _run(den, sigmas[0] / 40.0 * x, sigmas, args.solver)
        share = float(torch.isin(mix.component(out), rare).double().mean())
        logp = mix.log_prob(out, 0.01)
        rows.append([name, n_steps, share, float((logp < low).double().mean()), float(logp.mean()), *_cost(den)])
    print(
        f"exact bed: 6-component mixture, rarest level = components {groups[-1]} "
        f"(weight {float(weights[rare].sum()):.2f}); {n} samples, solver {args.solver}"
    )
    print("low-density share: exact log p below the data's own 10 % quantile (10 % for exact samples)")
    print(_table(["method", "steps", "rare share", "low-density", "mean log p", "NFE", "backward", "classifier"], rows))


# ----------------------------------------------------------------------------------------------- digits
class _Digits:
    """Real digits, 5-NN rarity against them, the shipped classifier and Fréchet distance."""

    def __init__(self) -> None:
        from diffsample.models import digits_data

        self.x, self.y = digits_data()
        flat = self.x.flatten(1).double()
        d = torch.cdist(flat, flat)
        d.fill_diagonal_(float("inf"))
        self.real_knn = d.topk(5, largest=False).values.mean(1)
        self.rare_threshold = float(torch.quantile(self.real_knn, 0.9))

    def knn(self, samples: torch.Tensor) -> torch.Tensor:
        d = torch.cdist(samples.clamp(-1, 1).flatten(1).double(), self.x.flatten(1).double())
        return d.topk(5, largest=False).values.mean(1)

    def report(self, samples: torch.Tensor, labels: torch.Tensor | None) -> list[object]:
        from diffsample.models import class_accuracy, frechet_distance

        knn = self.knn(samples)
        acc = class_accuracy(samples, labels) if labels is not None else float("nan")
        return [float((knn > self.rare_threshold).double().mean()), float(knn.mean()), acc, frechet_distance(samples)]


def digits_part(args: argparse.Namespace, real: _Digits) -> None:
    from diffsample.models import MINORITY_INFO, NULL_LABEL, load_digits_model, load_minority_classifier

    D = load_digits_model(conditional=True)
    clf = load_minority_classifier()
    target = int(MINORITY_INFO["levels"]) - 1
    n, k = args.digits_samples, args.steps
    labels = torch.arange(n) % 10
    sigmas = steps.karras(k, D.noise_schedule.sigma_min, 80.0)
    x = sigmas[0] * seeded(2).standard_normal((n, 1, 8, 8))

    def label_cfg(inner: CountingDenoiser, w: float) -> CountingDenoiser:
        return cfg(inner, w, cond_kwargs={"class_labels": labels}, uncond_kwargs={"class_labels": NULL_LABEL})

    methods: list[tuple[str, Callable[[], CountingDenoiser], int]] = [
        ("conditional (no guidance)", lambda: label_cfg(D, 1.0), k),
        ("conditional, same NFE as self-guided", lambda: label_cfg(D, 1.0), 2 * k),
    ]
    for w in (1.0, 2.0, 3.0, 4.0):
        methods.append(
            (f"minority guidance w={w:g}", lambda w=w: label_cfg(minority_guidance(D, clf, target, w), 1.0), k)
        )
    for w in (1.0, 2.0, 4.0):
        methods.append(
            (
                f"self-guided w={w:g}, sigma_p=0.3",
                lambda w=w: label_cfg(self_guided_minority(D, w, 0.3, seeds=5), 1.0),
                k,
            )
        )
    rows = []
    for name, make, n_steps in methods:
        den = make()
        s = steps.karras(n_steps, D.noise_schedule.sigma_min, 80.0)
        t0 = time.perf_counter()
        out = _run(den, s[0] / sigmas[0] * x, s, args.solver)
        rows.append([name, n_steps, *real.report(out, labels), *_cost(den), round(time.perf_counter() - t0, 1)])
    print(
        f"\ndigits, class-conditional model, labels 0…9 in turn, {n} samples, solver {args.solver}; "
        f"minority classifier target level {target}; rare = 5-NN distance > {real.rare_threshold:.3f} "
        f"(real digits: 10 % by construction)"
    )
    print(
        _table(
            ["method", "steps", "rare share", "mean 5-NN", "accuracy", "FD", "NFE", "backward", "classifier", "s"], rows
        )
    )


def _within_class_diversity(samples: torch.Tensor, labels: torch.Tensor) -> float:
    flat = samples.clamp(-1, 1).flatten(1).double()
    vals = []
    for c in labels.unique().tolist():
        group = flat[labels == c]
        if group.shape[0] > 1:
            d = torch.cdist(group, group)
            vals.append(float(d.sum() / (group.shape[0] * (group.shape[0] - 1))))
    return sum(vals) / len(vals)


def cads_part(args: argparse.Namespace, real: _Digits) -> None:
    from diffsample.models import class_accuracy, frechet_distance
    from diffsample.models.digits_embedding import load_digits_embedding_model

    E = load_digits_embedding_model()
    n, k = args.digits_samples, args.steps
    labels = torch.arange(n) % 10
    emb = E.label_embedding(labels)
    sigmas = steps.karras(k, E.noise_schedule.sigma_min, 80.0)
    x = sigmas[0] * seeded(3).standard_normal((n, 1, 8, 8))
    rows = []
    real_div = _within_class_diversity(real.x, real.y)
    settings = [None, (0.6, 0.9, 0.25, 1.0), (0.6, 0.9, 1.0, 0.0), (0.3, 0.6, 0.25, 1.0), (0.3, 0.6, 1.0, 0.0)]
    for w in (1.0, 2.0, 4.0):
        for setting in settings:
            if setting is None:
                cond, name = E, f"CFG w={w:g}"
            else:
                tau1, tau2, noise_scale, psi = setting
                cond = cads(E, key="class_embedding", tau1=tau1, tau2=tau2, noise_scale=noise_scale, psi=psi, seeds=7)
                name = f"CFG w={w:g} + CADS tau=({tau1:g},{tau2:g}) s={noise_scale:g} psi={psi:g}"
            den = cfg(cond, w, uncond=E, cond_kwargs={"class_embedding": emb})
            out = _run(den, x, sigmas, args.solver)
            div = _within_class_diversity(out, labels)
            rows.append([name, class_accuracy(out, labels), frechet_distance(out), div, *_cost(den)])
    print(
        f"\nCADS on the conditional digits model's label embedding, {n} samples, "
        f"{k} steps, solver {args.solver}; real digits' within-class diversity {real_div:.3f}"
    )
    print(_table(["method", "accuracy", "FD", "diversity", "NFE", "backward", "classifier"], rows))


def gfcg_part(args: argparse.Namespace, real: _Digits) -> None:
    from diffsample.models import NULL_LABEL, class_accuracy, frechet_distance, load_classifier, load_digits_model

    D = load_digits_model(conditional=True)
    net = load_classifier()
    n, k = args.digits_samples, args.steps
    labels = torch.arange(n) % 10
    sigmas = steps.karras(k, D.noise_schedule.sigma_min, 80.0)
    x = sigmas[0] * seeded(4).standard_normal((n, 1, 8, 8))

    def classify(x0: torch.Tensor) -> torch.Tensor:
        return net(x0.clamp(-1, 1).float())

    rows = []
    for w_cfg in (1.0, 2.0):
        for omega in (0.0, 1.0, 2.0, 4.0):
            if omega == 0:
                den = cfg(D, w_cfg, cond_kwargs={"class_labels": labels}, uncond_kwargs={"class_labels": NULL_LABEL})
            else:
                den = gradient_free_guidance(
                    D, classify, omega, labels=labels, cfg_scale=w_cfg, uncond_kwargs={"class_labels": NULL_LABEL}
                )
            out = _run(den, x, sigmas, args.solver)
            name = f"CFG w={w_cfg:g}" + ("" if omega == 0 else f" + GFCG omega={omega:g}")
            rows.append(
                [
                    name,
                    class_accuracy(out, labels),
                    frechet_distance(out),
                    _within_class_diversity(out, labels),
                    *_cost(den),
                ]
            )
    print(
        f"\ngradient-free classifier guidance (shipped digits classifier on x0_hat), {n} samples, {k} steps, "
        f"solver {args.solver}"
    )
    print(_table(["method", "accuracy", "FD", "diversity", "NFE", "backward", "classifier"], rows))


def run(args: argparse.Namespace) -> int:
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown part {unknown[0]!r}; valid: {', '.join(PARTS)}")
    torch.set_num_threads(args.threads)
    if "bed" in args.parts:
        bed_part(args)
    if set(args.parts) & {"digits", "cads", "gfcg"}:
        real = _Digits()
        if "digits" in args.parts:
            digits_part(args, real)
        if "cads" in args.parts:
            cads_part(args, real)
        if "gfcg" in args.parts:
            gfcg_part(args, real)
    return 0
