"""TFG's hyper-parameter search: a beam search over multiplicative grids on a small validation budget.

Ye et al. 2024, "TFG: Unified Training-Free Guidance for Diffusion Models", §5 (the search strategy): every
searched hyper-parameter (ρ, μ, γ by default) starts small and grows by a factor up to a cap. Starting from the
initial setting and its children, each round evaluates the new candidates on a small validation batch, ranks
everything evaluated so far, and expands the ``beam`` best settings by multiplying *one* hyper-parameter by its
factor (each child once); after ``rounds`` rounds the ranked list is returned. The paper's defaults are
ρ: 0.25 × 2 up to 8, μ: 0.25 × 2 up to 8, γ: 0.001 × 10 up to 1, beam 2, 6 rounds (:data:`PAPER_SPACE`).

The search is generic: ``evaluate(params) -> float`` (higher is better) runs guided sampling on the validation
budget and scores it; its cost is the number of evaluations (:attr:`SearchResult.evaluations`) times the
sampling cost of one, which the caller measures (e.g. with the guided denoiser's ``cost()``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..errors import DiffsampleError

__all__ = ["PAPER_SPACE", "Axis", "SearchResult", "beam_search"]


@dataclass(frozen=True)
class Axis:
    """One searched hyper-parameter: its initial value, the factor of each move, and the cap."""

    init: float
    factor: float
    max: float

    def __post_init__(self) -> None:
        if not (self.init > 0 and self.factor > 1 and self.max >= self.init and math.isfinite(self.max)):
            raise DiffsampleError(f"an axis needs init > 0, factor > 1 and init <= max < inf, got {self}")


PAPER_SPACE: dict[str, Axis] = {
    "rho": Axis(0.25, 2.0, 8.0),
    "mu": Axis(0.25, 2.0, 8.0),
    "gamma": Axis(0.001, 10.0, 1.0),
}
"""The paper's search space for (ρ, μ, γ)."""


@dataclass
class SearchResult:
    """All evaluated settings, best first, as ``(params, score)``; ``evaluations`` = how many were run."""

    ranked: list[tuple[dict[str, float], float]] = field(default_factory=list)
    evaluations: int = 0

    @property
    def best(self) -> dict[str, float]:
        return dict(self.ranked[0][0])

    @property
    def best_score(self) -> float:
        return self.ranked[0][1]


def _key(params: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    return tuple(sorted((k, round(v, 12)) for k, v in params.items()))


def beam_search(
    evaluate: Callable[[dict[str, float]], float],
    space: Mapping[str, Axis] | None = None,
    *,
    beam: int = 2,
    rounds: int = 6,
) -> SearchResult:
    """Rank hyper-parameter settings by ``evaluate`` (higher is better) with TFG's beam search (module docstring).

    A score that is not a finite number ranks last (a diverged setting).
    """
    axes = dict(PAPER_SPACE if space is None else space)
    if not axes:
        raise DiffsampleError("the search space is empty; give at least one Axis")
    if beam < 1 or rounds < 1:
        raise DiffsampleError(f"beam and rounds must be >= 1, got {beam} and {rounds}")

    def children(params: dict[str, float]) -> list[dict[str, float]]:
        out = []
        for name, axis in axes.items():
            child = dict(params)
            child[name] = min(params[name] * axis.factor, axis.max)
            out.append(child)
        return out

    seen: dict[tuple[tuple[str, float], ...], float] = {}
    settings: dict[tuple[tuple[str, float], ...], dict[str, float]] = {}
    start = {name: axis.init for name, axis in axes.items()}
    pending = [start, *children(start)]
    for _ in range(rounds):
        fresh = []
        for params in pending:
            key = _key(params)
            if key not in seen and key not in {_key(p) for p in fresh}:
                fresh.append(params)
        for params in fresh:
            score = float(evaluate(dict(params)))
            seen[_key(params)] = score if math.isfinite(score) else -math.inf
            settings[_key(params)] = dict(params)
        order = sorted(seen, key=lambda k: seen[k], reverse=True)
        pending = [child for k in order[:beam] for child in children(settings[k])]
        if all(_key(p) in seen for p in pending):
            break
    ranked = sorted(((settings[k], seen[k]) for k in seen), key=lambda item: item[1], reverse=True)
    return SearchResult(ranked, len(seen))
