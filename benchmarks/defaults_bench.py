"""The evidence behind ``generate``'s per-family defaults, and the figures of ``python -m benchmarks defaults``.

**Units.** A unit is one denoiser on one span, in one model family (:mod:`diffsample.model_family`), with the
exact end point of its probability-flow ODE for fixed noise batches of 64 (seed 0 for the figures, seed 1 for the
calibration of automatic mode and the tuner — the tuner's 256 noises, :data:`diffsample.cli.TUNE_CALIBRATION`, extend
that batch — seeds 2 and 3 for the selection, :data:`SELECTION_SEEDS`):

* exact beds (``ring2d``, ``mixture64``, ``digits``) on the span of every family: EDM's ``[0.002, 80]``, the
  DDPM table's ``[0.01, 157.4]`` (VP), Stable Diffusion's table ``[0.029, 14.6]`` (VP, ``vp_sd``), rectified
  flow's ``[0.001, 999]`` and with shift 3 ``[0.003, 2997]``; reference: DOP853
  (:func:`diffsample.testbeds.reference_solution`, cached);
* the shipped digits networks: VP ε on the DDPM table (``digits_uncond``, ``digits_cond`` unguided), VP ε on Stable
  Diffusion's table (``digits_uncond_sd``, and the 16×16 ``digits16_uncond_sd`` and ``digits16_uncond_sd_small``),
  flow matching (``digits_flow`` and the 16×16 ``digits16_flow``, each without and with shift 3), and for the EDM
  family ``digits_uncond``, ``digits_cond`` and ``digits16_flow`` seen as bare σ-space functions on EDM's span
  (``*_edmview``, :class:`SigmaSpaceView`: the same ODE, the schedule hidden); reference: this
  library's teacher (DPM-Solver++(3M), 477 log-SNR steps, :func:`diffsample.tuning.teacher_trajectory`), cached on
  disk;
* for the figures only (``units(held_out=True)``, :data:`HELD_OUT_NETWORKS`): two networks the selection never sees,
  smaller and of another seed, on the DDPM table and on Stable Diffusion's — the defaults on networks they were not
  chosen on; and two networks seen through a bare σ-space wrapper (:data:`HELD_OUT_WRAPPED`, :class:`SigmaSpaceView`),
  which ``generate`` takes for the EDM family, on EDM's span — the held-out test of the EDM rows;
* for the selection only (``units(guided=True)``): ``digits_cond`` under classifier-free guidance of weight 2 and 4
  (:class:`LabelledGuidance`, 2 evaluations per call), the evidence for the guided table.

**Selection procedure** (:func:`select_defaults`). For every table (a family; ``"<family>+cfg"`` for guided units;
``"<family>+short"`` for VP units on Stable Diffusion's short span, :func:`diffsample.model_family.short_span`) and
budget (4, 5, 6, 8, 10, 15, 20, 30, 50 evaluations), every configuration of :data:`SOLVERS` × :data:`SCHEDULES`
(four step schedules, ``time_uniform`` where the family has a time, each also ending the trailing way) is run on
every unit on the selection's own noises (:data:`SELECTION_SEEDS`), and its error — the batch RMSE over those 128
samples, the figures' own metric — is divided by the **best peer's**
on that unit and budget (:func:`best_peer_errors`: the best diffusers / k-diffusion configuration on the
same span, the figure the defaults are judged by), or by the best configuration's where no peer runs (the guided
units, whose calls cost 2 evaluations); errors below the floor count as the floor (1e-3 on networks, the figures'
:data:`ERROR_FLOOR`; one 8-bit level on beds, :data:`SELECTION_FLOOR`). Per budget range of :data:`BUDGET_RANGES`
(one table row each), the default is the configuration with the smallest **worst-case** ratio over all cells of
the family and range, a bed's ratio divided by :data:`BED_GUARD` where the family has networks (the networks
decide, a bed vetoes beyond 3×); scores within 2 % tie, broken by the geometric mean. So no single bed, network or
budget decides; the printed selection table gives the choice, its score, geometric mean, worst raw ratio on
networks and on beds, and the runner-up. The guard also absorbs the beds' lottery: at NFE ≥ 15 the RMSE of 64
samples on a bed is set by the one or two samples that end in another mode than the reference (each worth ~0.5 of
RMSE). Until session 7 of issue #13 the beds were scored by the median sample and every cell against the library's
own best configuration: the median made the ``digits`` bed, whose walks that call the denoiser at σ_min snap onto a
training image, veto every trailing walk at NFE 4–6 (ratios of 10–30 where the batch RMSE, the figure, showed 0.65×
the peer), and the library's own best asked for more than the figures do on one network and less on another. VP x0
and v models have no unit of their own (no such network here): their σ-space denoiser is the same function as an ε
model's up to network error, so they take the VP units' choice.

**Figures** (:func:`figure_rows`): per unit and budget, ``generate``, ``generate(auto=True)`` and the tuned plan
divided by the best diffusers / k-diffusion configuration that walks the same span (σ_max → 0); the tuned plan
also divided by the best hand-made configuration (peers included), all on the same held-out noise (seed 0,
never seen by the tuner or by the automatic mode, which calibrate on seed 1).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from diffsample import cache, noise, sample, solvers, steps
from diffsample.auto import GUIDED_SUFFIX
from diffsample.cli import TUNE_CALIBRATION
from diffsample.denoisers import CountingDenoiser, as_denoiser
from diffsample.errors import DiffsampleError
from diffsample.model_family import FAMILIES, SHORT_SPAN_SUFFIX, short_span
from diffsample.schedules import DiscreteVP, NoiseSchedule, RectifiedFlow
from diffsample.tuning.library import LIBRARY_SOLVERS
from diffsample.tuning.search import pooled_rmse as pooled_parts_rmse

__all__ = [
    "SCHEDULES",
    "FamilyView",
    "FigureRow",
    "figure_rows",
    "format_figures",
    "format_summary",
    "format_tails",
    "sample_errors",
    "tail_rows",
    "SOLVERS",
    "Unit",
    "config_errors",
    "peer_errors",
    "select_defaults",
    "BUDGET_RANGES",
    "HELD_OUT_NETWORKS",
    "units",
]

SOLVERS: tuple[str, ...] = ("euler", "heun", *LIBRARY_SOLVERS)
"""Fixed-step deterministic solvers the selection considers: Euler, Heun and the tuner's library pool
(:data:`diffsample.tuning.library.LIBRARY_SOLVERS`: DDIM, DPM-Solver-2M, DPM-Solver++(2M/3M), DPM-Solver-3M, iPNDM,
iPNDM-v, UniPC (2, 3, bh1), DEIS)."""

BASE_SCHEDULES: tuple[str, ...] = ("logsnr", "karras", "kl_optimal", "time_uniform")

SCHEDULES: tuple[str, ...] = BASE_SCHEDULES + tuple(f"{name}{steps.TRAILING}" for name in BASE_SCHEDULES)
"""Step schedules it considers (``time_uniform`` only for families with a time: VP and flow), each ending at σ_min
and ending the trailing way (``+trailing``: no call at σ_min, :data:`diffsample.steps.TRAILING`)."""

SD_TABLE_CONFIG: dict[str, Any] = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
"""Stable Diffusion's table in diffusers' scheduler options (on top of the ``vp1000`` catalogue's)."""

VP_TABLES: dict[str, DiscreteVP] = {
    "vp": DiscreteVP(beta_schedule="linear"),
    "vp_sd": DiscreteVP(**SD_TABLE_CONFIG),
}
"""The VP spans' tables: DDPM's (linear β 1e-4 → 0.02) and Stable Diffusion's (:data:`SD_TABLE_CONFIG`)."""

SPANS: dict[str, tuple[float, float]] = {
    "edm": (0.002, 80.0),
    **{name: (float(table.sigma_min), float(table.sigma_max)) for name, table in VP_TABLES.items()},
    "flow": (float(RectifiedFlow().sigma_min), float(RectifiedFlow().sigma_max)),
    "flow_shift": (float(RectifiedFlow(shift=3.0).sigma_min), float(RectifiedFlow(shift=3.0).sigma_max)),
}

BATCH = 64

HELD_OUT_NETWORKS: tuple[str, ...] = ("digits_uncond_holdout", "digits_cond_sd_holdout")
"""Networks in the figures only (``units(held_out=True)``), never in the selection: smaller networks of another seed
than the selection's (width 256, 3 blocks, seed 1), on the DDPM table (unconditional) and on Stable Diffusion's
(conditional, walked unconditionally): what the defaults do on networks they were not chosen on."""

HELD_OUT_WRAPPED: tuple[str, ...] = (
    "digits_uncond_holdout_edmview",
    "digits_flow_edmview",
    "digits_cond_sd_holdout_sdview",
)
"""Networks in the figures only, seen through :class:`SigmaSpaceView`: on EDM's span ``[0.002, 80]`` the held-out VP
ε network and the flow network, neither ever seen in that form by a selection; on Stable Diffusion's short span
``[0.029, 14.6]`` the held-out network of that table (as a k-diffusion ``CompVisDenoiser`` or ComfyUI presents a
Stable Diffusion model: σ-space, no schedule, its own span), which takes the short-span rows
(:func:`diffsample.model_family.short_span`). A σ-space function without a noise
schedule is what a k-diffusion-style wrapper hands ``generate``; it takes the ``edm`` family
(:func:`diffsample.model_family.model_family`), whose rows and candidates are chosen on the beds and the selection's
``*_edmview`` networks (no EDM-trained network here), so these test them on networks they were not chosen on."""


class SigmaSpaceView:
    """A network as a bare σ-space denoiser ``D(x, σ)``: its noise schedule and prediction type hidden (kept under a
    name the family lookup does not follow), as a k-diffusion-style wrapper would present it."""

    def __init__(self, network: Any, name: str) -> None:
        self._network = network
        self.name = name

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return self._network(x, sigma, **kwargs)


def _sigma_space_view(
    name: str,
    build: Callable[[], Any],
    shape: tuple[int, ...] | None = None,
    held_out: bool = False,
    span: str = "edm",
) -> Unit:
    """The network ``build`` makes, seen through :class:`SigmaSpaceView` on ``span`` (of :data:`SPANS`): a unit of
    the EDM family, the family of every σ-space denoiser without a noise schedule."""
    return Unit(name, "edm", span, lambda: SigmaSpaceView(build(), name), None, "teacher", shape, held_out=held_out)


GUIDANCE_WEIGHTS: tuple[float, ...] = (2.0, 4.0)
"""Classifier-free guidance weights of the guided units (diffusers' numbering: 1 is unguided)."""


@dataclass
class Unit:
    """One denoiser on one span, with the exact end point of a fixed noise batch."""

    name: str
    family: str
    span_name: str
    build: Callable[[], Any]
    noise_schedule: NoiseSchedule | None
    reference_kind: str
    image_shape: tuple[int, ...] | None = None
    calls_per_eval: int = 1
    held_out: bool = False
    _den: Any = field(default=None, repr=False)
    _refs: dict = field(default_factory=dict, repr=False)

    @property
    def span(self) -> tuple[float, float]:
        return SPANS[self.span_name]

    @property
    def table(self) -> str:
        """The table the unit's evidence is for: its family's; its guided table (``"<family>+cfg"``) when a call
        costs 2 evaluations (:data:`diffsample.generate.GUIDED_TABLES`); its short-span table (``"<family>+short"``)
        on a short VP span (:data:`diffsample.generate.SHORT_SPAN_TABLES`)."""
        if self.calls_per_eval > 1:
            return f"{self.family}{GUIDED_SUFFIX}"
        return f"{self.family}{SHORT_SPAN_SUFFIX}" if short_span(self.family, self.span[1]) else self.family

    @property
    def denoiser(self) -> Any:
        if self._den is None:
            self._den = self.build()
        return self._den

    def shape(self) -> tuple[int, ...]:
        if self.image_shape is not None:
            return self.image_shape
        return tuple(getattr(self.denoiser, "shape", (1, 8, 8)))

    def noise(self, seed: int = 0, size: int = BATCH) -> torch.Tensor:
        """Unit-variance noise ``z`` (the state at σ_max is ``σ_max · z``), float64."""
        return noise.seeded(seed).initial((size, *self.shape()), 1.0, dtype=torch.float64)

    def reference(self, seed: int = 0, size: int = BATCH) -> torch.Tensor:
        key = (seed, size)
        if key not in self._refs:
            self._refs[key] = self._solve_reference(self.noise(seed, size) * self.span[1])
        return self._refs[key]

    def _solve_reference(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self.span
        if self.reference_kind == "exact":
            from diffsample.testbeds import reference_solution

            return reference_solution(self.denoiser, x, hi, 0.0)
        from diffsample.tuning import teacher_trajectory

        settings = {"unit": self.name, "span": [lo, hi], "teacher": "dpmpp_3m 120x4", "version": 1}
        path = cache.cache_dir("defaults-references") / f"{cache.key_digest(settings, x.numpy().tobytes())}.pt"

        def solve() -> torch.Tensor:
            return teacher_trajectory(self.denoiser, x.to(torch.float32), sigma_min=lo, sigma_max=hi).final.to(
                torch.float64
            )

        return cache.cached(path, solve, lambda p: torch.load(p, weights_only=True), lambda v, h: torch.save(v, h))


def _bed(name: str) -> Callable[[], Any]:
    def build() -> Any:
        from diffsample.testbeds import get_bed

        return get_bed(name)

    return build


def _digits(conditional: bool, variant: str = "default") -> Callable[[], Any]:
    def build() -> Any:
        from diffsample.models import load_digits_model

        return load_digits_model(conditional, variant=variant)

    return build


def _flow(shift: float, name: str = "digits_flow") -> Callable[[], Any]:
    def build() -> Any:
        from diffsample.models.digits_flow import load_digits_flow_model

        return load_digits_flow_model(shift, name=name)

    return build


class LabelledGuidance:
    """The conditional digits network under classifier-free guidance of weight ``w``, labels ``arange(B) % 10`` for
    a batch of ``B`` (so a walk of any batch size is a valid guided problem); 2 evaluations per call."""

    def __init__(self, w: float) -> None:
        from diffsample import cfg
        from diffsample.models import NULL_LABEL, load_digits_model

        self.inner = cfg(load_digits_model(True), w, uncond_kwargs={"class_labels": NULL_LABEL}, batched=True)
        self.nfe_per_call = 2
        self.name = f"digits_cond_cfg{w:g}"

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        labels = torch.arange(x.shape[0]) % 10
        return self.inner(x, sigma, class_labels=labels)


def _guided(w: float) -> Callable[[], Any]:
    return lambda: LabelledGuidance(w)


def units(
    beds: Sequence[str] = ("ring2d", "mixture64", "digits"),
    networks: bool = True,
    guided: bool = False,
    held_out: bool = False,
) -> list[Unit]:
    """Every unit: the beds on every family's span, and the digits networks (module docstring); with ``guided``
    also the conditional network under guidance (:data:`GUIDANCE_WEIGHTS`), evidence for the guided table; with
    ``held_out`` also the networks the selection never sees (:data:`HELD_OUT_NETWORKS`, :data:`HELD_OUT_WRAPPED`), for
    the figures."""
    vp_table, sd_table = VP_TABLES["vp"], VP_TABLES["vp_sd"]
    time_of = {"edm": None, **VP_TABLES, "flow": RectifiedFlow(), "flow_shift": RectifiedFlow(shift=3.0)}
    family_of = {"edm": "edm", "vp": "vp_eps", "vp_sd": "vp_eps", "flow": "flow", "flow_shift": "flow_shift"}
    out: list[Unit] = []
    for span in SPANS:
        for bed in beds:
            out.append(Unit(f"{bed}@{span}", family_of[span], span, _bed(bed), time_of[span], "exact"))
    if networks:
        out.append(Unit("digits_uncond", "vp_eps", "vp", _digits(False), vp_table, "teacher"))
        out.append(Unit("digits_cond", "vp_eps", "vp", _digits(True), vp_table, "teacher"))
        out.append(Unit("digits_uncond_sd", "vp_eps", "vp_sd", _digits(False, "sd"), sd_table, "teacher"))
        big = (1, 16, 16)
        out.append(Unit("digits16_uncond_sd", "vp_eps", "vp_sd", _digits(False, "sd16"), sd_table, "teacher", big))
        out.append(
            Unit("digits16_uncond_sd_small", "vp_eps", "vp_sd", _digits(False, "sd16_small"), sd_table, "teacher", big)
        )
        shifted = RectifiedFlow(shift=3.0)
        for name, shape in (("digits_flow", None), ("digits16_flow", big)):
            out.append(Unit(name, "flow", "flow", _flow(1.0, name), RectifiedFlow(), "teacher", shape))
            shifted_unit = Unit(
                f"{name}_shift3", "flow_shift", "flow_shift", _flow(3.0, name), shifted, "teacher", shape
            )
            out.append(shifted_unit)
        out.append(_sigma_space_view("digits_uncond_edmview", _digits(False)))
        out.append(_sigma_space_view("digits_cond_edmview", _digits(True)))
        out.append(_sigma_space_view("digits16_flow_edmview", _flow(1.0, "digits16_flow"), big))
    if networks and held_out:
        for name, span, net, table in (
            ("digits_uncond_holdout", "vp", _digits(False, "holdout"), vp_table),
            ("digits_cond_sd_holdout", "vp_sd", _digits(True, "sd_holdout"), sd_table),
        ):
            out.append(Unit(name, "vp_eps", span, net, table, "teacher", held_out=True))
        out.append(_sigma_space_view("digits_uncond_holdout_edmview", _digits(False, "holdout"), held_out=True))
        out.append(_sigma_space_view("digits_flow_edmview", _flow(1.0, "digits_flow"), held_out=True))
        sd_view = _sigma_space_view("digits_cond_sd_holdout_sdview", _digits(True, "sd_holdout"), None, True, "vp_sd")
        out.append(sd_view)
    if networks and guided:
        for w in GUIDANCE_WEIGHTS:
            out.append(Unit(f"digits_cond_cfg{w:g}", "vp_eps", "vp", _guided(w), vp_table, "teacher", calls_per_eval=2))
    return out


def rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    v = float((a.to(torch.float64) - b.to(torch.float64)).square().mean().sqrt())
    return v if math.isfinite(v) else math.inf


def unit_sigmas(unit: Unit, schedule: str, n_steps: int) -> torch.Tensor | None:
    """The walk of ``schedule`` with ``n_steps`` steps on the unit's span, ``None`` where it does not apply."""
    from diffsample.generate import schedule_levels

    if steps.get(schedule).needs_noise_schedule and unit.noise_schedule is None:
        return None
    lo, hi = unit.span
    return schedule_levels(schedule, n_steps, lo, hi, unit.noise_schedule)


def median_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """The median over samples of each sample's RMS error: the typical sample's error, which the few samples that
    end in another mode than the reference (and dominate a batch RMSE on the beds) do not move."""
    per = sample_errors(a, b)
    v = float(per.median())
    return v if math.isfinite(v) and bool(torch.isfinite(per).all()) else math.inf


METRICS: dict[str, Callable[[torch.Tensor, torch.Tensor], float]] = {"rmse": rmse, "median": median_error}
"""Error metrics: the batch RMSE (the figures and the selection) and the typical sample's error (``--tails``)."""


def walk_output(unit: Unit, sigmas: torch.Tensor, solver: str, seed: int = 0, size: int = BATCH) -> torch.Tensor:
    """The unit's noise (``seed``) walked down ``sigmas`` by ``solver`` (float64 on exact beds, float32 on
    networks)."""
    dtype = torch.float64 if unit.reference_kind == "exact" else torch.float32
    x = (unit.noise(seed, size) * float(sigmas[0])).to(dtype)
    return sample(unit.denoiser, x, sigmas, solver=solver)


def run_walk(
    unit: Unit, sigmas: torch.Tensor, solver: str, seed: int = 0, size: int = BATCH, metric: str = "rmse"
) -> float:
    try:
        out = walk_output(unit, sigmas, solver, seed, size)
    except DiffsampleError:
        return math.inf
    return METRICS[metric](out, unit.reference(seed, size))


def config_sigmas(unit: Unit, solver: str, schedule: str, nfe: int) -> torch.Tensor | None:
    """The levels ``solver`` walks on ``schedule`` within ``nfe`` evaluations of the unit (a guided unit's call costs
    2), ``None`` where the budget buys no step or the schedule does not start at the unit's σ_max."""
    try:
        n = solvers.spec(solver).steps_for_nfe(nfe // unit.calls_per_eval)
    except DiffsampleError:
        return None
    sig = unit_sigmas(unit, schedule, n)
    if sig is None or abs(float(sig[0]) - unit.span[1]) > 1e-6 * unit.span[1]:
        return None
    return sig


def config_errors(unit: Unit, nfe: int, metric: str = "rmse", seed: int = 0) -> dict[str, float]:
    """Error (``metric`` of :data:`METRICS`) of every solver × schedule at ``nfe`` evaluations on the unit's noise
    ``seed`` (key ``"solver/schedule"``)."""
    out: dict[str, float] = {}
    for solver in SOLVERS:
        for schedule in SCHEDULES:
            sig = config_sigmas(unit, solver, schedule, nfe)
            if sig is not None:
                out[f"{solver}/{schedule}"] = run_walk(unit, sig, solver, seed=seed, metric=metric)
    return out


def peer_errors(unit: Unit, nfe: int, seed: int = 0) -> dict[str, float]:
    """RMSE of every installed diffusers / k-diffusion configuration that walks the unit's span σ_max → 0 within
    ``nfe`` evaluations. VP and EDM units use the peers' own catalogue on that span (``vp1000``, ``edm``); units
    on Stable Diffusion's table (``vp_sd``) the catalogue's diffusers schedulers built on that table
    (:data:`SD_TABLE_CONFIG`) and k-diffusion's samplers on k-diffusion's schedules over its span; flow units
    diffusers' FlowMatchEuler, its DPM-Solver++ set up for flow models (``use_flow_sigmas``,
    :data:`benchmarks.peers.diffusers.FLOW_SCHEDULERS`) and k-diffusion's samplers over the flow span."""
    z = unit.noise(seed).to(torch.float32)
    ref = unit.reference(seed)
    out: dict[str, float] = {}
    if unit.span_name in ("edm", "vp", "vp_sd"):
        out.update(_catalogue_errors(unit, z, ref, nfe))
    else:
        out.update(_flow_match_euler(unit, z, ref, nfe))
        out.update(_diffusers_flow(unit, z, ref, nfe))
    if unit.span_name not in ("edm", "vp"):
        # k-diffusion's samplers on its own schedules over the unit's span (the catalogue's k-diffusion entries are
        # for the DDPM and EDM spans only)
        out.update(_kdiffusion_on_span(unit, z, ref, nfe))
    return out


def _catalogue_errors(unit: Unit, z: torch.Tensor, ref: torch.Tensor, nfe: int) -> dict[str, float]:
    """The peers' catalogue on the unit's span (``edm`` or ``vp1000``; on Stable Diffusion's table its diffusers
    schedulers, rebuilt on that table), keeping the walks that go σ_max → 0 within ``nfe`` calls."""
    from .peers import peer_configs

    on_sd = unit.span_name == "vp_sd"
    out: dict[str, float] = {}
    for cfg in peer_configs(span="edm" if unit.span_name == "edm" else "vp1000"):
        if not cfg.fixed_nfe or (on_sd and cfg.library != "diffusers"):
            continue
        try:
            run = cfg.run(unit.denoiser, z, nfe, SD_TABLE_CONFIG if on_sd else None)
        except (ValueError, RuntimeError, ZeroDivisionError, DiffsampleError):
            continue
        if run.nfe > nfe or run.nfe == 0 or run.sigma_end != 0.0:
            continue
        if not math.isclose(run.sigma_start, unit.span[1], rel_tol=1e-5):
            continue
        out[cfg.name] = rmse(run.x, ref)
    return out


def _flow_match_euler(unit: Unit, z: torch.Tensor, ref: torch.Tensor, nfe: int) -> dict[str, float]:
    # diffusers' FlowMatchEulerDiscreteScheduler: Euler in t on x_t = (1 − t) x0 + t ε over uniform t (with the
    # shift), x_t' = x_t + (t' − t) u. With u = ε̂ − x̂0 this is x_t' = (1 − t') x̂0 + t' ε̂: DDIM on the same levels
    # (Song et al. 2021), which is how it is run here (σ = t/(1 − t)).
    sig = unit_sigmas(unit, "time_uniform", nfe)
    if sig is None:
        return {}
    x = sample(unit.denoiser, z * float(sig[0]), sig, solver="ddim")
    return {f"diffusers:FlowMatchEuler (= ddim on uniform t)@{unit.span_name}": rmse(x, ref)}


def _diffusers_flow(unit: Unit, z: torch.Tensor, ref: torch.Tensor, nfe: int) -> dict[str, float]:
    from .peers.catalogue import peers_available
    from .peers.diffusers import FLOW_SCHEDULERS, diffusers_flow_sample

    if peers_available()["diffusers"] is None or not isinstance(unit.noise_schedule, RectifiedFlow):
        return {}
    out: dict[str, float] = {}
    for name in FLOW_SCHEDULERS:
        x, used, start = diffusers_flow_sample(name, unit.denoiser, z, nfe, float(unit.noise_schedule.shift))
        if 0 < used <= nfe and math.isclose(start, unit.span[1], rel_tol=1e-4):
            out[f"diffusers:{name}@{unit.span_name}"] = rmse(x, ref)
    return out


def _kdiffusion_on_span(unit: Unit, z: torch.Tensor, ref: torch.Tensor, nfe: int) -> dict[str, float]:
    from .peers.catalogue import peers_available
    from .peers.kdiffusion import KDIFFUSION_SAMPLERS, kdiffusion_sample, kdiffusion_sigmas, kdiffusion_steps_for_nfe
    from .peers.spans import Span

    out: dict[str, float] = {}
    if peers_available()["k-diffusion"] is None:
        return out
    lo, hi = unit.span
    den = unit.denoiser
    span = Span(unit.span_name, lo, hi)
    for sampler in KDIFFUSION_SAMPLERS:
        for schedule in ("karras", "exponential"):
            try:
                n = kdiffusion_steps_for_nfe(sampler, nfe)
                sig = kdiffusion_sigmas(schedule, n, span)
                x, used = kdiffusion_sample(sampler, den, z * float(sig[0]), sig)
            except (ValueError, RuntimeError, ZeroDivisionError, AttributeError, DiffsampleError):
                continue
            if 0 < used <= nfe:
                out[f"k-diffusion:{sampler}-{schedule}@{unit.span_name}"] = rmse(x, ref)
    return out


@dataclass
class Selection:
    family: str
    budgets: tuple[int, ...]
    choice: str
    worst: float
    mean: float
    runner_up: str
    runner_up_worst: float
    units: list[str]
    network_worst: float = math.nan
    bed_worst: float = math.nan


BUDGET_RANGES: tuple[tuple[int, ...], ...] = ((4, 5, 6), (8, 10), (15, 20), (30, 50))
"""Budgets that share one row of a family's table: a configuration is judged over all of them at once."""

TIE_TOLERANCE = 0.02
"""Scores within 2 % of the smallest are a tie, which the geometric mean breaks: configurations that make the
same walk up to rounding (DEIS and DPM-Solver-3M on log-SNR steps) or share one degenerate worst cell (on
``ring2d`` on Stable Diffusion's span at NFE 50 every configuration is 2.66–2.71× the best) differ there by less
than the measurement's own noise."""

ERROR_FLOOR = 1e-3
"""In the figures' summary, errors below this count as this (the digits bed ends exactly on a training image, so
some walks have error 0: a per-cell best of 0 would make every ratio infinite)."""

SELECTION_FLOOR = 2 / 255
"""In the selection, errors on an exact bed below one 8-bit level of data in [−1, 1] count as that level: a
difference below it is invisible in an image, and on the beds it is a snap onto a training point, not solver
accuracy (the digits bed's walks that call the denoiser at σ_min land exactly on a training image; with a floor of
1e-3 their ratios of up to 500 decided whole rows, though every configuration was within 0.01 of the exact end
point there). Networks take the figures' :data:`ERROR_FLOOR`."""

SELECTION_SEEDS: tuple[int, ...] = (2, 3)
"""The noises the selection runs on: two batches of 64 (seeds 2 and 3), their errors pooled into one batch RMSE over
128 samples. Neither the figures' held-out noise (seed 0) nor the calibration noise of automatic mode and the tuner
(seed 1) decides a row, so the figures measure the tables out of sample. Until session 7 of issue #13 the selection
ran on the figures' own noise: repeated on seed 2 alone it chose another row in 14 of 20 (table, budget range)
cells, 6 of them close calls, the rest decided by a bed's mode lottery or, at VP 8–10, by the networks' heavy tails
(the seed-0 row scored 1.31 there on seed 0 and 1.70 on seed 2; ``docs/bench-defaults.md``) — one batch of 64 was
too few to choose on."""

BED_GUARD = 3.0
"""In a family with networks, an exact bed's ratio counts divided by this: the networks decide (they are what
users sample, and their batch RMSE is what the figures measure), the beds only veto a configuration more than
``BED_GUARD`` times the best peer on a bed (the guard also absorbs the beds' mode lottery). In a family without
networks (EDM here) the beds decide alone (a common factor changes no ranking)."""


def select_defaults(
    table: dict[tuple[str, int], dict[str, float]],
    unit_list: Sequence[Unit],
    ranges: Sequence[Sequence[int]] = BUDGET_RANGES,
    floor: float = SELECTION_FLOOR,
    bed_guard: float = BED_GUARD,
    peers: dict[tuple[str, int], float] | None = None,
    network_floor: float = ERROR_FLOOR,
) -> list[Selection]:
    """Per family and budget range: the configuration with the smallest worst-case score over every (unit, budget)
    cell of the family and range; ties — within :data:`TIE_TOLERANCE` of the smallest — broken by the geometric
    mean. ``table`` holds each unit's errors (batch RMSE).

    A cell scores ``max(e, lo) / max(best, lo)``: ``best`` is the best peer's error where ``peers``
    (:func:`best_peer_errors`) has the cell — the figure the defaults are judged by, ``generate`` ≤ 1.0× the best
    diffusers / k-diffusion configuration on the same span — and the best configuration of ``table`` elsewhere
    (guided units, whose calls cost 2 evaluations, have no peers); ``lo`` is ``network_floor`` on networks (the
    figures' floor) and ``floor`` on exact beds, whose ratio is divided by ``bed_guard`` when the family has
    networks (:data:`BED_GUARD`)."""
    if any(u.held_out for u in unit_list):
        raise ValueError("held-out units are for the figures only; the selection must never see them")
    peers = peers or {}
    out: list[Selection] = []
    tables = sorted({u.table for u in unit_list}, key=lambda t: (FAMILIES.index(t.split("+")[0]), t))
    for family in tables:
        fam_units = [u for u in unit_list if u.table == family]
        has_networks = any(u.reference_kind != "exact" for u in fam_units)
        for budgets in ranges:
            cells = [(u, n) for u in fam_units for n in budgets if (u.name, n) in table]
            if not cells:
                continue
            scores: dict[str, list[float]] = {}
            raw: dict[str, dict[bool, list[float]]] = {}
            for u, n in cells:
                errs = table[(u.name, n)]
                is_bed = u.reference_kind == "exact"
                lo = floor if is_bed else network_floor
                best = max(peers.get((u.name, n), min(errs.values())), lo)
                weight = bed_guard if is_bed and has_networks else 1.0
                for cfg, e in errs.items():
                    ratio = max(e, lo) / best
                    scores.setdefault(cfg, []).append(ratio / weight)
                    raw.setdefault(cfg, {True: [], False: []})[is_bed].append(ratio)
            full = {c: r for c, r in scores.items() if len(r) == len(cells)}
            ranked = _rank(full)
            choice = raw[ranked[0]]
            out.append(
                Selection(
                    family,
                    tuple(budgets),
                    ranked[0],
                    max(full[ranked[0]]),
                    _gmean(full[ranked[0]]),
                    ranked[1],
                    max(full[ranked[1]]),
                    [u.name for u in fam_units],
                    max(choice[False], default=math.nan),
                    max(choice[True], default=math.nan),
                )
            )
    return out


def pooled_rmse(values: Sequence[float]) -> float:
    """The batch RMSE of equal-sized batches pooled into one: ``sqrt(mean(rmse_s²))``
    (:func:`diffsample.tuning.search.pooled_rmse` with equal sizes); ``inf`` for none or any not finite."""
    if not values or any(not math.isfinite(v) for v in values):
        return math.inf
    return pooled_parts_rmse(values, [1] * len(values))


def _pooled(per_seed: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per configuration, the RMSE pooled over the seeds' batches (configurations every seed ran)."""
    shared = set(per_seed[0]).intersection(*per_seed[1:])
    return {c: pooled_rmse([errs[c] for errs in per_seed]) for c in per_seed[0] if c in shared}


def best_peer_errors(
    unit_list: Sequence[Unit],
    nfes: Sequence[int],
    progress: Callable[[str], None] | None = None,
    seeds: Sequence[int] = SELECTION_SEEDS,
) -> dict[tuple[str, int], float]:
    """The best peer's batch RMSE over the pooled noises of ``seeds`` (each peer configuration's :func:`peer_errors`
    pooled, then the smallest) on every unit whose calls cost one evaluation, at every budget where some peer walks
    the span within it: what :func:`select_defaults` scores against."""
    out: dict[tuple[str, int], float] = {}
    for u in unit_list:
        if u.calls_per_eval != 1:
            continue
        t0 = time.perf_counter()
        for nfe in nfes:
            errs = [e for e in _pooled([peer_errors(u, nfe, seed) for seed in seeds]).values() if math.isfinite(e)]
            if errs:
                out[(u.name, nfe)] = min(errs)
        if progress:
            progress(f"{u.name} peers: {time.perf_counter() - t0:.0f}s")
    return out


def _rank(ratios: dict[str, list[float]]) -> list[str]:
    """Configurations by worst-case ratio, those within :data:`TIE_TOLERANCE` of the smallest first and among
    themselves by geometric mean."""
    cut = min(max(r) for r in ratios.values()) * (1 + TIE_TOLERANCE)

    def key(c: str) -> tuple[bool, float, float]:
        worst = max(ratios[c])
        return (worst > cut, worst if worst > cut else 0.0, _gmean(ratios[c]))

    return sorted(ratios, key=key)


def _gmean(values: Sequence[float]) -> float:
    """The geometric mean (``inf`` if any value is not finite, ``nan`` of nothing)."""
    if not values:
        return math.nan
    if any(not math.isfinite(v) for v in values):
        return math.inf
    return math.exp(sum(math.log(v) for v in values) / len(values))


def hand_table(
    unit_list: Sequence[Unit],
    nfes: Sequence[int],
    progress: Callable[[str], None] | None = None,
    metric: str = "rmse",
    seeds: Sequence[int] = SELECTION_SEEDS,
) -> dict[tuple[str, int], dict[str, float]]:
    """``config_errors`` of every unit at every budget, in ``metric`` (:data:`METRICS`), on the noises of ``seeds``
    pooled (the batch RMSE over all of them; one seed for another metric)."""
    if len(seeds) != 1 and metric != "rmse":
        raise ValueError(f"only the batch RMSE pools over several noise batches, not {metric!r}")
    table: dict[tuple[str, int], dict[str, float]] = {}
    for u in unit_list:
        t0 = time.perf_counter()
        for seed in seeds:
            u.reference(seed)
        for nfe in nfes:
            table[(u.name, nfe)] = _pooled([config_errors(u, nfe, metric, seed) for seed in seeds])
        if progress:
            progress(f"{u.name}: {time.perf_counter() - t0:.0f}s")
    return table


def format_selection(rows: Sequence[Selection]) -> str:
    """The selection table: per family and budget range the choice, its score (worst-case ratio, beds' divided by
    :data:`BED_GUARD`) and geometric mean, its worst raw ratio on the networks and on the beds, the runner-up."""
    lines = [
        f"{'family':<12} {'NFE':<11} {'choice':<24} {'score':>6} {'gmean':>6} {'nets':>6} {'beds':>6}  "
        f"{'runner-up':<24} {'score':>6}  units"
    ]
    for r in rows:
        budgets = ",".join(str(n) for n in r.budgets)
        lines.append(
            f"{r.family:<12} {budgets:<11} {r.choice:<24} {r.worst:>6.2f} {r.mean:>6.2f} {r.network_worst:>6.2f} "
            f"{r.bed_worst:>6.2f}  {r.runner_up:<24} {r.runner_up_worst:>6.2f}  {', '.join(r.units)}"
        )
    return "\n".join(lines)


class FamilyView(CountingDenoiser):
    """An exact bed seen as a model of a family: the same σ-space denoiser, with the noise schedule and prediction
    type that :func:`diffsample.model_family.model_family` reads (so ``generate`` treats ``ring2d`` on the DDPM
    span as a VP ε model, on the flow span as a flow model)."""

    def __init__(self, inner: Any, noise_schedule: NoiseSchedule | None, prediction: str, name: str) -> None:
        super().__init__()
        self.inner = as_denoiser(inner)
        self.noise_schedule = noise_schedule
        self.prediction = prediction
        self.name = name
        self.shape = getattr(inner, "shape", None)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return self.inner(x, sigma, **kwargs)


def model_view(unit: Unit) -> Any:
    """What ``generate`` sees: the network itself, or the bed with its span's family (:class:`FamilyView`)."""
    if unit.reference_kind != "exact" or unit.noise_schedule is None:
        return unit.denoiser
    prediction = "flow" if unit.family.startswith("flow") else "eps"
    return FamilyView(unit.denoiser, unit.noise_schedule, prediction, unit.name)


TUNE_SETTINGS: dict[str, dict[str, Any]] = {
    "default": {},
    "reduced": {"teacher_levels": 60, "refine": 1, "kicks": 2, "max_evals_per_call": 10, "kick_evals_per_call": 5},
}
""":func:`diffsample.tune` options for the figures: ``"default"`` is what a user gets (the library's defaults: teacher
120 levels, 2 refined starts of ``60·n`` runs, 8 kicks of ``30·n``, a quarter held out), ``"reduced"`` a cheap
setting for quick checks (``max_evals = 10·n``, ``kick_evals = 5·n``)."""

FIGURE_SEEDS: tuple[int, ...] = (0,)
"""The figures' held-out noise batches by default: seed 0's 64 noises."""

WIDE_FIGURE_SEEDS: tuple[int, ...] = (0, 4, 5, 6, 7, 8, 9, 10)
"""Eight batches (512 noises) for the exact beds' figures (``--seeds``): on the mode-lottery beds one of 64 samples
landing in another mode decides a cell's RMSE (``mixture64@vp`` NFE 10, tuned plan ÷ that batch's best hand-made
walk: 3.02 on seed 0, 0.04–0.65 on seeds 2–7; 0.64 over these eight pooled), and the best configuration picked on
the same 64 is the luckiest of a hundred."""

RESERVED_SEEDS: dict[int, str] = {1: "auto mode's and the tuner's calibration", 2: "the selection", 3: "the selection"}
"""Noise seeds the figures must not evaluate on: what was calibrated or selected on them is not held out there."""


def figure_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    """``seeds`` as held-out figure batches: distinct, at least one, none of :data:`RESERVED_SEEDS`."""
    out = tuple(int(s) for s in seeds)
    if not out or len(set(out)) != len(out):
        raise ValueError(f"figure seeds must be one or more distinct seeds, got {list(seeds)}")
    clash = [f"{s} ({RESERVED_SEEDS[s]})" for s in out if s in RESERVED_SEEDS]
    if clash:
        raise ValueError(f"figure seeds must be held out; these are used by {', '.join(clash)}")
    return out


@dataclass
class FigureRow:
    unit: str
    family: str
    nfe: int
    generate: float
    auto: float
    auto_choice: str
    auto_cost_nfe: int
    tuned: float
    tuned_fallback: bool
    tuning_nfe: float
    best_peer: float
    best_peer_config: str
    best_hand: float
    best_hand_config: str
    held_out: bool = False

    def ratio(self, what: str, to: str = "best_peer") -> float:
        """``what``'s error ÷ ``to``'s: 1 when both are exactly 0 (an exact tie, which the digits bed's walks that
        land every sample on its training image reach), ``inf`` when only ``to``'s is."""
        num, den = getattr(self, what), getattr(self, to)
        if math.isnan(num):  # not measured (a tuned plan under --no-tune)
            return math.nan
        if num == 0 and den == 0:
            return 1.0
        return num / den if den > 0 and math.isfinite(num) else math.inf

    def meets(self, what: str, target: float, to: str = "best_peer") -> bool:
        """Whether ``what``'s error is at most ``target`` × ``to``'s (the issue's figure as written: an error of 0
        meets any target against another 0, which the ratio cannot say)."""
        num, den = getattr(self, what), getattr(self, to)
        return math.isfinite(num) and num <= target * den


def pooled_walk_error(
    walk: Callable[[torch.Tensor], torch.Tensor], starts: Sequence[torch.Tensor], refs: Sequence[torch.Tensor]
) -> float:
    """The RMSE of ``walk`` over every batch of ``starts`` against its ``refs`` (equal batches pooled)."""
    return pooled_rmse([rmse(walk(x), ref) for x, ref in zip(starts, refs, strict=True)])


def figure_rows(
    unit_list: Sequence[Unit],
    nfes: Sequence[int],
    *,
    tune_plans: bool = True,
    tune_settings: str = "default",
    progress: Callable[[str], None] | None = None,
    seeds: Sequence[int] = FIGURE_SEEDS,
    tune_calibration: int = TUNE_CALIBRATION,
) -> list[FigureRow]:
    """Per unit and budget: generate, auto and tuned against the best peer and the best hand-made configuration,
    all on held-out noise (the batches of ``seeds``, 64 samples each, pooled: every error is the RMSE over all of
    them, and the best peer / hand-made configuration is the one with the lowest pooled RMSE); auto and the tuner
    calibrate on seed 1 (auto on as many noises as it draws by default, :func:`diffsample.auto.calibration_size`;
    the tuner on ``tune_calibration``, by default as many as ``diffsample tune`` draws,
    :data:`diffsample.cli.TUNE_CALIBRATION`), choosing and tuning once per unit and budget."""
    from diffsample import generate, tune
    from diffsample.auto import auto_choice, calibration_size

    seeds = figure_seeds(seeds)
    rows: list[FigureRow] = []
    for unit in unit_list:
        lo, hi = unit.span
        view = model_view(unit)
        dtype = torch.float64 if unit.reference_kind == "exact" else torch.float32
        starts = [(unit.noise(s) * hi).to(dtype) for s in seeds]
        refs = [unit.reference(s) for s in seeds]
        cal_tune = (unit.noise(1, tune_calibration) * hi).to(dtype)
        for nfe in nfes:
            t0 = time.perf_counter()
            peers = _pooled([peer_errors(unit, nfe, s) for s in seeds])
            hand = _pooled([config_errors(unit, nfe, seed=s) for s in seeds])
            both = {**hand, **peers}
            span = {"sigma_min": lo, "sigma_max": hi}
            cal_auto = unit.noise(1, calibration_size(unit.shape(), nfe, unit.calls_per_eval))  # auto's default count
            gen = pooled_walk_error(functools.partial(generate, view, nfe=nfe, **span), starts, refs)
            choice = auto_choice(view, nfe, unit.shape(), calibration=cal_auto, **span)
            auto = pooled_walk_error(
                functools.partial(generate, view, nfe=nfe, auto=True, calibration=cal_auto, **span), starts, refs
            )
            tuned, fallback, tuning_nfe = math.nan, False, 0.0
            if tune_plans:
                options = dict(TUNE_SETTINGS[tune_settings])
                for key in ("max_evals", "kick_evals"):
                    if f"{key}_per_call" in options:
                        options[key] = options.pop(f"{key}_per_call") * nfe
                plan = tune(view, nfe=nfe, calibration=cal_tune, **span, **options)
                tuned = pooled_walk_error(functools.partial(sample, view, plan=plan), starts, refs)
                fallback, tuning_nfe = bool(plan.provenance["fallback"]), float(plan.provenance["tuning_nfe"])
            best_peer = min(peers, key=peers.get) if peers else ""
            best_hand = min(both, key=both.get)
            rows.append(
                FigureRow(
                    unit.name,
                    unit.family,
                    nfe,
                    gen,
                    auto,
                    choice.label,
                    choice.choice_cost_nfe,
                    tuned,
                    fallback,
                    tuning_nfe,
                    peers.get(best_peer, math.nan),
                    best_peer,
                    both[best_hand],
                    best_hand,
                    unit.held_out,
                )
            )
            if progress:
                r = rows[-1]
                progress(
                    f"{unit.name} NFE {nfe}: gen/peer {r.ratio('generate'):.2f} auto/peer {r.ratio('auto'):.2f} "
                    f"tuned/hand {r.ratio('tuned', 'best_hand'):.2f} ({time.perf_counter() - t0:.0f}s)"
                )
    return rows


def format_figures(rows: Sequence[FigureRow]) -> str:
    head = (
        f"{'unit':<20} {'NFE':>3}  {'gen/peer':>8} {'auto/peer':>9} {'tuned/hand':>10}  {'generate':>9} "
        f"{'auto':>9} {'tuned':>9} {'best peer':>9}  {'auto choice':<24} {'best peer config'}"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"{r.unit:<20} {r.nfe:>3}  {r.ratio('generate'):>8.2f} {r.ratio('auto'):>9.2f} "
            f"{r.ratio('tuned', 'best_hand'):>10.2f}  {r.generate:>9.3g} {r.auto:>9.3g} {r.tuned:>9.3g} "
            f"{r.best_peer:>9.3g}  {r.auto_choice:<24} {r.best_peer_config}"
        )
    return "\n".join(lines)


TARGETS = {"generate": 1.0, "auto": 0.8, "tuned_low": 0.5, "tuned_high": 0.7}
"""Issue #13's figures: ``generate`` ≤ 1.0× the best peer, auto ≤ 0.8×, the tuned plan ≤ 0.5× (NFE ≤ 6) /
≤ 0.7× (NFE ≥ 8) the best hand-made configuration (peers included)."""


def _tuned_target(nfe: int) -> float:
    return TARGETS["tuned_low"] if nfe <= 6 else TARGETS["tuned_high"]


def _with_plan(rows: Sequence[FigureRow]) -> list[FigureRow]:
    """The rows with a tuned plan (not run with ``--no-tune``, where ``tuned`` is NaN)."""
    return [r for r in rows if not math.isnan(r.tuned)]


def format_summary(rows: Sequence[FigureRow], floor: float = ERROR_FLOOR) -> str:
    """Cells meeting each target, over all units, the networks and the beds, and per budget; geometric means of
    the ratios (errors floored at ``floor``, so an exact best does not make them infinite). Held-out networks
    (:data:`HELD_OUT_NETWORKS`, :data:`HELD_OUT_WRAPPED`) are counted in a block of their own, not in the others.
    Cells without a tuned plan (``--no-tune``: ``tuned`` is NaN) are left out of the tuned counts and means, which
    then say over how many cells they are."""

    def floored(r: FigureRow, what: str, to: str) -> float:
        return max(getattr(r, what), floor) / max(getattr(r, to), floor)

    def block(label: str, part: Sequence[FigureRow]) -> list[str]:
        if not part:
            return []
        tuned_part = _with_plan(part)
        gen = sum(r.meets("generate", TARGETS["generate"]) for r in part)
        auto = sum(r.meets("auto", TARGETS["auto"]) for r in part)
        tuned = sum(r.meets("tuned", _tuned_target(r.nfe), "best_hand") for r in tuned_part)
        beats = sum(r.auto <= r.generate for r in part)
        means = {
            k: _gmean([floored(r, a, b) for r in (tuned_part if a == "tuned" else part)])
            for k, (a, b) in {
                "gen/peer": ("generate", "best_peer"),
                "auto/peer": ("auto", "best_peer"),
                "tuned/hand": ("tuned", "best_hand"),
                "auto/generate": ("auto", "generate"),
            }.items()
        }
        units_in = len({r.unit for r in part})
        of_tuned = "" if len(tuned_part) == len(part) else f" of {len(tuned_part)} tuned"
        return [
            f"{label} ({units_in}): cells {len(part)}; generate<=1.0x peer {gen}; auto<=0.8x peer {auto}; "
            f"tuned<=target {tuned}{of_tuned}; auto<=generate {beats}",
            "   gmean (errors floored at 1e-3): " + ", ".join(f"{k} {v:.2f}" for k, v in means.items()),
        ]

    held_out = [r for r in rows if r.held_out]
    rows = [r for r in rows if not r.held_out]
    networks = [r for r in rows if "@" not in r.unit]
    beds = [r for r in rows if "@" in r.unit]
    lines = block("all units", rows) + block("networks", networks) + block("beds", beds)
    lines += block("held-out networks, never in the selection", held_out)
    for nfe in sorted({r.nfe for r in rows}):
        part = [r for r in rows if r.nfe == nfe]
        tuned_part = _with_plan(part)
        lines.append(
            f"NFE {nfe}: generate<=1.0x {sum(r.meets('generate', TARGETS['generate']) for r in part)}/{len(part)}, "
            f"auto<=0.8x {sum(r.meets('auto', TARGETS['auto']) for r in part)}/{len(part)}, "
            f"tuned on target {sum(r.meets('tuned', _tuned_target(nfe), 'best_hand') for r in tuned_part)}"
            f"/{len(tuned_part)}, tuner fallbacks {sum(r.tuned_fallback for r in tuned_part)}"
        )
    return "\n".join(lines)


def sample_errors(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Each sample's RMS error to the exact end point (``inf`` where not finite), float64."""
    per = (out.to(torch.float64) - ref.to(torch.float64)).flatten(1).square().mean(1).sqrt()
    return torch.where(torch.isfinite(per), per, torch.full_like(per, math.inf))


@dataclass
class TailRow:
    unit: str
    nfe: int
    config: str
    rmse: float
    mean: float
    median: float
    p90: float
    max: float


def tail_rows(unit: Unit, nfe: int, configs: Sequence[str]) -> list[TailRow]:
    """How the per-sample errors of each ``"solver/schedule"`` spread on the held-out noise (seed 0): the batch RMSE
    (the figures' metric), mean, median, 90th percentile and maximum. A configuration whose median is small but whose
    p90 / maximum are far above it leaves part of the batch far off — on a network that is a solver failure, not a
    mode lottery, and the median alone would hide it."""
    ref = unit.reference(0)
    rows: list[TailRow] = []
    for config in configs:
        solver, schedule = config.split("/")
        sig = config_sigmas(unit, solver, schedule, nfe)
        if sig is None:
            continue
        per = sample_errors(walk_output(unit, sig, solver), ref)
        finite = bool(torch.isfinite(per).all())
        median = float(per.median()) if finite else math.inf  # torch's lower median, as in median_error
        p90 = float(per.quantile(0.9)) if finite else math.inf
        rows.append(
            TailRow(
                unit.name,
                nfe,
                config,
                float(per.square().mean().sqrt()),
                float(per.mean()),
                median,
                p90,
                float(per.max()),
            )
        )
    return rows


def format_tails(rows: Sequence[TailRow]) -> str:
    lines = [f"{'unit':<20} {'NFE':>3}  {'config':<24} {'rmse':>9} {'mean':>9} {'median':>9} {'p90':>9} {'max':>9}"]
    for r in rows:
        lines.append(
            f"{r.unit:<20} {r.nfe:>3}  {r.config:<24} {r.rmse:>9.4g} {r.mean:>9.4g} {r.median:>9.4g} "
            f"{r.p90:>9.4g} {r.max:>9.4g}"
        )
    return "\n".join(lines)
