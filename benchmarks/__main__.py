"""``python -m benchmarks SUITE [options]``, run from the repository root: the benchmark harness's one entry point.

Adding a suite: write ``benchmarks/suites/NAME.py`` with a module docstring (its first line is the help),
``add_arguments(parser)`` and ``run(args) -> int`` (the exit code), then add one line to :data:`SUITES`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

__all__ = ["SUITES", "build_parser", "main"]

SUITES: dict[str, str] = {
    "beds": "benchmarks.suites.beds",
    "model": "benchmarks.suites.model",
    "tune": "benchmarks.suites.tune",
    "stochastic": "benchmarks.suites.stochastic",
    "robustness": "benchmarks.suites.robustness",
    "overhead": "benchmarks.suites.overhead",
    "picard": "benchmarks.suites.picard",
    "discrete": "benchmarks.suites.discrete",
    "text": "benchmarks.suites.text",
    "guidance_minority": "benchmarks.suites.guidance_minority",
    "guidance_exact": "benchmarks.suites.guidance_exact",
    "hf_generate": "benchmarks.suites.hf_generate",
    "guidance_digits": "benchmarks.suites.guidance_digits",
    "guidance_gradient": "benchmarks.suites.guidance_gradient",
    "guidance_attention": "benchmarks.suites.guidance_attention",
    "defaults": "benchmarks.suites.defaults",
    "scaling": "benchmarks.suites.scaling",
    "scaling_discrete": "benchmarks.suites.scaling_discrete",
}
"""Suite name → module with ``add_arguments(parser)`` and ``run(args) -> int``."""


def _suite(name: str) -> ModuleType:
    return importlib.import_module(SUITES[name])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="diffsample's benchmark suites (run from the repository root)."
    )
    sub = parser.add_subparsers(dest="suite", metavar="SUITE")
    sub.required = True
    for name in SUITES:
        module = _suite(name)
        summary = (module.__doc__ or name).strip().splitlines()[0]
        p = sub.add_parser(name, help=summary, description=module.__doc__)
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, ImportError) as err:
        print(f"benchmarks: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
