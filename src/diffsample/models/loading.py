"""One way to name a model everywhere (``--model`` on the command line, generate-set's settings): the shipped
digits network by name, or a local diffusers model or pipeline directory by path."""

from __future__ import annotations

from ..parameterization import ModelDenoiser

__all__ = ["SHIPPED_MODEL", "load_model"]

SHIPPED_MODEL = "digits"
"""The name of the network shipped in :mod:`diffsample.models` (also the default model)."""


def load_model(model: str | None = None, *, conditional: bool = False) -> tuple[ModelDenoiser, int | None]:
    """The denoiser named by ``model`` and its null class label (``None`` when it takes no labels).

    ``None`` or ``"digits"`` is the shipped digits network (class-conditional when ``conditional``);
    anything else is a diffusers model or pipeline directory (:func:`~diffsample.integrations.load_diffusers_denoiser`).
    """
    if model and model != SHIPPED_MODEL:
        from ..integrations import load_diffusers_denoiser

        return load_diffusers_denoiser(model), None
    from .digits import NULL_LABEL, load_digits_model

    return load_digits_model(conditional=conditional), NULL_LABEL
