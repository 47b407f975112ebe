"""The maths that several solver families share, each piece in one module.

* :mod:`.levels`: noise levels as the denoiser contract and the host arithmetic want them;
* :mod:`.callbacks`: the per-step callback (k-diffusion's keys) and its re-indexing wrappers;
* :mod:`.noise`: the checks and the draw of stochastic solvers (no global RNG);
* :mod:`.orders`: order validation, warm-up and the one ``lower_order_final`` rule (step growth and the
  Gaussian-test bound included);
* :mod:`.phi`: φ-functions of exponential integrators (DPM-Solver, DPM-Solver++, UniPC, SDE-DPM-Solver++);
* :mod:`.lagrange`: Lagrange-basis weights (integrals, point values, transposed Vandermonde solves);
* :mod:`.adams_bashforth`: Adams–Bashforth weights in σ and the linear multistep walk on ε̂;
* :mod:`.pf_ode`: the Euler (DDIM) and Heun steps of the σ-space PF-ODE;
* :mod:`.exponential`: the first-order exponential-integrator update and DPM-Solver's multistep weights;
* :mod:`.unified`: UniPC's unified predictor–corrector update (UniP/UniC weights and their plan).
* :mod:`.stability`: the Gaussian test problem, the step error it measures and the stability warning;
* :mod:`.threshold`: dynamic thresholding inside an update (the maths is :mod:`diffsample.transforms.thresholding`);
* :mod:`.weighted`: weighted sums of tensors (momentum histories, fitted solver weights).

Solver modules import from here, from the registry and each other's public solver functions; nothing here
imports a solver module. Names are public inside this private package.
"""
