"""Divergence artifacts under strong guidance at low NFE, and what heavy-ball / GHVB momentum does to them.

The claim under test (Wizadwongsa et al. 2023, "Diffusion Sampling with Momentum for Mitigating Divergence
Artifacts"): high-order multistep solvers at few steps and high guidance scale leave their stability
region and throw samples far off; heavy-ball (HB) momentum with damping β < 1 enlarges the stability
region (keeping samples bounded) at the cost of accuracy, and GHVB trades between order r and r − 1.

Scenario: classifier-free guidance ``D_u + w (D_c − D_u)`` on an exact bed, with ``D_u`` the bed
(``ring2d``: 8 Gaussians on the unit circle; ``mixture64``: 8 anisotropic Gaussians in 64-D) and ``D_c``
its first component (the exact denoiser of that class). Seeded starts ``80·z``, Karras steps (ρ = 7)
80 → 0.002, ending at σ = 0.002 (no trailing 0, so the answer is the exact guided PF-ODE solution there,
from DOP853 via :func:`~diffsample.testbeds.reference_solution`; every method is measured at the same σ).
NFE counts the network calls the guided denoiser made (2 per step).

Per method and damping β (β = 1 is the base solver itself: ``ipndm`` for PLMS, ``dpmpp_2m``):

* ``exploded``: fraction of samples with a non-finite value or ``‖x‖ > 4 · max ‖x_exact‖``;
* ``out``: fraction with a coordinate outside ``±1.25 · max |x_exact|`` (the exact solutions' range);
* ``rmse``: ``sqrt(mean ‖x − x_exact‖²)`` over all samples (inf if any sample is non-finite).

Measured (``python -m benchmarks.momentum_bench``: ring2d 1000 samples, mixture64 300; ≈ 6 min on one
busy core). Cells below are RMSE (out-of-range %, exploded %) at 8 steps / 16 NFE, CFG scale 5:

======================  ======================  ======================
method                  ring2d                  mixture64
======================  ======================  ======================
PLMS-4 (ipndm)          2.78 (79, 18)           75.6 (45, 40)
PLMS-4 +HB β=0.8        1.84 (56, 8)            21.2 (23, 3)
PLMS-4 +HB β=0.5        0.196 (0, 0)            1.01 (0, 0)
GHVB-4 β=0.5            2.78 (74, 23)           47.4 (41, 23)
PLMS-2 (ipndm)          0.516 (16, 0)           1.25 (2, 0)
GHVB-2 β=0.5            0.070 (0, 0)            0.445 (0, 0)
DPM++(2M)               1.50 (33, 3)            6.14 (11, 0)
DPM++(2M) +HB β=0.8     0.266 (0, 0)            0.878 (0, 0)
DPM++(3M)               5.16 (90, 68)           68.2 (75, 70)
Euler                   0.035 (0, 0)            0.632 (0, 0)
======================  ======================  ======================

* The artifacts are real: at scale ≥ 5 and 6–8 steps PLMS-4 and DPM-Solver++(3M) push 45–99 % of the
  samples out of range, DPM-Solver++(2M) 11–100 %. Heavy ball removes them (β = 0.5 for PLMS-4, β = 0.8
  for PLMS-2 and 2M) and cuts the RMSE 5–75×, as the paper says.
* The price is accuracy once the base solver is stable: at 25 steps PLMS-4 is at 0.0018 (ring2d, scale 5)
  and PLMS-4 +HB β = 0.5 at 0.049; too much damping (β = 0.3) leaves residual noise, and then *every*
  sample is out of range (ring2d) though none explodes — a different artifact.
* GHVB-4 (the paper's "GHVB 3.x") barely helps: its stability interval only moves from AB4's towards
  AB3's, so it diverges nearly as often as PLMS-4; it keeps 4th-order accuracy (25 steps: 0.0020).
  GHVB-2 at β ≤ 0.5 is bounded everywhere measured and the most accurate momentum method at ≤ 10 steps.
* Not the paper's conclusion: plain first-order Euler (DDIM), the most stable of all, is also the most
  accurate at ≤ 10 steps on ring2d and within 1.5× of the best on mixture64; momentum beats the high-order
  base solvers there, not the first-order one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from diffsample import steps
from diffsample.sampling import sample
from diffsample.testbeds import GaussianMixture, get_bed, reference_solution
from diffsample.transforms import cfg

from .report import Column, text_table

__all__ = ["MomentumRow", "METHODS", "run_momentum_bench", "format_momentum_table"]

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
EXPLODED = 4.0  # a sample has exploded when ‖x‖ > EXPLODED · max ‖x_exact‖ (or is not finite)
OUT_OF_RANGE = 1.25  # ... is out of range when a coordinate exceeds OUT_OF_RANGE · max |x_exact|

#: ``(label, base solver and options at β = 1, momentum solver and options for β < 1)``.
METHODS: tuple[tuple[str, tuple[str, dict[str, Any]], tuple[str, dict[str, Any]]], ...] = (
    ("PLMS-4 +HB", ("ipndm", {"order": 4}), ("plms_hb", {"order": 4})),
    ("PLMS-2 +HB", ("ipndm", {"order": 2}), ("plms_hb", {"order": 2})),
    ("GHVB-4", ("ipndm", {"order": 4}), ("ghvb", {"order": 4})),
    ("GHVB-2", ("ipndm", {"order": 2}), ("ghvb", {"order": 2})),
    ("DPM++(2M) +HB", ("dpmpp_2m", {}), ("dpmpp_2m_hb", {})),
)
REFERENCE_METHODS: tuple[tuple[str, str], ...] = (("Euler", "euler"), ("DPM++(3M)", "dpmpp_3m"))


@dataclass(frozen=True)
class MomentumRow:
    """One measured configuration."""

    bed: str
    scale: float
    n_steps: int
    nfe: int
    method: str
    beta: float
    exploded: float
    out_of_range: float
    rmse: float


def _guided(bed_name: str, scale: float):
    bed = get_bed(bed_name)
    if not isinstance(bed, GaussianMixture) or bed.has_point_masses:
        raise ValueError(f"the momentum bench needs a Gaussian-mixture bed, got {bed_name!r}")
    cond = GaussianMixture(bed.means[:1], bed.stds[:1], name=f"{bed_name}-class0")
    return bed, cond, scale


def _metrics(out: torch.Tensor, exact: torch.Tensor) -> tuple[float, float, float]:
    flat, ref = out.reshape(out.shape[0], -1), exact.reshape(exact.shape[0], -1)
    finite = torch.isfinite(flat).all(dim=1)
    norm_limit = EXPLODED * float(ref.norm(dim=1).max())
    value_limit = OUT_OF_RANGE * float(ref.abs().max())
    exploded = ~finite | (flat.norm(dim=1) > norm_limit)
    out_of_range = ~finite | (flat.abs() > value_limit).any(dim=1)
    rmse = float((flat - ref).square().sum(1).mean().sqrt()) if bool(finite.all()) else math.inf
    return float(exploded.double().mean()), float(out_of_range.double().mean()), rmse


def run_momentum_bench(
    beds: Sequence[str] = ("ring2d", "mixture64"),
    scales: Sequence[float] = (3.0, 5.0, 8.0),
    nfes: Sequence[int] = (6, 8, 10, 15, 25),
    betas: Sequence[float] = (1.0, 0.8, 0.5, 0.3),
    n_samples: int | None = None,
    seed: int = 0,
) -> list[MomentumRow]:
    """Every method of :data:`METHODS` at every β, plus Euler and DPM-Solver++(3M), on each bed × scale × steps
    (``nfes`` counts guided steps here, two model calls each).

    ``n_samples`` defaults to 1000 on ring2d and 300 on mixture64 (the 64-D reference solve dominates).
    """
    rows: list[MomentumRow] = []
    for bed_name in beds:
        for scale in scales:
            bed, cond, w = _guided(bed_name, scale)
            guided = cfg(cond, w, uncond=bed)
            gen = torch.Generator().manual_seed(seed)
            count = n_samples if n_samples is not None else (1000 if bed.dim <= 2 else 300)
            x = SIGMA_MAX * torch.randn(count, *bed.shape, generator=gen, dtype=torch.float64)
            exact = reference_solution(guided, x, SIGMA_MAX, SIGMA_MIN, rtol=1e-9, atol=1e-9, cache=False)
            for n in nfes:
                sigmas = steps.karras(n + 1, SIGMA_MIN, SIGMA_MAX, append_zero=False)  # n steps
                runs: list[tuple[str, float, str, dict[str, Any]]] = []
                for label, (base, base_opts), (name, opts) in METHODS:
                    for beta in betas:
                        runs.append(
                            (label, beta, base, base_opts)
                            if beta == 1.0
                            else (label, beta, name, {**opts, "beta": beta})
                        )
                runs += [(label, 1.0, name, {}) for label, name in REFERENCE_METHODS]
                for label, beta, name, options in runs:
                    nfe0 = guided.nfe
                    with torch.no_grad():
                        out = sample(guided, x, sigmas, name, **options)
                    exploded, out_of_range, rmse = _metrics(out, exact)
                    rows.append(
                        MomentumRow(
                            bed_name,
                            float(scale),
                            n,
                            guided.nfe - nfe0,
                            label,
                            float(beta),
                            exploded,
                            out_of_range,
                            rmse,
                        )
                    )
    return rows


def _momentum_cell(r: MomentumRow) -> str:
    rmse = "inf" if math.isinf(r.rmse) else f"{r.rmse:.3g}"
    return f"{rmse} ({100 * r.out_of_range:.0f}, {100 * r.exploded:.0f})"


def format_momentum_table(rows: Sequence[MomentumRow]) -> str:
    """One block per bed × scale: methods × β down, step counts across, cells ``rmse (out %)``."""
    lines: list[str] = []
    blocks = sorted({(r.bed, r.scale) for r in rows}, key=lambda k: (k[0], k[1]))
    for bed, scale in blocks:
        sel = [r for r in rows if (r.bed, r.scale) == (bed, scale)]
        ns = sorted({r.n_steps for r in sel})
        nfe = {r.n_steps: r.nfe for r in sel}
        lines.append(f"{bed}, CFG scale {scale:g} toward class 0 — cell: RMSE vs exact (out-of-range %, exploded %)")
        columns = [
            Column("method", "<16"),
            Column("beta", ">5g", ""),
            *(Column(f"{n} st/{nfe[n]} NFE", ">22", " " if i == 0 else "") for i, n in enumerate(ns)),
        ]
        keys = list(dict.fromkeys((r.method, r.beta) for r in sel))
        cells = {(r.method, r.beta, r.n_steps): r for r in reversed(sel)}  # the first row of each cell
        lines.append(
            text_table(
                columns,
                ([method, beta, *(_momentum_cell(cells[(method, beta, n)]) for n in ns)] for method, beta in keys),
            )
        )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m benchmarks.momentum_bench
    print(format_momentum_table(run_momentum_bench()))
