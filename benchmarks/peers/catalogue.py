"""The catalogue of named peer configurations (:data:`DIFFUSERS_CONFIGS`, :data:`KDIFFUSION_CONFIGS`), which
of them the installed peers can run (:func:`peer_configs`), and which peers are installed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal, NamedTuple

import torch

from diffsample.denoisers import Denoiser

from .diffusers import diffusers_sample
from .kdiffusion import (
    KDIFFUSION_SAMPLERS,
    kdiffusion_sample,
    kdiffusion_sigmas,
    kdiffusion_steps_for_nfe,
    load_k_sampling,
)
from .spans import INSTALL_HINT, SPANS, get_span

__all__ = [
    "DIFFUSERS_CONFIGS",
    "KDIFFUSION_CONFIGS",
    "PeerConfig",
    "PeerRun",
    "peer_configs",
    "peers_available",
    "require_peers",
]


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def peers_available() -> dict[str, str | None]:
    """Installed versions of the peer libraries, ``None`` where one is missing or does not load.

    ``"k-diffusion"`` is reported only when its ``sampling.py`` actually loads (see
    :func:`load_k_sampling`), ``"diffusers"`` only when ``import diffusers`` succeeds.
    """
    out: dict[str, str | None] = {}
    try:
        import diffusers

        out["diffusers"] = str(diffusers.__version__)
    except ImportError:
        out["diffusers"] = None
    try:
        load_k_sampling()
        out["k-diffusion"] = _version("k-diffusion")
    except ImportError:
        out["k-diffusion"] = None
    return out


def require_peers() -> None:
    """Raise :class:`ImportError` with the install command unless diffusers and k-diffusion both load."""
    missing = [name for name, version in peers_available().items() if version is None]
    if missing:
        raise ImportError(f"--peers needs {', '.join(missing)}: bash scripts/setup.sh test (or {INSTALL_HINT})")


class PeerRun(NamedTuple):
    """One peer walk: final σ-space state, model evaluations, and the σ span it covered."""

    x: torch.Tensor
    nfe: int
    sigma_start: float
    sigma_end: float


@dataclass(frozen=True, eq=False)
class PeerConfig:
    """A named peer-library configuration the benchmark can run at any NFE budget.

    ``library`` is ``"diffusers"`` (``sampler`` a scheduler class, ``options`` config overrides) or
    ``"k-diffusion"`` (``sampler`` a ``sample_*`` name, ``schedule`` one of
    :data:`KDIFFUSION_SCHEDULES` or ``None`` for dpm_fast/dpm_adaptive, ``options`` sampler
    keyword arguments). ``fixed_nfe`` is false for adaptive samplers, whose cost the budget does
    not set. ``issue`` describes a known failure of the peer itself (measured with diffusers
    0.42.1), e.g. NaN output; such configurations are kept so the benchmark shows it.
    """

    name: str
    library: Literal["diffusers", "k-diffusion"]
    sampler: str
    span: str
    options: Mapping[str, Any] = field(default_factory=dict)
    schedule: str | None = None
    fixed_nfe: bool = True
    note: str = ""
    issue: str = ""

    def run(
        self,
        denoiser: Denoiser | Callable[..., torch.Tensor],
        z: torch.Tensor,
        nfe: int,
        table: Mapping[str, Any] | None = None,
    ) -> PeerRun:
        """Walk from the σ-space state ``σ_start·z`` with at most ``nfe`` model evaluations.

        ``table``: scheduler options that put a diffusers VP scheduler on another training table (e.g. Stable
        Diffusion's ``scaled_linear`` β); k-diffusion configurations take none."""
        if self.library == "diffusers":
            options = {**self.options, **(table or {})}
            x, used, s0, s1 = diffusers_sample(self.sampler, denoiser, z, nfe, config=options, span=self.span)  # type: ignore[arg-type]
            return PeerRun(x, used, s0, s1)
        if table:
            raise ValueError(f"{self.name}: k-diffusion configurations run on their span, not on another table")
        sp = get_span(self.span)
        if self.schedule is None:  # dpm_fast / dpm_adaptive: a span, not a σ array
            sigmas = torch.tensor([sp.sigma_max, sp.sigma_min, 0.0], dtype=torch.float64)
            opts = dict(self.options)
            if self.sampler == "dpm_fast":
                opts["n"] = nfe
            x0 = z.to(torch.float32) * sp.sigma_max
            x, used = kdiffusion_sample(self.sampler, denoiser, x0, sigmas, **opts)
            return PeerRun(x, used, sp.sigma_max, sp.sigma_min)
        steps = kdiffusion_steps_for_nfe(self.sampler, nfe)
        sigmas = kdiffusion_sigmas(self.schedule, steps, sp)
        x0 = z.to(torch.float32) * float(sigmas[0])
        x, used = kdiffusion_sample(self.sampler, denoiser, x0, sigmas, **self.options)
        return PeerRun(x, used, float(sigmas[0]), float(sigmas[-1]))


def _df(name: str, cls: str, span: str = "vp1000", note: str = "", issue: str = "", **options: Any) -> PeerConfig:
    return PeerConfig(f"diffusers:{name}", "diffusers", cls, span, options, note=note, issue=issue)


_DPMM = "DPMSolverMultistepScheduler"
_DPMS = "DPMSolverSinglestepScheduler"
_UNIPC = "UniPCMultistepScheduler"
_KARRAS = {"use_karras_sigmas": True}
_SIGMA_MIN_END = {"final_sigmas_type": "sigma_min"}  # required by diffusers for non-++ DPM-Solver
_NAN_BH1 = (
    "NaN at the last step into σ = 0 at every NFE: bh1 sets B(h) = −h, infinite there "
    "(bh2's expm1(−h) = −1 stays finite); ending at sigma_min avoids it"
)
_DDIM_SPACING = (
    "wrong result when 1000/steps is not an integer: DDIM.step goes to t − 1000//steps, not to "
    "the next listed timestep, so the next step starts from the wrong level ('linspace' spacing "
    "has it at every step count below 1000; 'leading' never)"
)
_NAN_3M_KARRAS = (
    "NaN at the last step from 15 steps on (lower_order_final only acts below 15): the Karras "
    "σ_min equals the final sigma_min level, so that step has h = 0 and the 3rd-order "
    "coefficients divide by it; euler_at_final=True avoids it"
)

DIFFUSERS_CONFIGS: tuple[PeerConfig, ...] = (
    # DPM-Solver++ multistep (data prediction), ends in x0
    _df("dpm++2m", _DPMM, algorithm_type="dpmsolver++", solver_order=2),
    _df("dpm++2m-karras", _DPMM, algorithm_type="dpmsolver++", solver_order=2, **_KARRAS),
    _df("dpm++2m-no-lof", _DPMM, algorithm_type="dpmsolver++", solver_order=2, lower_order_final=False),
    _df("dpm++2m-heun", _DPMM, algorithm_type="dpmsolver++", solver_order=2, solver_type="heun"),
    _df("dpm++2m-trailing", _DPMM, algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="trailing"),
    _df("dpm++2m-leading", _DPMM, algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="leading"),
    _df("dpm++3m", _DPMM, algorithm_type="dpmsolver++", solver_order=3),
    _df("dpm++3m-karras", _DPMM, algorithm_type="dpmsolver++", solver_order=3, **_KARRAS),
    _df("dpm++3m-no-lof", _DPMM, algorithm_type="dpmsolver++", solver_order=3, lower_order_final=False),
    # DPM-Solver multistep (noise prediction); diffusers forbids ending at 0, so they end at σ_min
    _df("dpm2m", _DPMM, algorithm_type="dpmsolver", solver_order=2, **_SIGMA_MIN_END),
    _df("dpm2m-karras", _DPMM, algorithm_type="dpmsolver", solver_order=2, **_KARRAS, **_SIGMA_MIN_END),
    _df("dpm3m", _DPMM, algorithm_type="dpmsolver", solver_order=3, **_SIGMA_MIN_END),
    _df(
        "dpm3m-karras",
        _DPMM,
        algorithm_type="dpmsolver",
        solver_order=3,
        issue=_NAN_3M_KARRAS,
        **_KARRAS,
        **_SIGMA_MIN_END,
    ),
    _df(
        "dpm3m-karras-euler-final",
        _DPMM,
        algorithm_type="dpmsolver",
        solver_order=3,
        euler_at_final=True,
        **_KARRAS,
        **_SIGMA_MIN_END,
    ),
    # DPM-Solver singlestep
    _df("dpm++2s", _DPMS, algorithm_type="dpmsolver++", solver_order=2),
    _df("dpm++3s", _DPMS, algorithm_type="dpmsolver++", solver_order=3),
    _df("dpm++3s-karras", _DPMS, algorithm_type="dpmsolver++", solver_order=3, **_KARRAS),
    _df("dpm2s", _DPMS, algorithm_type="dpmsolver", solver_order=2, **_SIGMA_MIN_END),
    _df("dpm3s", _DPMS, algorithm_type="dpmsolver", solver_order=3, **_SIGMA_MIN_END),
    # UniPC
    _df("unipc-bh1-o2", _UNIPC, solver_type="bh1", solver_order=2, issue=_NAN_BH1),
    _df("unipc-bh1-o2-sigma-min", _UNIPC, solver_type="bh1", solver_order=2, **_SIGMA_MIN_END),
    _df("unipc-bh2-o2", _UNIPC, solver_type="bh2", solver_order=2),
    _df("unipc-bh1-o3", _UNIPC, solver_type="bh1", solver_order=3, issue=_NAN_BH1),
    _df(
        "unipc-bh1-o3-sigma-min",
        _UNIPC,
        solver_type="bh1",
        solver_order=3,
        **_SIGMA_MIN_END,
        note="its error stalls near 5e-4 from 40 to 320 NFE on the Gaussian bed (float64 tables too)",
    ),
    _df("unipc-bh2-o3", _UNIPC, solver_type="bh2", solver_order=3),
    _df("unipc-bh2-o2-karras", _UNIPC, solver_type="bh2", solver_order=2, **_KARRAS),
    _df("unipc-bh2-o3-karras", _UNIPC, solver_type="bh2", solver_order=3, **_KARRAS),
    # DEIS (ends at the table's σ_min)
    _df("deis-o2", "DEISMultistepScheduler", solver_order=2),
    _df(
        "deis-o3",
        "DEISMultistepScheduler",
        solver_order=3,
        note="its 3rd-order coefficients come from float32 σ tables and lose accuracy as steps shrink: the "
        "error stops falling near 80 NFE and grows after (float64 tables converge)",
    ),
    # DDIM / PLMS
    _df("ddim", "DDIMScheduler", note="diffusers default 'leading' spacing: starts below t = 999"),
    _df("ddim-trailing", "DDIMScheduler", timestep_spacing="trailing", issue=_DDIM_SPACING),
    _df("pndm-plms", "PNDMScheduler", skip_prk_steps=True, note="PLMS only; ends at σ(t=0)"),
    # k-diffusion-style σ-space schedulers
    _df("euler", "EulerDiscreteScheduler"),
    _df("euler-karras", "EulerDiscreteScheduler", **_KARRAS),
    _df("euler-leading", "EulerDiscreteScheduler", timestep_spacing="leading"),
    _df("heun", "HeunDiscreteScheduler"),
    _df("heun-karras", "HeunDiscreteScheduler", **_KARRAS),
    _df("lms", "LMSDiscreteScheduler"),
    _df("lms-karras", "LMSDiscreteScheduler", **_KARRAS),
    _df("kdpm2", "KDPM2DiscreteScheduler"),
    _df("kdpm2-karras", "KDPM2DiscreteScheduler", **_KARRAS),
    # EDM span
    _df("edm-euler", "EDMEulerScheduler", span="edm"),
    _df("edm-dpm++2m", "EDMDPMSolverMultistepScheduler", span="edm", solver_order=2),
    _df("edm-dpm++3m", "EDMDPMSolverMultistepScheduler", span="edm", solver_order=3),
)
"""Named diffusers configurations (VP table unless ``span='edm'``); see :func:`diffusers_sample`."""


def _kd_configs() -> tuple[PeerConfig, ...]:
    configs: list[PeerConfig] = []
    for span in SPANS:
        for sampler in KDIFFUSION_SAMPLERS:
            for schedule in ("karras", "exponential"):
                configs.append(
                    PeerConfig(
                        f"k-diffusion:{sampler}-{schedule}@{span}", "k-diffusion", sampler, span, schedule=schedule
                    )
                )
        configs.append(
            PeerConfig(
                f"k-diffusion:dpm_fast@{span}",
                "k-diffusion",
                "dpm_fast",
                span,
                note="ends at the span's sigma_min, not 0",
            )
        )
        configs.append(
            PeerConfig(
                f"k-diffusion:dpm_adaptive@{span}",
                "k-diffusion",
                "dpm_adaptive",
                span,
                fixed_nfe=False,
                note="adaptive steps (rtol 0.05, atol 0.0078): NFE is its own",
            )
        )
    return tuple(configs)


KDIFFUSION_CONFIGS: tuple[PeerConfig, ...] = _kd_configs()
"""k-diffusion sampler × schedule (karras, exponential) × span; ``peer_configs`` drops the samplers
(ipndm, ipndm_v, deis) that the installed k-diffusion lacks."""


def peer_configs(library: str | None = None, span: str | None = None) -> list[PeerConfig]:
    """The configurations runnable with what is installed, optionally filtered by library and span."""
    avail = peers_available()
    out: list[PeerConfig] = []
    ks = load_k_sampling() if avail["k-diffusion"] else None
    for cfg in (*DIFFUSERS_CONFIGS, *KDIFFUSION_CONFIGS):
        if library is not None and cfg.library != library:
            continue
        if span is not None and cfg.span != span:
            continue
        if avail[cfg.library] is None:
            continue
        if cfg.library == "k-diffusion" and not hasattr(ks, f"sample_{cfg.sampler}"):
            continue
        out.append(cfg)
    return out
