"""Peer libraries side by side: diffusers' schedulers and k-diffusion's samplers on our σ-space denoisers.

Modules: :mod:`.spans` (the noise ranges and install hint), :mod:`.kdiffusion` (loading k-diffusion's
``sampling.py``, its samplers and schedules), :mod:`.diffusers` (running a scheduler on a denoiser, through
the inverse conversions :class:`~diffsample.parameterization.VPTableNetwork` and
:class:`~diffsample.parameterization.EDMNetwork`) and :mod:`.catalogue` (the named configurations).

The benchmark compares solvers at equal NFE, from the same initial noise ``z``, against the exact
probability-flow ODE solution over each run's own σ span. This module lets the two reference
libraries take part in that comparison on the exact test beds:

* **k-diffusion** already speaks our contract: its model is ``D(x, σ)`` in σ-space, so
  :func:`kdiffusion_sample` hands it our denoiser as is. Only its ``sampling.py`` is loaded
  (:func:`load_k_sampling`), never ``k_diffusion/__init__.py`` (which imports torchvision, CLIP,
  wandb…).
* **diffusers** schedulers drive a *network* at integer or float timesteps ``t`` on a discrete
  training table. :func:`diffusers_sample` builds the network a scheduler expects from our exact
  denoiser (see "The network" below), starts the scheduler's walk from the σ-space state
  ``σ_start·z``, runs diffusers' standard loop, and converts the result back to σ-space.

Nothing here is imported by ``import diffsample``; diffusers and k-diffusion are imported inside the
functions that use them. Install them with the commands in ``requirements-peers.txt``.

Spans
-----
``"vp1000"``: the DDPM table (1000 steps, linear β from 1e-4 to 0.02, ε-prediction), on which
diffusers' VP schedulers run; σ runs from ``σ(t=0) ≈ 0.0100`` to ``σ(t=999) ≈ 157.4`` with
``σ(t) = sqrt((1 − ᾱ_t)/ᾱ_t)``. ``"edm"``: EDM's ``σ ∈ [0.002, 80]`` with σ_data = 0.5, on which
diffusers' EDM schedulers run. A diffusers walk starts at *its own* first level (``'leading'``
spacing never starts at t = 999) and may end above 0 (DDIM/PNDM with ``set_alpha_to_one=False``,
DEIS, DPM-Solver with ``final_sigmas_type='sigma_min'``): every run reports ``sigma_start`` and
``sigma_end`` so the reference ODE solution is computed over exactly that span.

The network
-----------
*VP table* (every diffusers scheduler except the EDM ones). Two sample conventions exist:

- VP sample (DDIM, PNDM, DPMSolver*, UniPC, DEIS; ``init_noise_sigma == 1``):
  ``x_t = α_t·x`` with ``α_t = 1/sqrt(1 + σ²)``, where ``x = x0 + σ·ε`` is the σ-space state;
- σ-space sample (Euler, Heun, LMS, KDPM2; ``init_noise_sigma != 1``): the sample *is* ``x`` and
  ``scale_model_input`` divides it by ``sqrt(σ² + 1)``, so the network again sees ``α_t·x``.

So one network serves both: at timestep ``t`` it takes ``σ(t)`` from the scheduler's own
``alphas_cumprod`` table (log-σ interpolated linearly between integer timesteps, the inverse of
diffusers' ``_sigma_to_t``; exact at integer ``t``), recovers ``x = x_t·sqrt(1 + σ²)`` and returns
``ε̂ = (x − D(x, σ))/σ`` (or ``D`` for ``prediction_type='sample'``, or ``v̂ = α(ε̂ − σ·D)`` for
``'v_prediction'``). The network knows ``t`` only, like a trained one: where diffusers rounds a
Karras σ to an integer timestep (``use_karras_sigmas`` in DPMSolverMultistep/Singlestep, UniPC, DEIS,
and KDPM2's full steps), the model is evaluated at the rounded timestep's table σ while the update
uses the unrounded σ. That mismatch is
diffusers' own and is part of what the benchmark measures. Schedulers whose float timesteps come
from linear-in-σ interpolation (Euler/Heun/LMS default ``linspace`` without Karras sigmas) see a
network that interpolates log σ instead; the two differ only between adjacent table entries (at
most ≈1.5 % of σ between t = 0 and t = 1, far less above).

*EDM* (``EDMEulerScheduler``, ``EDMDPMSolverMultistepScheduler``): the network is EDM's raw
preconditioned network ``F`` (Karras et al. 2022, eq. 7). It receives ``c_in·x`` with
``c_in = 1/sqrt(σ² + σ_data²)`` and ``c_noise = ¼ log σ``, recovers σ and ``x``, and returns
``F = (D(x, σ) − c_skip·x)/c_out`` with ``c_skip = σ_data²/(σ² + σ_data²)`` and
``c_out = σ·σ_data/sqrt(σ² + σ_data²)`` (negated for ``prediction_type='v_prediction'``); the
scheduler's ``precondition_outputs`` turns it back into exactly ``D``. diffusers calls this
parameterisation ``"epsilon"``.

Starting state: both walks start from the σ-space state ``σ_start·z`` with ``σ_start`` the
scheduler's own first level (``sigmas[0]``, or ``σ(timesteps[0])`` for DDIM/PNDM), i.e. the VP
sample ``σ_start·z/sqrt(1 + σ_start²) = sqrt(1 − ᾱ)·z`` or the σ-space sample ``σ_start·z``. This
is what a pipeline's ``randn·init_noise_sigma`` means, except where diffusers' ``init_noise_sigma``
is ``sqrt(σ_max² + 1)`` rather than ``σ_max`` (Euler/LMS with ``'leading'`` spacing, Heun, KDPM2,
the EDM schedulers): there a pipeline starts slightly off its first level; we start on it, so both
libraries solve the same ODE problem.

All diffusers walks run in float32 (their own update dtype); the network's conversions use float64.
"""

from __future__ import annotations

from .catalogue import (
    DIFFUSERS_CONFIGS,
    KDIFFUSION_CONFIGS,
    PeerConfig,
    PeerRun,
    peer_configs,
    peers_available,
    require_peers,
)
from .diffusers import diffusers_sample, diffusers_sigmas
from .kdiffusion import (
    KDIFFUSION_SAMPLERS,
    KDIFFUSION_SCHEDULES,
    kdiffusion_sample,
    kdiffusion_sigmas,
    kdiffusion_steps_for_nfe,
    load_k_sampling,
)
from .spans import EDM_CONFIG, INSTALL_HINT, SPANS, VP1000_CONFIG, Span, get_span, vp1000_sigma_table

__all__ = [
    "DIFFUSERS_CONFIGS",
    "EDM_CONFIG",
    "INSTALL_HINT",
    "KDIFFUSION_CONFIGS",
    "KDIFFUSION_SAMPLERS",
    "KDIFFUSION_SCHEDULES",
    "PeerConfig",
    "PeerRun",
    "SPANS",
    "Span",
    "VP1000_CONFIG",
    "diffusers_sample",
    "diffusers_sigmas",
    "get_span",
    "kdiffusion_sample",
    "kdiffusion_sigmas",
    "kdiffusion_steps_for_nfe",
    "load_k_sampling",
    "peer_configs",
    "peers_available",
    "require_peers",
    "vp1000_sigma_table",
]
