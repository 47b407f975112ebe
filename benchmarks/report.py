"""Benchmark output: a printed table, a CSV file and a log-log plot of error against NFE."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from .runner import BenchRow

__all__ = ["format_comparison", "format_table", "write_csv", "plot_error_vs_nfe"]


def format_table(rows: Sequence[BenchRow], columns: Sequence[str] = ("bed", "source", "solver", "schedule",
                                                                       "nfe", "rmse", "mode_mismatch",
                                                                       "log_likelihood")) -> str:
    """A fixed-width text table of ``rows`` (floats in 4 significant digits)."""
    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    body = [[cell(getattr(r, c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(lines)


def write_csv(rows: Sequence[BenchRow], path: str | Path) -> Path:
    """Write every field of every row to ``path`` (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dicts = [r.as_dict() for r in rows]
    with path.open("w", newline="") as f:
        if dicts:
            writer = csv.DictWriter(f, fieldnames=list(dicts[0]))
            writer.writeheader()
            writer.writerows(dicts)
    return path


def _series(rows: Sequence[BenchRow], metric: str) -> dict[tuple[str, str, str], list[tuple[int, float]]]:
    lines: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
    for r in rows:
        value = getattr(r, metric)
        if value == value and value > 0:  # drop NaN and exact zeros (no log)
            lines.setdefault((r.source, r.solver, r.schedule), []).append((r.nfe, value))
    return {k: sorted(v) for k, v in lines.items()}


def _envelope(series: dict, keep) -> list[tuple[int, float]]:
    best: dict[int, float] = {}
    for key, pts in series.items():
        if keep(key):
            for nfe, value in pts:
                best[nfe] = min(best.get(nfe, float("inf")), value)
    return sorted(best.items())


def plot_error_vs_nfe(rows: Sequence[BenchRow], path: str | Path, metric: str = "rmse", highlight: int = 6) -> Path:
    """One log-log panel per bed: ``metric`` against NFE.

    Every configuration is drawn thin and grey; on top, the lower envelope of diffsample's configurations,
    of the peers' (when present), ``generate`` (when present) and the ``highlight`` configurations with
    the best mean log error are drawn in colour.
    """
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    beds = list(dict.fromkeys(r.bed for r in rows))
    fig, axes = plt.subplots(1, max(len(beds), 1), figsize=(5.5 * max(len(beds), 1), 5.5), squeeze=False)
    for ax, bed in zip(axes[0], beds, strict=False):
        series = _series([r for r in rows if r.bed == bed], metric)
        for pts in series.values():
            ax.loglog(*zip(*pts, strict=True), color="0.85", lw=0.6, zorder=1)
        ours = [k for k in series if k[0] == "diffsample" and k[1] != "generate"]
        ranked = sorted(ours, key=lambda k: sum(math.log(v) for _, v in series[k]) / len(series[k]))
        for key in ranked[:highlight]:
            ax.loglog(*zip(*series[key], strict=True), marker="o", ms=3, lw=1.2, label=f"{key[1]} ({key[2]})", zorder=3)
        envelopes = [("best of diffsample", lambda k: k[0] == "diffsample" and k[1] != "generate", "tab:blue", "-"),
                     ("best of peers", lambda k: k[0] != "diffsample", "tab:red", "--")]
        for label, keep, color, style in envelopes:
            pts = _envelope(series, keep)
            if pts:
                ax.loglog(*zip(*pts, strict=True), style, color=color, lw=2.2, label=label, zorder=4)
        gen = [k for k in series if k[1] == "generate"]
        for key in gen:
            ax.loglog(*zip(*series[key], strict=True), color="black", lw=2.5, marker="s", ms=4,
                      label="diffsample.generate", zorder=5)
        ax.set_title(bed)
        ax.set_xlabel("NFE (model evaluations)")
        ax.set_ylabel(f"{metric} vs exact ODE solution")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def format_comparison(comparisons) -> str:
    """Per bed and budget: generate, our best configuration, the best peer configuration, and the ratio."""
    header = (f"{'bed':<10} {'nfe':>4}  {'generate':>9}  {'our best':<26} {'rmse':>9}  {'best peer (own span)':<50} "
              f"{'rmse':>9}  {'ratio':>5}  {'best peer on the EDM span':<36} {'rmse':>9}  {'ratio':>5}")
    lines = [header, "-" * len(header)]
    for c in comparisons:
        lines.append(f"{c.bed:<10} {c.nfe:>4}  {c.generate_rmse:>9.4g}  {c.best_ours:<26} {c.best_ours_rmse:>9.4g}  "
                     f"{c.best_peer:<50} {c.best_peer_rmse:>9.4g}  {c.ratio:5.2f}  {c.same_span_peer:<36} "
                     f"{c.same_span_peer_rmse:>9.4g}  {c.same_span_ratio:5.2f}")
    return "\n".join(lines)
