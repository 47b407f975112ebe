"""Tune a sampling plan (step schedule + per-step solver choices) for your own model and budget, save it,
and sample with it again.

Uses the shipped digits network; put your own `ModelDenoiser` or `load_diffusers_denoiser(...)` in its place.
Tuning costs model calls on a calibration batch (printed); a plan is a small JSON file.
Run: `python examples/tune_a_plan.py [NFE]` (about a minute on 2 CPU cores).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import diffsample as ds
from diffsample.models import load_digits_model


def main(nfe: int = 5) -> None:
    model = load_digits_model()
    sigma_min, sigma_max = float(model.noise_schedule.sigma_min), float(model.noise_schedule.sigma_max)
    calibration = ds.noise.seeded(range(64)).initial((64, 1, 8, 8), sigma_max)
    plan = ds.tune(model, calibration=calibration, nfe=nfe, sigma_min=sigma_min, sigma_max=sigma_max, refine=1, kicks=0)
    print(f"tuned plan for NFE {nfe}: sigmas {[round(s, 4) for s in plan.sigmas]}")
    cost = plan.provenance
    print(f"tuning cost {cost['tuning_nfe']:.0f} model calls per calibration sample, {cost['tuning_seconds']:.0f} s")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "digits-plan.json"
        plan.save(path)
        held_out = ds.noise.seeded(range(1000, 1016)).initial((16, 1, 8, 8), sigma_max)
        before = model.nfe
        out = ds.generate(model, held_out, plan=ds.Plan.load(path))
        print(f"sampled {tuple(out.shape)} with the saved plan in {model.nfe - before} model calls")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
