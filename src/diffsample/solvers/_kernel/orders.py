"""Order planning of multistep solvers: option checks, warm-up and the one ``lower_order_final`` rule.

Warm-up
-------
Step ``i`` of a multistep method has the model values of ``i + 1`` points at hand, so it runs at order
``min(order, i + 1)`` (every multistep solver of this library, as DPM-Solver, UniPC, diffusers and
k-diffusion do).

``lower_order_final``
---------------------
Every solver that takes the option (default on) lowers the order, through :func:`planned_orders`, of
the steps where its polynomial in the model values would be extrapolated far past the points it was
fitted on:

1. **The step into σ = 0 is first order** and returns ``D(x, σ_{n−1})``. In ``λ = −log σ`` that step is
   infinitely long: the higher-order weights of DPM-Solver (Lu et al. 2022a), DPM-Solver++ (Lu et al.
   2022b), UniPC (Zhao et al. 2023) and DPM-Solver-v3 (Zheng et al. 2023) grow without bound and the only
   finite limit is the first-order one, so the λ-space solvers take it whatever the option says. In σ
   (Adams–Bashforth: ``lms``, ``ipndm``, ``deis``, ``plms_hb``, ``ghvb``) the weights stay finite, but the
   step is ``σ_min`` long while the slopes are spaced ``h = σ_{n−2} − σ_min``, and extrapolating over
   ``σ_min/h`` spacings multiplies the network's rounding error in ε̂ by about ``(σ_min/h)^{k−1}`` (1000
   LMS steps into 0 on the ring2d and mixture64 beds with a float16 network end at an RMSE of 0.03–0.06
   (Karras) and 0.3–0.45 (log-SNR) from the exact solution instead of ≤ 2.5e-4), while the first-order
   step costs only ``O(σ_min² |dε̂/dσ|)`` (float64 networks, 3–40 steps: the two choices mostly differ by
   < 1 %, at most 1.6× either way). There the option switches this rule; ``lower_order_final=False``
   keeps the full order on that step (worth it only when σ_min is not small, e.g. ``[80, 10, 1, 0]``).
2. **Runs shorter than 15 steps end at decreasing orders** in λ: step ``i`` also has order ``≤ n − i``
   (the last step first order, the one before at most second order, …). This is DPM-Solver's
   ``lower_order_final`` (Lu et al. 2022a/b, reference code) and diffusers' ("lower order final for
   < 15 steps", :data:`LOWER_ORDER_FINAL_BELOW`): the large final steps of short runs on coarse grids
   are more stable at lower order. The σ-space solvers do not take it: in σ the steps before the last
   are no longer than the others, and capping them was more often worse than better at 5–15 steps.
3. **A sudden long step is at most second order** in λ, at any run length: a step whose λ-length
   exceeds ``1 + √2`` times the previous one (:data:`STEP_GROWTH_LIMIT`, this library's rule). A
   third-order extrapolation over such a step amplifies the divided differences by the square of the
   ratio; ``1 + √2`` is the zero-stability bound of variable-step BDF2 (Grigorieff 1983), used as the
   limit of a "smooth" step sequence. Karras, log-SNR and exponential grids never trigger it;
   KL-optimal and beta grids do on their last finite step (ratio 5–6), where it turned the error jump
   of DPM-Solver++(3M) at 15 → 16 KL-optimal steps (mixture64 0.114 → 0.243, ring2d 0.229 → 1.56) into a
   smooth decrease (0.108, 0.204), and beta steps' 4.9 into 0.76 (mixture64, 16 steps).
4. **No step is less accurate than a first-order one** on the Gaussian test problem, in λ, at any run
   length (this library's rule; :mod:`.stability` for the problem). On data ``N(0, s²)`` the exact state
   and model values along the PF-ODE are known, so the error ``E`` of DPM-Solver++'s order-``k``
   multistep step fed the exact past values (:func:`multistep_error`), worst over the data scale ``s``,
   measures how far the extrapolation of ``D`` in λ overshoots. A first-order step always has
   ``E < 1`` (Cauchy–Schwarz, :mod:`.stability`), so the order is lowered while ``E > 1``
   (:data:`FIRST_ORDER_ERROR_BOUND`). This is what a tiny ``σ_min`` breaks: ``D`` changes by ``O(σ²)``
   once σ is below the data's scale, but the polynomial in λ keeps it moving, and a long λ-step
   (``karras(10, 1e-10, 80)``: ``h`` 4.3 after 2.6 and 1.9; ``[80, 1, 1e-30, 0]``: a second-order step of
   ratio 16) extrapolates it far past the data: DPM-Solver++(3M) ended at an RMSE of 1.8 on ring2d and
   mixture64 (0.24 on the default span), ``|x| = 7.2`` on the unit-circle bed. Karras, log-SNR,
   exponential and KL-optimal grids of 2–100 steps on the default span (0.002 … 80) stay below the bound
   (at most 0.92), so their orders and results are unchanged. Beta grids of 3–16 steps, whose last
   finite step is 5–6 times longer than the one before (rule 3), do exceed it (``E`` 1.0–1.4) and take
   that step at first order: DPM-Solver++(3M) at 16 beta steps went from 0.77 to 0.25 on mixture64 and
   from 0.33 to 0.46 on ring2d (64 seeded samples, exact reference). The bound is measured with DPM-Solver++'s
   weights and applies to every λ-space family through this one plan (DPM-Solver, UniPC, DPM-Solver-v3,
   SDE-DPM-Solver++, ``dpmpp_2m_hb``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from ...errors import DiffsampleError
from .exponential import advance, mix, multistep_coeffs
from .stability import gaussian_variances, relative_error

#: Rule 2 of ``lower_order_final`` applies to runs shorter than this (diffusers' threshold).
LOWER_ORDER_FINAL_BELOW = 15

#: Rule 3 of ``lower_order_final``: a step whose λ-length grows by more than this factor is at most order 2.
STEP_GROWTH_LIMIT = 1.0 + math.sqrt(2.0)


#: Rule 4 of ``lower_order_final``: a λ-step is lowered while its Gaussian-test error exceeds this (a
#: first-order step's bound).
FIRST_ORDER_ERROR_BOUND = 1.0


def multistep_error(s: Sequence[float], i: int, order: int) -> float:
    """``E`` of DPM-Solver++'s order-``order`` multistep step ``s[i] → s[i+1]`` (``> 0``) on Gaussian data
    ``N(0, s²)`` (:mod:`.stability`), from the exact state at ``s[i]`` and the exact ``D`` at ``s[i], s[i−1], …``:
    ``D(σ) = s²/sqrt(s² + σ²)`` on the one-standard-deviation trajectory ``x(σ) = sqrt(s² + σ²)``."""
    levels = [s[i - j] for j in range(order)]
    variance = gaussian_variances(s[i + 1], levels[-1])
    lam = [-math.log(level) for level in levels]
    coeffs = multistep_coeffs(-math.log(s[i + 1]) - lam[0], [lam[j] - lam[j + 1] for j in range(order - 1)], True)
    denoised = mix([variance / (variance + level**2).sqrt() for level in levels], coeffs)
    out = advance((variance + s[i] ** 2).sqrt(), denoised, s[i], s[i + 1], True)
    return relative_error(out, variance, s[i + 1])


def check_order(order: int, max_order: int, solver: str) -> int:
    """Validate an ``order`` option (an integer in ``1 … max_order``) and return it as ``int``."""
    integral = isinstance(order, numbers.Integral) or (isinstance(order, float) and order.is_integer())
    if isinstance(order, bool) or not integral or not 1 <= order <= max_order:
        raise DiffsampleError(f"{solver}: order must be an integer from 1 to {max_order}, got {order!r}")
    return int(order)


def check_choice(solver: str, name: str, value: object, valid: Sequence[str]) -> None:
    """Raise unless the string option ``name`` of ``solver`` is one of ``valid``."""
    if value not in valid:
        raise DiffsampleError(f"{solver}: {name} must be one of {', '.join(map(repr, valid))}, got {value!r}")


def step_orders(n_steps: int, order: int, cap_by_steps_left: bool) -> list[int]:
    """Order of each step: ``min(order, i + 1)`` (warm-up), and with ``cap_by_steps_left`` also
    ``≤ n_steps − i`` (rule 2 of the module docstring)."""
    return [min(order, i + 1, n_steps - i) if cap_by_steps_left else min(order, i + 1) for i in range(n_steps)]


def planned_orders(s: Sequence[float], order: int, lower_order_final: bool, *, in_lambda: bool = True) -> list[int]:
    """Orders of a multistep walk over the levels ``s`` (floats, ``s[-1]`` may be 0): warm-up and, with
    ``lower_order_final``, the rule of the module docstring.

    ``in_lambda``: the solver extrapolates in ``λ = −log σ`` (exponential integrators: rules 1–4, rule 1
    whatever ``lower_order_final`` says) rather than in σ (Adams–Bashforth methods: rule 1 only).
    """
    n = len(s) - 1
    orders = step_orders(n, order, lower_order_final and in_lambda and n < LOWER_ORDER_FINAL_BELOW)
    if lower_order_final and in_lambda:
        for i in range(1, n):
            if s[i + 1] > 0 and math.log(s[i] / s[i + 1]) > STEP_GROWTH_LIMIT * math.log(s[i - 1] / s[i]):
                orders[i] = min(orders[i], 2)
        for i in range(1, n):
            while s[i + 1] > 0 and orders[i] > 1 and multistep_error(s, i, orders[i]) > FIRST_ORDER_ERROR_BOUND:
                orders[i] -= 1
    if n > 0 and s[-1] == 0 and (in_lambda or lower_order_final):
        orders[-1] = 1
    return orders
