"""Side by side: diffsample against diffusers and k-diffusion on the same beds and initial noise.

Every peer configuration starts from ``σ_start · z`` with the same standard-normal ``z`` as ours,
at its own first noise level, and is scored against the exact PF-ODE solution over its own span
``[σ_start, σ_end]``. ``generate`` rows are diffsample's defaults at each budget.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from diffsample.generate import generate

from .runner import BenchConfig, BenchRow, score_row

__all__ = ["generate_rows", "peer_rows", "Comparison", "compare"]


def generate_rows(bed_name: str, bed, x_start: torch.Tensor, config: BenchConfig) -> list[BenchRow]:
    """One row per budget for :func:`diffsample.generate` on the config's span."""
    from diffsample.testbeds import metrics, reference_solution

    reference = reference_solution(bed, x_start, config.sigma_max, 0.0)
    rows = []
    for budget in config.nfes:
        bed.reset_counter()
        t0 = time.perf_counter()
        out = generate(bed, x_start, nfe=budget, sigma_min=config.sigma_min, sigma_max=config.sigma_max)
        rows.append(
            score_row(
                bed_name,
                bed,
                out,
                reference,
                "generate",
                "default",
                budget,
                bed.nfe,
                bed.nfe,
                time.perf_counter() - t0,
                metrics,
            )
        )
    return rows


def peer_rows(
    bed_name: str,
    bed,
    x_start: torch.Tensor,
    config: BenchConfig,
    progress: Callable[[str], None] | None = None,
    *,
    span: str | None = None,
    require_span: tuple[float, float] | None = None,
) -> list[BenchRow]:
    """Every installed peer configuration at every budget, scored over its own span.

    ``span`` keeps the configurations of one named span (:data:`~benchmarks.peers.SPANS`);
    ``require_span = (σ_start, σ_end)`` keeps only the runs that walk exactly that span (relative
    tolerance 1e-6), e.g. ``(80.0, 0.0)`` for a same-span comparison with our solvers.
    """
    from diffsample.testbeds import metrics, reference_solution

    from .peers import peer_configs

    z = x_start.to(torch.float64) / config.sigma_max
    references: dict[tuple[float, float], torch.Tensor] = {}
    rows = []
    for cfg in peer_configs(span=span):
        if not cfg.fixed_nfe:
            continue
        for budget in config.nfes:
            bed.reset_counter()
            t0 = time.perf_counter()
            try:
                run = cfg.run(bed, z.to(torch.float32), budget)
            except (ValueError, RuntimeError, ZeroDivisionError) as err:  # a peer refusing a budget or failing
                if progress:
                    progress(f"[{bed_name}] {cfg.library} {cfg.name} @ {budget}: {type(err).__name__}: {err}")
                continue
            seconds = time.perf_counter() - t0
            if run.nfe > budget or run.nfe == 0:
                continue
            walked = (run.sigma_start, run.sigma_end)
            if require_span is not None and not all(
                math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12) for a, b in zip(walked, require_span, strict=True)
            ):
                continue
            if walked not in references:
                references[walked] = reference_solution(bed, z * run.sigma_start, *walked)
            out = run.x.to(torch.float64)
            if not torch.isfinite(out).all():
                rows.append(_failed_row(bed_name, cfg, budget, run.nfe, seconds))
                continue
            rows.append(
                score_row(
                    bed_name,
                    bed,
                    out,
                    references[walked],
                    cfg.name,
                    cfg.span,
                    budget,
                    run.nfe,
                    run.nfe,
                    seconds,
                    metrics,
                    source=cfg.library,
                )
            )
        if progress:
            progress(f"[{bed_name}] {cfg.library} {cfg.name} done")
    return rows


def _failed_row(bed_name: str, cfg, budget: int, nfe: int, seconds: float) -> BenchRow:
    return BenchRow(
        bed=bed_name,
        solver=cfg.name,
        schedule=cfg.span,
        nfe_budget=budget,
        nfe=nfe,
        steps=nfe,
        rmse=math.nan,
        mode_mismatch=math.nan,
        log_likelihood=math.nan,
        seconds=seconds,
        source=cfg.library,
    )


@dataclass
class Comparison:
    bed: str
    nfe: int
    generate_rmse: float
    best_ours: str
    best_ours_rmse: float
    best_peer: str
    best_peer_rmse: float
    same_span_peer: str
    same_span_peer_rmse: float

    @property
    def ratio(self) -> float:
        """generate's RMSE over the best peer's (≤ 1: generate is at least as accurate)."""
        return self.generate_rmse / self.best_peer_rmse if self.best_peer_rmse > 0 else math.inf

    @property
    def same_span_ratio(self) -> float:
        """generate's RMSE over the best peer's on generate's own span (EDM's by default)."""
        return self.generate_rmse / self.same_span_peer_rmse if self.same_span_peer_rmse > 0 else math.inf


def compare(rows: Sequence[BenchRow], span: str = "edm") -> list[Comparison]:
    """Per (bed, budget): generate, our best configuration, the best peer configuration on any span and
    the best on ``span`` (the span generate ran on)."""
    out = []
    keys = sorted({(r.bed, r.nfe_budget) for r in rows}, key=lambda k: (k[0], k[1]))
    for bed, budget in keys:
        cell = [r for r in rows if r.bed == bed and r.nfe_budget == budget and math.isfinite(r.rmse)]
        gen = [r for r in cell if r.solver == "generate"]
        ours = [r for r in cell if r.source == "diffsample" and r.solver != "generate"]
        peers = [r for r in cell if r.source != "diffsample"]
        if not gen or not peers:
            continue
        best_ours = min(ours, key=lambda r: r.rmse) if ours else gen[0]
        best_peer = min(peers, key=lambda r: r.rmse)
        same = min((r for r in peers if r.schedule == span), key=lambda r: r.rmse, default=best_peer)
        out.append(
            Comparison(
                bed,
                budget,
                gen[0].rmse,
                f"{best_ours.solver}/{best_ours.schedule}",
                best_ours.rmse,
                f"{best_peer.solver}/{best_peer.schedule}",
                best_peer.rmse,
                f"{same.solver}",
                same.rmse,
            )
        )
    return out
