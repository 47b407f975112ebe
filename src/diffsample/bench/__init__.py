"""Benchmarks: solvers × NFE budgets × test beds against exact reference solutions.

``diffsample bench`` is the command-line entry point; :func:`run_benchmark` the library one.
Peer libraries (diffusers, k-diffusion) live in :mod:`diffsample.bench.peers` and are imported
only when asked for.
"""

from __future__ import annotations

from .runner import BenchConfig, BenchRow, convergence_slopes, run_benchmark

__all__ = ["BenchConfig", "BenchRow", "convergence_slopes", "run_benchmark"]
