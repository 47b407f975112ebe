"""Benchmark output, for every suite: text and Markdown tables, CSV files and the log-log plot of error vs NFE.

Every ``format_*`` function of the suites builds its table with :func:`text_table` (fixed-width columns) or
:func:`markdown_table`, and every CSV file is written by :func:`write_csv`.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffsample.files import atomic_write, atomic_write_bytes

from .runner import BenchRow

__all__ = [
    "Column",
    "format_comparison",
    "format_table",
    "markdown_table",
    "plot_error_vs_nfe",
    "text_table",
    "write_csv",
]


@dataclass(frozen=True)
class Column:
    """One column of a :func:`text_table`.

    ``spec`` is the format spec of its cells (``"<10"``, ``">9.4g"``): the header and any cell given as a string
    get only its alignment and width; ``""`` leaves cells as they are; ``None`` makes the column as wide as its
    longest entry, left-aligned. ``gap`` is the text before the column (unused for the first one).
    """

    header: str
    spec: str | None = ""
    gap: str = " "


_ALIGN_WIDTH = re.compile(r"^([<>^]?)(\d*)")


def _cell(value: Any, spec: str) -> str:
    if isinstance(value, str):
        return format(value, _ALIGN_WIDTH.match(spec).group(0))  # type: ignore[union-attr]
    return format(value, spec)


def text_table(columns: Sequence[Column], rows: Iterable[Sequence[Any]], *, rule: str = "line") -> str:
    """A fixed-width text table: the header line, a rule, then one line per row.

    ``rule`` is ``"line"`` (dashes as long as the header), ``"columns"`` (dashes under each column) or ``""``
    (none).
    """
    body = [list(row) for row in rows]
    specs = []
    for i, col in enumerate(columns):
        if col.spec is None:
            width = max([len(col.header), *(len(str(row[i])) for row in body)])
            specs.append(f"<{width}")
        else:
            specs.append(col.spec)

    def line(cells: Sequence[Any]) -> str:
        return "".join(
            (col.gap if i else "") + _cell(cell, spec)
            for i, (col, cell, spec) in enumerate(zip(columns, cells, specs, strict=True))
        )

    head = line([col.header for col in columns])
    lines = [head]
    if rule == "line":
        lines.append("-" * len(head))
    elif rule == "columns":
        lines.append(line(["-" * len(_cell(col.header, spec)) for col, spec in zip(columns, specs, strict=True)]))
    lines += [line(row) for row in body]
    return "\n".join(lines)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: Sequence[str] | None = None) -> str:
    """A Markdown table; ``align`` holds ``":"`` for a right-aligned column (``---:``), ``""`` otherwise."""
    marks = align if align is not None else [""] * len(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" + a for a in marks) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def format_table(
    rows: Sequence[BenchRow],
    columns: Sequence[str] = ("bed", "source", "solver", "schedule", "nfe", "rmse", "mode_mismatch", "log_likelihood"),
) -> str:
    """A fixed-width text table of ``rows`` (floats in 4 significant digits)."""

    def cell(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    return text_table(
        [Column(c, None, "  ") for c in columns], ([cell(getattr(r, c)) for c in columns] for r in rows), rule="columns"
    )


def write_csv(rows: Sequence[Any], path: str | Path, fields: Sequence[str] | None = None) -> Path:
    """Write ``rows`` (dataclasses or mappings) to ``path`` as CSV (parent folders are created).

    The columns are ``fields``, else every key of every row in order of appearance; a file without rows is
    empty.
    """
    path = Path(path)
    dicts = [r if isinstance(r, Mapping) else dataclasses.asdict(r) for r in rows]
    names = list(fields) if fields is not None else list(dict.fromkeys(key for d in dicts for key in d))
    with atomic_write(path, "w", encoding="utf-8") as f:
        if names:
            writer = csv.DictWriter(f, fieldnames=names)
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
        envelopes = [
            ("best of diffsample", lambda k: k[0] == "diffsample" and k[1] != "generate", "tab:blue", "-"),
            ("best of peers", lambda k: k[0] != "diffsample", "tab:red", "--"),
        ]
        for label, keep, color, style in envelopes:
            pts = _envelope(series, keep)
            if pts:
                ax.loglog(*zip(*pts, strict=True), style, color=color, lw=2.2, label=label, zorder=4)
        gen = [k for k in series if k[1] == "generate"]
        for key in gen:
            ax.loglog(
                *zip(*series[key], strict=True),
                color="black",
                lw=2.5,
                marker="s",
                ms=4,
                label="diffsample.generate",
                zorder=5,
            )
        ax.set_title(bed)
        ax.set_xlabel("NFE (model evaluations)")
        ax.set_ylabel(f"{metric} vs exact ODE solution")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, frameon=False)
    fig.tight_layout()
    atomic_write_bytes(path, lambda handle: fig.savefig(handle, dpi=110, format=path.suffix[1:] or "png"))
    plt.close(fig)
    return path


def format_comparison(comparisons: Sequence[Any]) -> str:
    """Per bed and budget: generate, our best configuration, the best peer configuration, and the ratio."""
    columns = [
        Column("bed", "<10"),
        Column("nfe", ">4"),
        Column("generate", ">9.4g", "  "),
        Column("our best", "<26", "  "),
        Column("rmse", ">9.4g"),
        Column("best peer (own span)", "<50", "  "),
        Column("rmse", ">9.4g"),
        Column("ratio", ">5.2f", "  "),
        Column("best peer on the EDM span", "<36", "  "),
        Column("rmse", ">9.4g"),
        Column("ratio", ">5.2f", "  "),
    ]
    return text_table(
        columns,
        (
            [
                c.bed,
                c.nfe,
                c.generate_rmse,
                c.best_ours,
                c.best_ours_rmse,
                c.best_peer,
                c.best_peer_rmse,
                c.ratio,
                c.same_span_peer,
                c.same_span_peer_rmse,
                c.same_span_ratio,
            ]
            for c in comparisons
        ),
    )
