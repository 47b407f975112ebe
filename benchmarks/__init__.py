"""The benchmark harness of diffsample (not installed): solvers × NFE budgets × test beds against exact answers.

Run it from the repository root as ``python -m benchmarks SUITE [options]`` (:mod:`benchmarks.__main__` lists the
suites, one module each in :mod:`benchmarks.suites`); :func:`run_benchmark` is the library entry point. Peer
libraries (diffusers, k-diffusion) live in :mod:`benchmarks.peers` and are imported only when asked for.
"""

from __future__ import annotations

from .runner import BenchConfig, BenchRow, convergence_slopes, run_benchmark

__all__ = ["BenchConfig", "BenchRow", "convergence_slopes", "run_benchmark"]
