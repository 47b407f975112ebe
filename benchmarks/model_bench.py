"""``python -m benchmarks model``: solvers, schedules, tuned plans and peers on the shipped digits network.

The exact beds measure solver error against known answers; this benchmark measures what a user of a real
trained network sees. Everything runs on :func:`diffsample.models.load_digits_model` (an ε-network on
diffusers' linear 1000-step VP table, σ-space span ``[σ_min, σ_max] ≈ [0.0100, 157.4]``):

* **methods** at each NFE budget: our deterministic solvers × step schedules (:data:`MODEL_SOLVERS` ×
  :data:`MODEL_SCHEDULES`; ``time_uniform-trailing`` is diffusers' "trailing" timestep spacing on the
  table), :func:`diffsample.generate` with its default table, a plan from :func:`diffsample.tune`, and
  diffusers schedulers / k-diffusion samplers (:data:`MODEL_PEERS`, :mod:`benchmarks.peers`) driving
  the same network;
* **one starting state**: every walk starts from ``σ_max · z`` with the same per-sample seeded ``z``
  (:func:`diffsample.noise.seeded`, seed ``seed``) and ends at σ = 0, except where a peer's walk does
  not (its row gives ``sigma_start``/``sigma_end``; DEIS ends at the table's σ_min);
* **NFE** is counted from the denoiser's own counter (model calls per sample), never taken from the budget;
* **metrics**:

  - ``fd``: Fréchet distance of the shipped classifier's features (:func:`diffsample.models.frechet_distance`)
    between ``samples`` unconditional samples and all 1797 real digits;
  - ``accuracy`` (and ``fd_cond``): the class-conditional model **without guidance** (w = 1, one model
    evaluation per call) with balanced labels ``i mod 10``, scored by the shipped classifier; the same
    initial noise;
  - ``rmse``: root mean square distance of the unconditional samples to a reference solve of the PF-ODE
    from the same initial states over the same span: DPM-Solver++(3M) on 1000 log-SNR-uniform steps
    (1000 NFE, float64 state; the tests check it against scipy's DOP853). A walk that ends at σ_min is
    compared with the reference state at σ_min.

  Floors (rows of ``library = "data"``): the FD of ``samples`` real digits (a subset of the reference set,
  so optimistic) and of two disjoint real halves (898 vs 899, the model card's floor); FD is biased upwards
  at small sample sizes, so only equal sizes compare.

* **tuned plans**: :func:`diffsample.tune` on the *unconditional* model with ``calibration`` states from
  seed ``calibration_seed`` (never the evaluation seed), with cheaper search settings than the tuner's
  defaults (:func:`tune_settings`: one refined start, ``10·n`` search runs, no restarts; above 20 calls
  ``2·n`` runs and no dynamic programme) — the defaults cost ≈ 180·n² calls of the calibration batch.
  Plans are cached as JSON in ``cache_dir`` (reruns load them); the conditional rows run the plan tuned on
  the unconditional model (same table, same span).

Run ``python -m benchmarks.model_bench`` (or ``python -m benchmarks model --peers``): ≈ 30 min for
NFE 4–20 with 500 samples on one busy CPU core, tuning excluded (≈ 20 min more the first time, cached after).
Measured results and what they show: ``docs/bench-digits-model.md``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

import torch

from diffsample import cache as disk_cache
from diffsample import noise as noise_mod
from diffsample import solvers, steps
from diffsample.errors import BudgetError, DiffsampleError, UnknownNameError
from diffsample.files import atomic_write_text
from diffsample.generate import default_choice, generate
from diffsample.model_family import model_family
from diffsample.sampling import sample
from diffsample.transforms import cfg

from .report import markdown_table, write_csv

__all__ = [
    "MODEL_PEERS",
    "MODEL_SCHEDULES",
    "MODEL_SOLVERS",
    "ModelRow",
    "format_figure_table",
    "format_model_table",
    "model_sigmas",
    "reference_solve",
    "run_model_bench",
    "tune_settings",
    "write_model_csv",
]

MODEL_SOLVERS: tuple[str, ...] = ("euler", "heun", "dpmpp_2m", "dpmpp_3m", "unipc", "ipndm", "deis")
MODEL_SCHEDULES: tuple[str, ...] = ("karras", "logsnr", "time_uniform-trailing")
MODEL_PEERS: tuple[str, ...] = (
    "diffusers:dpm++2m",
    "diffusers:dpm++3m",
    "diffusers:unipc-bh2-o2",
    "diffusers:unipc-bh2-o3",
    "diffusers:deis-o2",
    "diffusers:ddim",
    "k-diffusion:euler-karras@vp1000",
    "k-diffusion:heun-karras@vp1000",
    "k-diffusion:dpmpp_2m-karras@vp1000",
)
"""Peer configurations of :mod:`benchmarks.peers` run by default (those installed). ``dpm++2m`` is
``DPMSolverMultistepScheduler()``'s defaults and ``unipc-bh2-o2`` ``UniPCMultistepScheduler()``'s."""

MODELS = ("digits",)
REFERENCE_SOLVER = "dpmpp_3m"
#: Seed of the per-sample noise streams the stochastic samplers draw (the same for every SDE row).
SDE_NOISE_SEED = 7
REFERENCE_STEPS = 1000
"""Model evaluations of the reference solve used by :func:`run_and_report` (the CLI)."""


@dataclass
class ModelRow:
    """One method at one budget (or a data floor), scored on the shipped network.

    ``nfe`` is the counted model evaluations per sample of the unconditional walk (the conditional walk is
    checked to cost the same); ``rmse`` is NaN where the walk's span differs from the reference's.
    """

    model: str
    method: str
    library: str
    solver: str
    schedule: str
    budget: int
    nfe: int
    steps: int
    fd: float
    fd_cond: float
    accuracy: float
    rmse: float
    sigma_start: float
    sigma_end: float
    samples: int
    seconds: float
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------------------------- helpers


def _cache_dir(cache_dir: str | Path | None) -> Path:
    return disk_cache.cache_dir("model-bench", cache_dir)


def _load_models(model: str) -> tuple[Any, Any]:
    if model not in MODELS:
        raise UnknownNameError("benchmark model", model, list(MODELS))
    from diffsample.models import load_digits_model

    return load_digits_model(conditional=False), load_digits_model(conditional=True)


def model_sigmas(schedule: str, n_steps: int, denoiser: Any) -> torch.Tensor:
    """The ``n_steps``-step schedule ``schedule`` on the model's span, ending in 0 (float64).

    ``time_uniform-<spacing>`` is :func:`diffsample.steps.time_uniform` on the model's DDPM table with that
    timestep spacing (``trailing`` starts at t = 999 = σ_max); other names come from
    :data:`diffsample.steps.SCHEDULES` on ``[σ_min, σ_max]``.
    """
    sched = denoiser.noise_schedule
    if schedule.startswith("time_uniform"):
        spacing = schedule.partition("-")[2] or "linspace"
        return steps.time_uniform(n_steps, sched, spacing=spacing)
    return steps.get(schedule)(n_steps, float(sched.sigma_min), float(sched.sigma_max))


def reference_solve(
    denoiser: Any, x: torch.Tensor, sigma_min: float, sigma_max: float, n_steps: int = 1000
) -> tuple[torch.Tensor, torch.Tensor]:
    """High-accuracy PF-ODE solution from ``x`` at ``sigma_max``: ``(state at sigma_min, state at 0)``, float64.

    DPM-Solver++(3M) (Lu et al. 2022, "DPM-Solver++", §4) on ``n_steps`` levels uniform in
    ``λ = −log σ`` from ``sigma_max`` to ``sigma_min`` (step ``h = log(σ_max/σ_min)/(n_steps − 1)``, 0.0096
    for 1000 steps on the digits span, local error O(h⁴)), then the final step to σ = 0, which for a
    data-prediction solver is ``x0 = D(x(σ_min), σ_min)``. ``n_steps`` model evaluations in all.
    """
    if n_steps < 2:
        raise BudgetError(f"the reference needs at least 2 steps, got {n_steps}")
    sigmas = steps.logsnr(n_steps, sigma_min, sigma_max, append_zero=False)
    x64 = x.to(torch.float64)
    with torch.inference_mode():
        at_min = sample(denoiser, x64, sigmas, solver=REFERENCE_SOLVER)
        final = denoiser(at_min, sigma_min).to(torch.float64)
    return at_min, final


def _cached_reference(
    denoiser: Any, x: torch.Tensor, span: tuple[float, float], tag: str, n_steps: int, folder: Path
) -> tuple[torch.Tensor, torch.Tensor]:
    smin, smax = span
    digest = disk_cache.key_digest(
        [tag, n_steps, smin.hex(), smax.hex(), list(x.shape)], x.to(torch.float64).contiguous().numpy().tobytes()
    )
    saved = disk_cache.cached(
        folder / "reference" / f"{tag}-{n_steps}-{digest[:16]}.pt",
        lambda: dict(zip(("at_min", "final"), reference_solve(denoiser, x, smin, smax, n_steps), strict=True)),
        partial(torch.load, weights_only=True),
        torch.save,
    )
    return saved["at_min"], saved["final"]


def tune_settings(n_calls: int) -> dict[str, Any]:
    """The :func:`diffsample.tune` options used here for a budget of ``n_calls`` model calls.

    Up to 20 calls: one refined starting point, ``10·n`` coordinate-search runs, no iterated-search
    restarts (measured on the digits model at n = 10 with 128 calibration states: two restarts of 100 runs
    never improved the plan, and the whole tuning cost 4.5k calls of the calibration batch instead of the
    defaults' ≈ 20k). Above 20 calls ``2·n`` runs and a sparse dynamic-programme grid (``dp_stride`` 16 leaves
    fewer levels than steps, so the programmes are skipped and the search starts from the log-SNR and
    Karras schedules): the defaults would cost ≈ 180·n² = 1.8M calls at n = 100.
    """
    if n_calls <= 20:
        return {"refine": 1, "max_evals": 10 * n_calls, "kicks": 0}
    return {"refine": 1, "max_evals": 2 * n_calls, "kicks": 0, "dp_stride": 16}


def _tuned_plan(
    denoiser: Any,
    budget: int,
    calibration: torch.Tensor,
    calibration_seed: int,
    folder: Path,
    options: dict[str, Any] | None,
    progress: Callable[[str], None] | None,
) -> Any:
    from diffsample.tuning import Plan, tune

    opts = tune_settings(budget) if options is None else dict(options)
    key = {"budget": budget, "batch": calibration.shape[0], "seed": calibration_seed, "opts": opts}
    path = folder / "plans" / f"digits-nfe{budget}-{disk_cache.key_digest(key)[:12]}.json"

    def tuned() -> Plan:
        sched = denoiser.noise_schedule
        plan = tune(
            denoiser,
            nfe=budget,
            sigma_min=float(sched.sigma_min),
            sigma_max=float(sched.sigma_max),
            calibration=calibration,
            model_id="digits_uncond",
            progress=progress,
            **opts,
        )
        plan.provenance["calibration_seed"] = calibration_seed
        plan.provenance["tune_options"] = opts
        return plan

    return disk_cache.cached(path, tuned, Plan.load, Plan.write)


def _rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.to(torch.float64) - b.to(torch.float64)).square().mean().sqrt())


def _fd(x: torch.Tensor) -> float:
    from diffsample.models import frechet_distance

    if not bool(torch.isfinite(x).all()):
        return math.nan
    return frechet_distance(x)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-4 * max(abs(a), abs(b), 1e-12)


# ------------------------------------------------------------------------------------------------ walks


@dataclass
class _Setup:
    uncond: Any
    cond: Any  # the conditional model with labels bound (w = 1)
    labels: torch.Tensor
    z: torch.Tensor
    sigma_min: float
    sigma_max: float
    ref_min: torch.Tensor
    ref_final: torch.Tensor
    model: str


def _score(
    setup: _Setup,
    method: str,
    library: str,
    solver: str,
    schedule: str,
    budget: int,
    n_steps: int,
    walk: Callable[[Any], tuple[torch.Tensor, float, float]],
    note: str = "",
) -> ModelRow:
    """Run ``walk(denoiser) -> (x, sigma_start, sigma_end)`` on both models and score it."""
    from diffsample.models import class_accuracy

    nfe0 = setup.uncond.nfe
    t0 = time.perf_counter()
    x, s_start, s_end = walk(setup.uncond)
    seconds = time.perf_counter() - t0
    nfe = setup.uncond.nfe - nfe0
    nfe0 = setup.cond.nfe
    xc, _, _ = walk(setup.cond)
    nfe_cond = setup.cond.nfe - nfe0
    if nfe_cond != nfe:
        raise DiffsampleError(f"{method}: the conditional walk cost {nfe_cond} NFE, the unconditional {nfe}")
    rmse = math.nan
    if _close(s_start, setup.sigma_max):
        if s_end == 0:
            rmse = _rmse(x, setup.ref_final)
        elif _close(s_end, setup.sigma_min):
            rmse = _rmse(x, setup.ref_min)
    if not _close(s_start, setup.sigma_max):
        note = "; ".join(filter(None, [note, f"starts at sigma {s_start:.4g}, not sigma_max: no RMSE"]))
    if s_end != 0:
        note = "; ".join(filter(None, [note, f"ends at sigma {s_end:.4g}"]))
    finite = bool(torch.isfinite(xc).all())
    return ModelRow(
        model=setup.model,
        method=method,
        library=library,
        solver=solver,
        schedule=schedule,
        budget=budget,
        nfe=nfe,
        steps=n_steps,
        fd=_fd(x),
        fd_cond=_fd(xc),
        accuracy=class_accuracy(xc, setup.labels) if finite else math.nan,
        rmse=rmse,
        sigma_start=s_start,
        sigma_end=s_end,
        samples=x.shape[0],
        seconds=seconds,
        note=note,
    )


def _ours(setup: _Setup, solver: str, schedule: str, budget: int) -> ModelRow | None:
    spec = solvers.spec(solver)
    try:
        n_steps = spec.steps_for_nfe(budget)
    except BudgetError:
        return None
    sigmas = model_sigmas(schedule, n_steps, setup.uncond)

    def walk(den: Any) -> tuple[torch.Tensor, float, float]:
        # SDE samplers: fresh per-sample streams of SDE_NOISE_SEED for each walk (unconditional and conditional)
        fresh = noise_mod.seeded(SDE_NOISE_SEED) if spec.stochastic else None
        with torch.inference_mode():
            x = sample(den, float(sigmas[0]) * setup.z, sigmas, solver=solver, noise=fresh)
        return x, float(sigmas[0]), float(sigmas[-1])

    note = "stochastic: RMSE vs the ODE solution measures the SDE's spread, not an error" if spec.stochastic else ""
    return _score(setup, solver, "diffsample", solver, schedule, budget, n_steps, walk, note=note)


def _generate_row(setup: _Setup, budget: int) -> ModelRow:
    # what generate picks for this model's family and span
    choice = default_choice(budget, model_family(setup.uncond), sigma_max=setup.sigma_max)
    n_steps = solvers.spec(choice.solver).steps_for_nfe(budget)

    def walk(den: Any) -> tuple[torch.Tensor, float, float]:
        with torch.inference_mode():
            x = generate(
                den, setup.sigma_max * setup.z, nfe=budget, sigma_min=setup.sigma_min, sigma_max=setup.sigma_max
            )
        return x, setup.sigma_max, 0.0

    return _score(
        setup,
        "generate",
        "diffsample",
        choice.solver,
        choice.step_schedule,
        budget,
        n_steps,
        walk,
        note="default table",
    )


def _plan_row(setup: _Setup, budget: int, plan: Any) -> ModelRow:
    def walk(den: Any) -> tuple[torch.Tensor, float, float]:
        with torch.inference_mode():
            x = generate(den, plan.sigmas[0] * setup.z, plan=plan)
        return x, plan.sigmas[0], plan.sigmas[-1]

    prov = plan.provenance
    note = (
        f"tuned on {prov.get('calibration_size')} states, seed {prov.get('calibration_seed')}: "
        f"{prov.get('tuning_nfe', 0):.0f} NFE, {prov.get('tuning_seconds', 0):.0f}s"
    )
    return _score(
        setup, "tuned plan", "diffsample", plan.solver, "tuned", budget, len(plan.sigmas) - 1, walk, note=note
    )


def _peer_row(setup: _Setup, peer: Any, budget: int) -> ModelRow | None:
    def walk(den: Any) -> tuple[torch.Tensor, float, float]:
        run = peer.run(den, setup.z, budget)
        return run.x, run.sigma_start, run.sigma_end

    try:
        row = _score(setup, peer.name, peer.library, peer.sampler, peer.schedule or "", budget, 0, walk, note=peer.note)
    except (BudgetError, ValueError):
        return None
    return row


def _floor_rows(model: str, samples: int, seed: int) -> list[ModelRow]:
    from diffsample.models import digits_data, frechet_distance, real_halves

    x, _ = digits_data()
    g = torch.Generator().manual_seed(seed)
    subset = x[torch.randperm(x.shape[0], generator=g)[: min(samples, x.shape[0])]]
    a, b = real_halves()
    nan = math.nan
    common = {
        "model": model,
        "library": "data",
        "solver": "",
        "schedule": "",
        "budget": 0,
        "nfe": 0,
        "steps": 0,
        "fd_cond": nan,
        "accuracy": nan,
        "rmse": nan,
        "sigma_start": nan,
        "sigma_end": nan,
        "seconds": 0.0,
    }
    return [
        ModelRow(
            method=f"real digits ({subset.shape[0]} of 1797)",
            fd=frechet_distance(subset),
            samples=subset.shape[0],
            note="a subset of the reference set: optimistic",
            **common,
        ),
        ModelRow(
            method="real half vs other half",
            fd=frechet_distance(a, b),
            samples=a.shape[0],
            note="898 vs 899 disjoint digits (model card floor)",
            **common,
        ),
    ]


# ------------------------------------------------------------------------------------------------- main


def run_model_bench(
    model: str = "digits",
    nfes: Sequence[int] = (4, 5, 6, 8, 10, 15, 20),
    *,
    samples: int = 500,
    seed: int = 0,
    solver_names: Sequence[str] | None = MODEL_SOLVERS,
    schedules: Sequence[str] = MODEL_SCHEDULES,
    include_generate: bool = True,
    tuned: bool = True,
    calibration_size: int = 64,
    calibration_seed: int = 1,
    tune_options: dict[str, Any] | None = None,
    peers: Sequence[str] | None = MODEL_PEERS,
    reference_steps: int = 1000,
    floors: bool = True,
    cache_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[ModelRow]:
    """Every method × budget on the shipped network; see the module docstring for what each column means.

    Args:
        model: ``"digits"`` (the only shipped model).
        nfes: budgets in model evaluations per sample.
        samples: evaluation samples per walk (FD, accuracy and RMSE all use the same ``samples`` states).
        seed: the evaluation noise seed (per-sample streams of :func:`diffsample.noise.seeded`).
        solver_names, schedules: our solvers × schedules (``None`` or empty: none).
        include_generate: add :func:`diffsample.generate`'s default at each budget.
        tuned: add a tuned plan per budget (tuned on ``calibration_size`` states of ``calibration_seed``,
            which must differ from ``seed``; ``tune_options`` replaces :func:`tune_settings`).
        peers: names from :mod:`benchmarks.peers` (those not installed are left out; ``None``: none).
        reference_steps: model evaluations of the reference solve (:func:`reference_solve`).
        floors: add the real-data FD rows.
        cache_dir: where reference solutions and plans are cached (default
            ``$DIFFSAMPLE_CACHE/model-bench`` or ``~/.cache/diffsample/model-bench``).
        progress: called with one line per finished method.
    """
    if tuned and calibration_seed == seed:
        raise DiffsampleError("the calibration seed must differ from the evaluation seed (held-out noise)")
    if samples < 2:
        raise DiffsampleError(f"need at least 2 samples for a Fréchet distance, got {samples}")
    for budget in nfes:
        if int(budget) != budget or budget < 1:
            raise BudgetError(f"NFE budgets must be positive integers, got {budget!r}")
    log = progress or (lambda _msg: None)
    folder = _cache_dir(cache_dir)
    uncond, cond_net = _load_models(model)
    from diffsample.models import NULL_LABEL

    labels = torch.arange(samples) % 10
    cond = cfg(cond_net, 1.0, cond_kwargs={"class_labels": labels}, uncond_kwargs={"class_labels": NULL_LABEL})
    sched = uncond.noise_schedule
    smin, smax = float(sched.sigma_min), float(sched.sigma_max)
    z = noise_mod.seeded(seed).standard_normal((samples, 1, 8, 8))
    t0 = time.perf_counter()
    ref_min, ref_final = _cached_reference(uncond, smax * z, (smin, smax), f"{model}-uncond", reference_steps, folder)
    log(f"reference ready ({time.perf_counter() - t0:.1f}s)")
    setup = _Setup(uncond, cond, labels, z, smin, smax, ref_min, ref_final, model)

    rows: list[ModelRow] = _floor_rows(model, samples, seed) if floors else []
    # the reference itself as a row: its samples are what every ODE solver converges to (unconditional only)
    rows.append(
        ModelRow(
            model=model,
            method=f"reference ({REFERENCE_SOLVER}, {reference_steps} log-SNR steps)",
            library="diffsample",
            solver=REFERENCE_SOLVER,
            schedule="logsnr",
            budget=reference_steps,
            nfe=reference_steps,
            steps=reference_steps,
            fd=_fd(ref_final),
            fd_cond=math.nan,
            accuracy=math.nan,
            rmse=0.0,
            sigma_start=smax,
            sigma_end=0.0,
            samples=samples,
            seconds=math.nan,
            note="the RMSE reference (unconditional model only)",
        )
    )

    for solver in solver_names or ():
        for schedule in schedules:
            for budget in nfes:
                row = _ours(setup, solver, schedule, int(budget))
                if row is not None:
                    rows.append(row)
            log(f"{solver} / {schedule} done")
    for budget in nfes:
        if include_generate:
            rows.append(_generate_row(setup, int(budget)))
        if tuned:
            calibration = smax * noise_mod.seeded(calibration_seed).standard_normal((calibration_size, 1, 8, 8))
            t1 = time.perf_counter()
            plan = _tuned_plan(uncond, int(budget), calibration, calibration_seed, folder, tune_options, None)
            log(f"plan for NFE {budget} ready ({time.perf_counter() - t1:.1f}s)")
            rows.append(_plan_row(setup, int(budget), plan))
    for peer in _peer_configs(peers):
        for budget in nfes:
            row = _peer_row(setup, peer, int(budget))
            if row is not None:
                rows.append(row)
        log(f"{peer.name} done")
    return rows


def _peer_configs(names: Sequence[str] | None) -> list[Any]:
    if not names:
        return []
    from .peers import peer_configs, peers_available

    if not any(peers_available().values()):
        return []
    available = {c.name: c for c in peer_configs()}
    return [available[n] for n in names if n in available]


# ---------------------------------------------------------------------------------------------- reports


def _cell(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def format_model_table(rows: Sequence[ModelRow]) -> str:
    """Markdown: one line per (method, schedule), with FD / accuracy / RMSE per budget, best FD first per budget.

    Long form: one row per (method, budget) sorted by budget then FD.
    """
    header = [
        "NFE",
        "method",
        "library",
        "schedule",
        "counted NFE",
        "FD",
        "FD (cond.)",
        "class acc.",
        "RMSE vs ref.",
        "σ span",
        "time (s)",
        "note",
    ]
    order = sorted(rows, key=lambda r: (r.budget if r.library != "data" else -1, _nan_last(r.fd)))

    def line(r: ModelRow) -> list[Any]:
        span = "—" if math.isnan(r.sigma_start) else f"{r.sigma_start:.4g} → {r.sigma_end:.3g}"
        return [
            r.budget or "—",
            r.method,
            r.library,
            r.schedule or "—",
            r.nfe or "—",
            _cell(r.fd),
            _cell(r.fd_cond),
            _percent(r.accuracy),
            _cell(r.rmse),
            span,
            _cell(r.seconds, 2),
            r.note,
        ]

    return markdown_table(header, (line(r) for r in order))


def _percent(v: float) -> str:
    return "—" if math.isnan(v) else f"{100 * v:.1f} %"


def _nan_last(v: float) -> float:
    return math.inf if math.isnan(v) else v


def format_figure_table(
    rows: Sequence[ModelRow],
    methods: Sequence[str] = ("generate", "tuned plan", "diffusers:dpm++2m", "diffusers:unipc-bh2-o2"),
    nfes: Sequence[int] | None = None,
    columns: Sequence[str] = ("fd", "accuracy"),
) -> str:
    """Markdown: ``columns`` (of ``fd``, ``fd_cond``, ``accuracy``, ``rmse``) per method (lines) and budget (columns).

    The default is the issue's figure table: FD and class accuracy of four methods.
    """
    budgets = sorted({r.budget for r in rows if r.library != "data"}) if nfes is None else list(nfes)
    labels = {"fd": "FD", "fd_cond": "FD (cond.)", "accuracy": "acc.", "rmse": "RMSE"}
    what = " / ".join(labels[c] for c in columns)

    def fmt(r: ModelRow, c: str) -> str:
        return _percent(r.accuracy) if c == "accuracy" else _cell(getattr(r, c))

    def cell(m: str, b: int) -> str:
        hit = [r for r in rows if r.method == m and r.budget == b]
        return " / ".join(fmt(hit[0], c) for c in columns) if hit else "—"

    header = ["method", *(f"NFE {b}: {what}" for b in budgets)]
    return markdown_table(header, ([m, *(cell(m, b) for b in budgets)] for m in methods))


def write_model_csv(rows: Sequence[ModelRow], path: str | Path) -> Path:
    """Write the rows as CSV (one column per :class:`ModelRow` field)."""
    return write_csv(rows, path, [f.name for f in fields(ModelRow)])


def run_and_report(
    nfes: Sequence[int],
    samples: int,
    out: str | Path | None,
    *,
    peers: bool,
    solver_names: Sequence[str] | None = None,
    schedules: Sequence[str] | None = None,
    tuned: bool = True,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> str:
    """Run the bench with the CLI's options, write ``digits-model.csv`` and ``.md`` under ``out``, return the text."""
    rows = run_model_bench(
        "digits",
        nfes,
        samples=samples,
        seed=seed,
        peers=MODEL_PEERS if peers else None,
        solver_names=MODEL_SOLVERS if solver_names is None else solver_names,
        schedules=MODEL_SCHEDULES if schedules is None else schedules,
        tuned=tuned,
        calibration_seed=seed + 1,
        reference_steps=REFERENCE_STEPS,
        progress=progress,
    )
    text = (
        f"## Digits model: {samples} samples per method, seed {seed}\n\n"
        + format_model_table(rows)
        + "\n\n### FD / class accuracy\n\n"
        + format_figure_table(rows, nfes=list(nfes))
    )
    if out is not None:
        folder = Path(out)
        write_model_csv(rows, folder / "digits-model.csv")
        atomic_write_text(folder / "digits-model.md", text + "\n")
    return text


if __name__ == "__main__":
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="the digits-model benchmark (prints Markdown)")
    parser.add_argument("--nfe", default="4,5,6,8,10,15,20")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--out", default=None)
    a = parser.parse_args()
    print(
        run_and_report(
            [int(v) for v in a.nfe.split(",")],
            a.samples,
            a.out,
            peers=not a.no_peers,
            progress=lambda m: print(m, file=sys.stderr, flush=True),
        )
    )
