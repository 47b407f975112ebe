"""Small diffusion models trained on scikit-learn's 8×8 digits, shipped with the package, and their metrics.

A real trained network (not an exact test bed) to run solvers, guidance and tuners against:

* :func:`load_digits_flow_model` — a rectified-flow (flow-matching) digits network, optionally with SD3's shift;
* :func:`load_digits_model` — the unconditional or class-conditional model as a σ-space denoiser
  ``D(x, sigma, class_labels=None)`` (labels 0…9; :data:`NULL_LABEL` = 10 is "no class");
* :func:`load_classifier`, :func:`class_accuracy`, :func:`frechet_distance` — a digits classifier
  and the Fréchet distance of its penultimate features (an FID for digits);
* :func:`digits_data` — the real data, scaled to [−1, 1] (needs scikit-learn: ``diffsample[beds]``).

``weights/MODEL_CARD.md`` documents data, architecture, training and the reference numbers.
Importing this package needs torch alone (weights are read by a built-in safetensors reader).
"""

from __future__ import annotations

from .classifier import CLASSIFIER_INFO, DigitsClassifier, class_accuracy, classifier_features, load_classifier
from .data import classifier_split, digits16_data, digits_data, real_halves
from .digits import MODEL_INFO, MODEL_VARIANTS, NULL_LABEL, load_digits_model, load_digits_network, model_config
from .digits_flow import load_digits_flow_model
from .fid import frechet_distance, gaussian_fit, gaussian_frechet_distance
from .network import DigitsMLP

__all__ = [
    "CLASSIFIER_INFO",
    "DigitsClassifier",
    "DigitsMLP",
    "MODEL_INFO",
    "MODEL_VARIANTS",
    "NULL_LABEL",
    "class_accuracy",
    "classifier_features",
    "classifier_split",
    "digits16_data",
    "digits_data",
    "frechet_distance",
    "gaussian_fit",
    "gaussian_frechet_distance",
    "load_classifier",
    "load_digits_flow_model",
    "load_digits_model",
    "load_digits_network",
    "model_config",
    "real_halves",
]

# minority guidance and CADS on the digits models (issue 14)
from .digits_embedding import DigitsEmbeddingDenoiser, load_digits_embedding_model  # noqa: E402
from .minority import MINORITY_INFO, MinorityClassifier, load_minority_classifier  # noqa: E402

__all__ += [
    "MINORITY_INFO",
    "DigitsEmbeddingDenoiser",
    "MinorityClassifier",
    "load_digits_embedding_model",
    "load_minority_classifier",
]
# noise-aware classifier for classifier guidance (issue 14)
from .noisy_classifier import (  # noqa: E402
    NOISY_CLASSIFIER_INFO,
    NoisyDigitsClassifier,
    class_log_prob_potential,
    load_noisy_classifier,
)

__all__ += ["NOISY_CLASSIFIER_INFO", "NoisyDigitsClassifier", "class_log_prob_potential", "load_noisy_classifier"]
