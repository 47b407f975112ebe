"""Gradient guidance on exact beds and on the digits model: the rows behind ``python -m benchmarks guidance_gradient``.

Parts:

* ``classifier`` — classifier guidance of a labelled 2-D mixture by its exact Bayes noisy classifier
  (:func:`~diffsample.testbeds.noisy_classifier`, weight 1): sliced W2 and component-weight TV to ``p(x | y)``
  against NFE, next to the floor (the same metrics for a second set of exact draws of the same size);
* ``inverse`` — DPS and TFG on inverse problems with a mixture prior: ``inpaint2d`` (observe x₁, s = 0.3),
  ``downsample8`` (8-d, average-pool by 2, s = 0.5), and the non-linear ``square2d`` (y = x₁² + n, s = 0.3; its
  exact posterior on a 1001² grid). DPS's ζ and TFG's (ρ, μ, γ) are chosen by TFG's beam search on a validation
  batch (another seed, 20 steps; objective: −SW to exact posterior draws); the table shows the test batch, with
  the unguided prior and the exact posterior denoiser (linear beds) as references;
* ``reward`` — reward-tilted 2-D mixture (linear and quadratic reward, α = 0.5): reward-mean error and SW to the
  exact tilted law for the exact twist, TFG variance guidance by ``r(x̂0)/α`` (the common approximation), and no
  guidance;
* ``digits`` — classifier guidance of the unconditional digits model by the shipped noise-aware classifier, all
  ten classes, accuracy by the shipped clean classifier against the scale; and DPS with a non-linear network
  measurement (class probabilities of a clean classifier, target one-hot) against ζ.

Costs per sample: ``nfe`` (denoiser evaluations), ``backward`` (backward passes), ``aux`` (classifier/predictor
calls).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import torch

import diffsample
from diffsample.denoisers import CallCounter
from diffsample.testbeds import (
    GaussianMixture,
    class_conditional,
    component_weight_tv,
    denoiser_error,
    downsample_operator,
    linear_inverse_problem,
    linear_reward,
    masking_operator,
    noisy_classifier,
    quadratic_reward,
    sliced_wasserstein,
    tilt,
)
from diffsample.transforms import Axis, beam_search, classifier_guidance, dps, recurrent_sample, tfg

from .report import Column, text_table

__all__ = ["PARTS", "GuidanceRow", "format_rows", "run_part"]

F64 = torch.float64
DENOISER_SIGMAS = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0, 20.0)
"""Noise levels of the pointwise guided-vs-exact denoiser error (max over 256 probe points, 3·N(0, I))."""
N_FLOOR = 5
"""Sets of exact draws whose mean distance to the reference set is the reported floor."""
SIGMA_MAX, SIGMA_MIN = 80.0, 0.002


@dataclass
class GuidanceRow:
    part: str
    bed: str
    method: str
    solver: str
    steps: int
    nfe: float
    backward: float
    aux: float
    sw: float = math.nan
    sw_floor: float = math.nan
    tv: float = math.nan
    tv_floor: float = math.nan
    reward_err: float = math.nan
    accuracy: float = math.nan
    denoiser_err: float = math.nan
    note: str = ""


def labelled_mixture() -> tuple[GaussianMixture, list[int]]:
    """Six 2-D components on a ring of radius 3, three classes; class 1 holds three components of unequal weight."""
    angles = torch.arange(6, dtype=F64) * math.pi / 3
    means = 3 * torch.stack([angles.cos(), angles.sin()], 1)
    stds = torch.tensor([[0.5, 0.7], [0.6, 0.4], [0.8, 0.5], [0.4, 0.6], [0.7, 0.7], [0.5, 0.3]], dtype=F64)
    weights = torch.tensor([0.25, 0.2, 0.15, 0.15, 0.15, 0.1], dtype=F64)
    return GaussianMixture(means, stds, weights, name="ring6"), [0, 1, 2, 1, 0, 1]


def _walk(denoiser, n: int, d: int, steps: int, solver: str, seed: int) -> tuple[torch.Tensor, diffsample.Cost]:
    counted = denoiser
    sigmas = diffsample.steps.karras(steps, SIGMA_MIN, SIGMA_MAX)
    z = diffsample.noise.seeded(seed).initial((n, d), SIGMA_MAX, dtype=F64)
    x = diffsample.sample(counted, z, sigmas, solver, diffsample.noise.seeded(seed + 1))
    return x, counted.cost()


def _per_sample(cost: diffsample.Cost) -> tuple[float, float, float]:
    return float(cost.nfe), float(cost.backward_passes), float(cost.auxiliary_calls)


# ------------------------------------------------------------------ classifier guidance, exact classifier
def _class_report(prior: GaussianMixture, labels: list[int], target: GaussianMixture, x: torch.Tensor, ref, other):
    """SW to exact ``p(x | y)`` draws, and TV of the shares of *all* prior components (samples assigned by the
    prior's exact responsibilities) to ``p(x | y)``'s weights (zero on the other classes' components)."""
    wanted = torch.zeros(prior.num_components, dtype=F64)
    wanted[torch.tensor(labels) == 1] = target.weights

    def tv(s: torch.Tensor) -> float:
        share = torch.bincount(prior.component(s.to(F64), 0.0), minlength=prior.num_components).to(F64) / s.shape[0]
        return float(0.5 * (share - wanted).abs().sum())

    return (
        sliced_wasserstein(x, ref),
        sum(sliced_wasserstein(o, ref) for o in other) / len(other),
        tv(x),
        sum(tv(o) for o in other) / len(other),
    )


def classifier_part(n: int, nfes: list[int], log: Callable[[str], None]) -> list[GuidanceRow]:
    prior, labels = labelled_mixture()
    target = class_conditional(prior, labels, 1)
    ref = target.sample(n, torch.Generator().manual_seed(1))
    other = [target.sample(n, torch.Generator().manual_seed(s)) for s in range(2, 2 + N_FLOOR)]
    rows = []
    floor = _class_report(prior, labels, target, target.sample(n, torch.Generator().manual_seed(99)), ref, other)
    rows.append(GuidanceRow("classifier", "ring6|y=1", "exact draws (floor)", "-", 0, 0, 0, 0, *floor))
    for solver in ("dpmpp_2m", "heun", "dpmpp_2m_sde"):
        for steps in nfes:
            guided = classifier_guidance(CallCounter(prior), noisy_classifier(prior, labels, 1), 1.0)
            x, cost = _walk(guided, n, 2, steps, solver, seed=0)
            rep = _class_report(prior, labels, target, x, ref, other)
            rows.append(
                GuidanceRow("classifier", "ring6|y=1", "CG exact classifier", solver, steps, *_per_sample(cost), *rep)
            )
            log(f"classifier {solver} {steps}: sw {rep[0]:.4f}")
        x, cost = _walk(CallCounter(prior), n, 2, max(nfes), solver, seed=0)
        rep = _class_report(prior, labels, target, x, ref, other)
        rows.append(
            GuidanceRow("classifier", "ring6|y=1", "unguided prior", solver, max(nfes), *_per_sample(cost), *rep)
        )
    return rows


# ------------------------------------------------------------------ inverse problems
@dataclass
class InverseBed:
    name: str
    prior: GaussianMixture
    measure: Callable[[torch.Tensor], torch.Tensor]
    y: torch.Tensor
    noise_std: float
    exact: object | None  # the exact posterior denoiser (linear beds)
    draw: Callable[[int, int], torch.Tensor]  # exact posterior draws (n, seed)
    weights: Callable[[torch.Tensor], float]  # component-weight TV of samples to the exact posterior

    def log_likelihood(self, x0: torch.Tensor) -> torch.Tensor:
        r = self.y.to(x0.dtype) - self.measure(x0)
        return -0.5 * r.square().sum(1) / self.noise_std**2


def _linear_bed(name: str, prior: GaussianMixture, a: torch.Tensor, s: float, **kw) -> InverseBed:
    problem = linear_inverse_problem(prior, a, s, **kw)
    post = problem.posterior
    return InverseBed(
        name,
        prior,
        problem.measure,
        problem.y,
        s,
        post,
        lambda n, seed: post.sample(n, torch.Generator().manual_seed(seed)),
        lambda x: component_weight_tv(post, x),
    )


def _square_bed(prior: GaussianMixture, y: float, s: float) -> InverseBed:
    """``y = x₁² + n``: the exact posterior on a fine grid (cells of 0.016, uniform jitter within a cell)."""
    grid = torch.linspace(-8, 8, 1001, dtype=F64)
    h = float(grid[1] - grid[0])
    pts = torch.cartesian_prod(grid, grid)
    log_post = prior.log_prob(pts, 0.0) - 0.5 * (y - pts[:, 0].square()).square() / s**2
    mass = torch.softmax(log_post, 0)
    owner = prior.component(pts, 0.0)
    exact_w = torch.zeros(prior.num_components, dtype=F64).index_add_(0, owner, mass)

    def draw(n: int, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        idx = torch.multinomial(mass, n, replacement=True, generator=g)
        return pts[idx] + h * (torch.rand(n, 2, dtype=F64, generator=g) - 0.5)

    def tv(x: torch.Tensor) -> float:
        share = torch.bincount(prior.component(x.to(F64), 0.0), minlength=prior.num_components).to(F64) / x.shape[0]
        return float(0.5 * (share - exact_w).abs().sum())

    return InverseBed("square2d", prior, lambda x0: x0[:, :1].square(), torch.tensor([y], dtype=F64), s, None, draw, tv)


def inverse_beds() -> list[InverseBed]:
    ring, _ = labelled_mixture()
    g = torch.Generator().manual_seed(11)
    prior8 = GaussianMixture(
        1.2 * torch.randn(6, 8, dtype=F64, generator=g),
        0.3 + 0.4 * torch.rand(6, 8, dtype=F64, generator=g),
        torch.tensor([0.3, 0.2, 0.15, 0.15, 0.1, 0.1], dtype=F64),
        name="mix8",
    )
    return [
        _linear_bed("inpaint2d", ring, masking_operator([True, False]), 0.3, y=torch.tensor([1.2])),
        _linear_bed("downsample8", prior8, downsample_operator(8, 2), 0.5, seed=3),
        _square_bed(ring, 4.0, 0.3),
    ]


def _report(bed: InverseBed, x: torch.Tensor, seed: int) -> tuple[float, float, float, float]:
    n = x.shape[0]
    if not bool(torch.isfinite(x).all()):
        return math.nan, math.nan, math.nan, math.nan
    ref, others = bed.draw(n, 10_000 + seed), [bed.draw(n, 20_000 + seed + j) for j in range(N_FLOOR)]
    sw = sliced_wasserstein(x.reshape(n, -1), ref, seed=seed)
    sw_floor = sum(sliced_wasserstein(o, ref, seed=seed) for o in others) / N_FLOOR
    return sw, sw_floor, bed.weights(x), sum(bed.weights(o) for o in others) / N_FLOOR


def _dps_for(bed: InverseBed, zeta: float) -> Callable[[object], object]:
    return lambda den: dps(den, bed.measure, bed.y, zeta)


def _tfg_for(bed: InverseBed, p: dict[str, float]) -> Callable[[object], object]:
    return lambda den: tfg(
        den, bed.log_likelihood, rho=p["rho"], mu=p["mu"], gamma=p["gamma"], n_smooth=4, clip=TFG_CLIP
    )


def _search(bed: InverseBed, build, space: dict[str, Axis], n_val: int, steps: int, solver: str):
    spent = [0.0, 0.0, 0.0]  # per validation sample, summed over the settings tried

    def evaluate(params: dict[str, float]) -> float:
        guided = build(params)(CallCounter(bed.prior))
        try:
            x, cost = _walk(guided, n_val, bed.prior.dim, steps, solver, seed=500)
        except diffsample.errors.DiffsampleError:
            return -math.inf
        spent[0] += cost.nfe
        spent[1] += cost.backward_passes
        spent[2] += cost.auxiliary_calls
        if not bool(torch.isfinite(x).all()):
            return -math.inf
        return -sliced_wasserstein(x.reshape(n_val, -1), bed.draw(n_val, 600), seed=1)

    result = beam_search(evaluate, space, beam=2, rounds=6)
    return result, spent


N_VALIDATION = 256
"""Validation batch of the hyper-parameter searches (seeded apart from the test batch)."""
TFG_CLIP = 10.0
"""Gradient-norm cap of TFG on the inverse beds (without it the non-linear bed's cubic gradient diverges)."""
DPS_SPACE = {"zeta": Axis(0.125, 2.0, 32.0)}
TFG_SPACE = {"rho": Axis(0.0625, 2.0, 4.0), "mu": Axis(0.004, 2.0, 0.25), "gamma": Axis(0.001, 10.0, 1.0)}


def inverse_part(n: int, nfes: list[int], log: Callable[[str], None], solver: str = "dpmpp_2m") -> list[GuidanceRow]:
    rows = []
    for bed in inverse_beds():
        d = bed.prior.dim
        dps_search, dps_cost = _search(
            bed, lambda p, bed=bed: _dps_for(bed, p["zeta"]), DPS_SPACE, N_VALIDATION, 20, solver
        )
        tfg_search, tfg_cost = _search(bed, lambda p, bed=bed: _tfg_for(bed, p), TFG_SPACE, N_VALIDATION, 20, solver)
        zeta, tp = dps_search.best["zeta"], tfg_search.best
        log(f"{bed.name}: DPS zeta {zeta} ({dps_search.evaluations} evals); TFG {tp} ({tfg_search.evaluations} evals)")
        methods: list[tuple[str, Callable[[object], object] | None]] = [
            ("unguided prior", lambda den: den),
            (f"DPS zeta={zeta:g}", _dps_for(bed, zeta)),
            (f"TFG rho={tp['rho']:g} mu={tp['mu']:g} gamma={tp['gamma']:g}", _tfg_for(bed, tp)),
        ]
        for steps in nfes:
            if bed.exact is not None:
                x, cost = _walk(CallCounter(bed.exact), n, d, steps, solver, seed=0)
                rows.append(
                    GuidanceRow(
                        "inverse",
                        bed.name,
                        "exact posterior denoiser",
                        solver,
                        steps,
                        *_per_sample(cost),
                        *_report(bed, x, 0),
                    )
                )
            for label, build in methods:
                guided = build(CallCounter(bed.prior))
                try:
                    x, cost = _walk(guided, n, d, steps, solver, seed=0)
                except diffsample.errors.DiffsampleError:
                    rows.append(
                        GuidanceRow(
                            "inverse", bed.name, label, solver, steps, *_per_sample(guided.cost()), note="diverged"
                        )
                    )
                    continue
                rows.append(
                    GuidanceRow("inverse", bed.name, label, solver, steps, *_per_sample(cost), *_report(bed, x, 0))
                )
            log(f"inverse {bed.name} {steps} done")
        # TFG's recurrence (N_recur = 2) at the middle budget, Euler-ancestral steps
        steps = nfes[len(nfes) // 2]
        guided = _tfg_for(bed, tp)(CallCounter(bed.prior))
        sigmas = diffsample.steps.karras(steps, SIGMA_MIN, SIGMA_MAX)
        z = diffsample.noise.seeded(0).initial((n, d), SIGMA_MAX, dtype=F64)
        try:
            x = recurrent_sample(guided, z, sigmas, "euler_ancestral", n_recur=2, noise=diffsample.noise.seeded(1))
        except diffsample.errors.DiffsampleError:
            x = torch.full((n, d), math.nan, dtype=F64)
        rows.append(
            GuidanceRow(
                "inverse",
                bed.name,
                "TFG + N_recur=2",
                "euler_ancestral",
                steps,
                *_per_sample(guided.cost()),
                *_report(bed, x, 0),
                note="" if bool(torch.isfinite(x).all()) else "diverged",
            )
        )
        rows.append(
            GuidanceRow(
                "inverse",
                bed.name,
                f"search cost DPS ({dps_search.evaluations} settings)",
                solver,
                20,
                *dps_cost,
                note=f"search, per validation sample ({N_VALIDATION})",
            )
        )
        rows.append(
            GuidanceRow(
                "inverse",
                bed.name,
                f"search cost TFG ({tfg_search.evaluations} settings)",
                solver,
                20,
                *tfg_cost,
                note=f"search, per validation sample ({N_VALIDATION})",
            )
        )
    return rows


# ------------------------------------------------------------------ reward-tilted bed
def reward_part(n: int, nfes: list[int], log: Callable[[str], None], solver: str = "dpmpp_2m") -> list[GuidanceRow]:
    prior, _ = labelled_mixture()
    alpha = 0.5
    rows = []
    for rname, reward in (("linear", linear_reward([1.0, 0.5])), ("quadratic", quadratic_reward([2.0, -2.0], 0.5))):
        t = tilt(prior, reward, alpha)
        bed = f"ring6 tilted {rname}"
        ref = t.tilted.sample(n, torch.Generator().manual_seed(3))
        probe = 3 * torch.randn(256, 2, dtype=F64, generator=torch.Generator().manual_seed(5))
        floors = [t.tilted.sample(n, torch.Generator().manual_seed(4 + j)) for j in range(N_FLOOR)]
        rows.append(
            GuidanceRow(
                "reward",
                bed,
                f"exact draws (floor, mean of {N_FLOOR})",
                "-",
                0,
                0,
                0,
                0,
                sum(sliced_wasserstein(f, ref) for f in floors) / N_FLOOR,
                reward_err=sum(t.reward_mean_error(f) for f in floors) / N_FLOOR,
                tv=sum(component_weight_tv(t.tilted, f) for f in floors) / N_FLOOR,
            )
        )
        methods = {
            "exact twist (CG)": lambda den, t=t: classifier_guidance(den, t.twist_potential(), 1.0),
            "TFG variance r(x0)/alpha": lambda den, reward=reward: tfg(den, reward, rho=1 / alpha),
            "unguided prior": lambda den: den,
        }
        for steps in nfes:
            for label, build in methods.items():
                guided = build(CallCounter(prior))
                x, cost = _walk(guided, n, 2, steps, solver, seed=0)
                rows.append(
                    GuidanceRow(
                        "reward",
                        bed,
                        label,
                        solver,
                        steps,
                        *_per_sample(cost),
                        sliced_wasserstein(x, ref),
                        tv=component_weight_tv(t.tilted, x),
                        reward_err=t.reward_mean_error(x),
                        denoiser_err=denoiser_error(build(prior), t.tilted, probe, DENOISER_SIGMAS),
                    )
                )
        log(f"reward {rname} done (exact reward mean {t.reward_mean():.4f}, prior {t.prior_reward_mean():.4f})")
    return rows


# ------------------------------------------------------------------ digits
def digits_part(n: int, nfes: list[int], log: Callable[[str], None], solver: str = "dpmpp_2m") -> list[GuidanceRow]:
    from diffsample.models import class_accuracy, class_log_prob_potential, load_digits_model

    model = load_digits_model()
    rows = []
    per_class = max(n // 10, 1)
    for steps in nfes:
        sigmas = diffsample.steps.karras(steps, model.noise_schedule.sigma_min, model.noise_schedule.sigma_max)
        for scale in (0.0, 1.0, 2.0, 4.0, 8.0):
            accs, cost = [], None
            for y in range(10):
                guided = classifier_guidance(CallCounter(model), class_log_prob_potential(y), scale)
                z = diffsample.noise.seeded(100 + y).initial((per_class, 1, 8, 8), float(sigmas[0]))
                x = diffsample.sample(guided, z, sigmas, solver)
                accs.append(class_accuracy(x, y))
                cost = guided.cost()
            rows.append(
                GuidanceRow(
                    "digits",
                    "digits_uncond",
                    f"CG noisy classifier w={scale:g}",
                    solver,
                    steps,
                    *_per_sample(cost),
                    accuracy=sum(accs) / 10,
                    note=f"{per_class}/class",
                )
            )
            log(f"digits {steps} w={scale}: {sum(accs) / 10:.3f}")
        # DPS with a non-linear network measurement: A(x0) = class probabilities of the noise-aware classifier at
        # σ = 0.01 (a clean classifier; the evaluator stays the separate shipped one), y = the one-hot target
        for zeta in (4.0, 16.0, 64.0):
            accs, cost = [], None
            for y in range(10):
                guided = dps(CallCounter(model), _probabilities, torch.eye(10)[y], zeta, measurement_is_network=True)
                z = diffsample.noise.seeded(100 + y).initial((per_class, 1, 8, 8), float(sigmas[0]))
                accs.append(class_accuracy(diffsample.sample(guided, z, sigmas, solver), y))
                cost = guided.cost()
            rows.append(
                GuidanceRow(
                    "digits",
                    "digits_uncond",
                    f"DPS classifier probabilities zeta={zeta:g}",
                    solver,
                    steps,
                    *_per_sample(cost),
                    accuracy=sum(accs) / 10,
                    note=f"{per_class}/class",
                )
            )
            log(f"digits {steps} DPS zeta={zeta}: {sum(accs) / 10:.3f}")
    return rows


@lru_cache(maxsize=1)
def _noisy_classifier() -> torch.nn.Module:
    from diffsample.models import load_noisy_classifier

    return load_noisy_classifier()


def _probabilities(x0: torch.Tensor) -> torch.Tensor:
    return torch.softmax(_noisy_classifier()(x0.float(), 0.01), dim=1).to(x0.dtype)


PARTS: dict[str, Callable[..., list[GuidanceRow]]] = {
    "classifier": classifier_part,
    "inverse": inverse_part,
    "reward": reward_part,
    "digits": digits_part,
}
DEFAULT_NFES = {"classifier": [5, 10, 20, 40, 80], "inverse": [10, 20, 40], "reward": [10, 20, 40], "digits": [10, 20]}
DEFAULT_SAMPLES = {"classifier": 4000, "inverse": 4000, "reward": 4000, "digits": 1000}


def run_part(part: str, n: int | None, nfes: list[int] | None, log: Callable[[str], None]) -> list[GuidanceRow]:
    start = time.perf_counter()
    rows = PARTS[part](n or DEFAULT_SAMPLES[part], nfes or DEFAULT_NFES[part], log)
    log(f"{part}: {time.perf_counter() - start:.0f} s")
    return rows


def _cell(v: object) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def format_rows(rows: list[GuidanceRow]) -> str:
    fields = [
        "bed",
        "method",
        "solver",
        "steps",
        "nfe",
        "backward",
        "aux",
        "sw",
        "sw_floor",
        "tv",
        "tv_floor",
        "reward_err",
        "denoiser_err",
        "accuracy",
        "note",
    ]
    used = [f for f in fields if any(_cell(getattr(r, f)) not in ("-", "") for r in rows)]
    return text_table(
        [Column(f, None, "  ") for f in used], ([_cell(getattr(r, f)) for f in used] for r in rows), rule="columns"
    )
