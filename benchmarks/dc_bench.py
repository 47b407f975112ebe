"""DC-Solver against UniPC on held-out noise, scored against the exact PF-ODE solution.

For every (bed, NFE) cell, on the span ``[σ_min, σ_max] → 0`` with log-SNR steps (one model call per step):

* **unipc**: this library's UniPC with its defaults (order 2, ``bh2``, corrector) on the held-out batch;
* **dc**: DC-Solver with the same options and ratios searched by
  :func:`diffsample.tuning.dc.search_dc_ratios` on a *calibration* batch of 10 samples from another seed
  (the paper's size), against the default fine reference walk (or DOP853 with ``reference="exact"``),
  then run on the held-out batch.

Both are scored by RMSE against :func:`diffsample.testbeds.reference_solution` (DOP853) of the held-out
batch. The search cost is its wall time and model calls per calibration sample, reference walk included.

:func:`run_cpr_bench` checks the paper's cascade polynomial regression (CPR) as a predictor for an unseen
budget: ratios are searched at every NFE of ``fit_nfes`` (calibration seed); for each target NFE a CPR is
fitted on the *other* budgets only (leave one out; no guidance axis on these beds) and its predicted ratios
are run on the held-out batch, next to UniPC and to the ratios searched at that NFE.

Measured (NFE 5–10, two calibration/held-out seed pairs): the searched ratios beat UniPC on ``ring2d`` in
every cell (RMSE ratio 0.26–0.70) and on ``mixture64`` at NFE 5–8 (0.24–0.91), but not reliably at NFE 10
(0.77 and 1.22) nor on ``digits`` (point masses; 0.88–1.20), and 64 calibration samples instead of 10 do not
change that picture. The per-step loss is a proxy for the end-point error; joint sweeps on the end-point
error (``refine``) drive the calibration error on ``digits`` down 400–800× and generalise worse. CPR
fitted on the other budgets (no guidance axis here) loses to UniPC in 9 of 12 cells.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from diffsample import noise as noise_mod
from diffsample import steps
from diffsample.sampling import sample

from .report import Column, text_table

__all__ = ["CPRRow", "DCRow", "format_cpr_table", "format_dc_table", "run_cpr_bench", "run_dc_bench"]


@dataclass
class DCRow:
    """One (bed, NFE) cell: held-out RMSE of UniPC and of DC-Solver, calibration errors and search cost."""

    bed: str
    nfe: int
    unipc_rmse: float
    dc_rmse: float
    calibration_unipc: float
    calibration_dc: float
    search_seconds: float
    search_nfe: int
    ratios: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """DC-Solver's held-out RMSE over UniPC's (< 1: DC-Solver is more accurate)."""
        return self.dc_rmse / self.unipc_rmse if self.unipc_rmse > 0 else float("inf")

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


def _rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.to(torch.float64) - b.to(torch.float64)).square().mean().sqrt())


def _bed_batches(
    bed_name: str, sigma_max: float, heldout_size: int, heldout_seed: int, calibration_size: int, calibration_seed: int
) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The bed, its held-out and calibration states at ``σ_max`` and the held-out batch's exact solution at 0."""
    from diffsample.testbeds import get_bed, reference_solution

    bed = get_bed(bed_name)
    held = noise_mod.seeded(heldout_seed).initial((heldout_size, *bed.shape), sigma_max, dtype=torch.float64)
    cal = noise_mod.seeded(calibration_seed).initial((calibration_size, *bed.shape), sigma_max, dtype=torch.float64)
    return bed, held, cal, reference_solution(bed, held, sigma_max, 0.0)


def run_dc_bench(
    beds: Sequence[str] = ("ring2d", "mixture64", "digits"),
    nfes: Sequence[int] = (5, 6, 8, 10),
    *,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    heldout_size: int = 64,
    heldout_seed: int = 0,
    calibration_size: int = 10,
    calibration_seed: int = 1,
    method: str = "adamw",
    reference: str = "teacher",
    search_options: dict | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[DCRow]:
    """Search ratios on the calibration seed, score DC-Solver and UniPC on the held-out seed (module docstring).

    ``reference``: ``"teacher"`` (the search's default fine DPM-Solver++(3M) walk, what a real model would
    use) or ``"exact"`` (DOP853 on the bed, :func:`~diffsample.testbeds.reference_solution`).
    """
    from diffsample.testbeds import reference_solution
    from diffsample.tuning.dc import search_dc_ratios

    if calibration_seed == heldout_seed:
        raise ValueError("the calibration and held-out batches must come from different seeds")
    if reference not in ("teacher", "exact"):
        raise ValueError(f"reference must be 'teacher' or 'exact', got {reference!r}")
    log = progress or (lambda _msg: None)
    rows = []
    for bed_name in beds:
        bed, held, cal, exact = _bed_batches(
            bed_name, sigma_max, heldout_size, heldout_seed, calibration_size, calibration_seed
        )

        def exact_cal(x: torch.Tensor, a: float, b: float, bed=bed) -> torch.Tensor:
            return reference_solution(bed, x, a, b)

        for nfe in nfes:
            sigmas = steps.logsnr(int(nfe), sigma_min, sigma_max)
            t0 = time.perf_counter()
            before = bed.nfe
            plan = search_dc_ratios(
                bed,
                calibration=cal,
                sigmas=sigmas,
                method=method,
                reference=exact_cal if reference == "exact" else None,
                **(search_options or {}),
            )
            seconds, spent = time.perf_counter() - t0, bed.nfe - before
            dc = _rmse(sample(bed, held, plan=plan), exact)
            base = _rmse(sample(bed, held, sigmas, "unipc"), exact)
            prov = plan.provenance
            rows.append(
                DCRow(
                    bed_name,
                    int(nfe),
                    base,
                    dc,
                    prov["error_unipc"],
                    prov["error"],
                    seconds,
                    spent,
                    list(plan.options["ratios"]),
                )
            )
            log(f"[{bed_name}] NFE {nfe}: dc {dc:.4g} vs unipc {base:.4g} ({seconds:.1f}s, {spent} NFE)")
    return rows


def format_dc_table(rows: Sequence[DCRow]) -> str:
    """A fixed-width table: held-out RMSE vs the exact ODE (UniPC, DC-Solver, ratio), calibration RMSE, cost."""
    columns = [
        Column("bed", "<10"),
        Column("NFE", ">3"),
        Column("unipc", ">9.4g"),
        Column("dc", ">9.4g"),
        Column("ratio", ">6.3f"),
        Column("cal unipc", ">9.4g"),
        Column("cal dc", ">9.4g"),
        Column("search s", ">8.1f"),
        Column("search NFE", ">10"),
        Column("ratios", "", "  "),
    ]
    return text_table(
        columns,
        (
            [
                r.bed,
                r.nfe,
                r.unipc_rmse,
                r.dc_rmse,
                r.ratio,
                r.calibration_unipc,
                r.calibration_dc,
                r.search_seconds,
                r.search_nfe,
                _ratios(r.ratios),
            ]
            for r in rows
        ),
    )


def _ratios(values: Sequence[float]) -> str:
    return "[" + " ".join(f"{v:.2f}" for v in values) + "]"


@dataclass
class CPRRow:
    """Held-out RMSE at one budget: UniPC, the ratios searched there, and the CPR fitted on other budgets."""

    bed: str
    nfe: int
    unipc_rmse: float
    searched_rmse: float
    cpr_rmse: float
    cpr_ratios: list[float] = field(default_factory=list)


def run_cpr_bench(
    beds: Sequence[str] = ("ring2d", "mixture64", "digits"),
    nfes: Sequence[int] = (5, 6, 8, 10),
    fit_nfes: Sequence[int] = tuple(range(4, 13)),
    *,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    heldout_size: int = 64,
    heldout_seed: int = 0,
    calibration_size: int = 10,
    calibration_seed: int = 1,
    method: str = "adamw",
    x_degree: int = 3,
    nfe_degree: int = 2,
    progress: Callable[[str], None] | None = None,
) -> list[CPRRow]:
    """Leave-one-budget-out test of cascade polynomial regression (module docstring)."""
    from diffsample.tuning.dc import fit_cpr, search_dc_ratios

    log = progress or (lambda _msg: None)
    rows = []
    for bed_name in beds:
        bed, held, cal, exact = _bed_batches(
            bed_name, sigma_max, heldout_size, heldout_seed, calibration_size, calibration_seed
        )
        searched = {
            int(n): search_dc_ratios(
                bed, calibration=cal, nfe=int(n), sigma_min=sigma_min, sigma_max=sigma_max, method=method
            ).options["ratios"]
            for n in sorted(set(fit_nfes) | set(nfes))
        }
        for nfe in nfes:
            sigmas = steps.logsnr(int(nfe), sigma_min, sigma_max)
            cpr = fit_cpr(
                [(n, 0.0, r) for n, r in searched.items() if n != nfe and n in set(fit_nfes)],
                x_degree=x_degree,
                guidance_degree=0,
                nfe_degree=nfe_degree,
            )
            predicted = cpr.ratios(int(nfe))
            base = _rmse(sample(bed, held, sigmas, "unipc"), exact)
            found = _rmse(sample(bed, held, sigmas, "dc_solver", ratios=searched[int(nfe)]), exact)
            pred = _rmse(sample(bed, held, sigmas, "dc_solver", ratios=predicted), exact)
            rows.append(CPRRow(bed_name, int(nfe), base, found, pred, predicted))
            log(f"[{bed_name}] NFE {nfe}: cpr {pred:.4g}, searched {found:.4g}, unipc {base:.4g}")
    return rows


def format_cpr_table(rows: Sequence[CPRRow]) -> str:
    """A fixed-width table: held-out RMSE of UniPC, searched ratios and CPR-predicted ratios."""
    columns = [
        Column("bed", "<10"),
        Column("NFE", ">3"),
        Column("unipc", ">9.4g"),
        Column("searched", ">9.4g"),
        Column("cpr", ">9.4g"),
        Column("cpr/unipc", ">9.3f"),
        Column("cpr ratios", "", "  "),
    ]
    return text_table(
        columns,
        (
            [r.bed, r.nfe, r.unipc_rmse, r.searched_rmse, r.cpr_rmse, r.cpr_rmse / r.unipc_rmse, _ratios(r.cpr_ratios)]
            for r in rows
        ),
    )


if __name__ == "__main__":  # python -m benchmarks.dc_bench
    print(format_dc_table(run_dc_bench()))
    print()
    print(format_cpr_table(run_cpr_bench()))
