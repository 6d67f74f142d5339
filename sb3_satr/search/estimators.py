"""Signal and noise energy of the natural-gradient estimate, in the Fisher norm.

With per-member terms ``u_i = w_i (theta_i - rho)`` and ``g = mean_i u_i``, the squared
Fisher norm ``||g||_F^2 = sum_j g_j^2 / (rho_j (1 - rho_j))`` mixes the norm of the true
natural gradient (the signal) with the sampling variance of ``g`` (the noise). The two
estimators split it in two ways:

- ``"variance"``: noise ``N = sum_i ||u_i - g||_F^2 / (n (n - 1))``, the sample variance
  of the mean, and signal ``S = max(||g||_F^2 - N, 0)``.
- ``"split_half"``: ``g_A`` and ``g_B`` from the first ``n // 2`` members and the rest,
  signal ``S = max(<g_A, g_B>_F, 0)`` and noise ``N = n_A n_B / n^2 ||g_A - g_B||_F^2``.

Both are unbiased before the clamp at 0 when the ``u_i`` are independent. Centered ranks
couple the members slightly, so they are unbiased only up to that coupling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from sb3_satr.search import _kernels
from sb3_satr.search._checks import check_probabilities, check_weights, packed_samples
from sb3_satr.search.shaping import weighted_bit_sums

SignalEstimator = Literal["variance", "split_half"]
SIGNAL_ESTIMATORS: tuple[str, ...] = get_args(SignalEstimator)


@dataclass(frozen=True)
class GradientEstimate:
    """Natural-gradient estimate of one generation and its energies (squared Fisher norms).

    :param gradient: ``g``, ``float64 (d,)``.
    :param gradient_energy: ``||g||_F^2``.
    :param signal_energy: Estimate of ``||E[g]||_F^2``, at least 0.
    :param noise_energy: Estimate of ``E ||g - E[g]||_F^2``, at least 0.
    """

    gradient: np.ndarray
    gradient_energy: float
    signal_energy: float
    noise_energy: float


def estimate_gradient(
    probabilities: np.ndarray,
    samples: np.ndarray,
    weights: np.ndarray,
    estimator: SignalEstimator = "variance",
) -> GradientEstimate:
    """Estimate the natural gradient and its signal and noise energies from packed bits.

    The split-half estimator takes the members in the order given, so pass them in
    sampling order, not sorted by fitness.

    :param probabilities: ``float64 (d,)``, strictly inside ``(0, 1)`` because the Fisher
        norm divides by ``rho (1 - rho)``.
    :param samples: ``bool (n, d)`` or packed ``uint64 (n, n_words(d))``.
    :param weights: Shaped fitness ``(n,)``, for example from ``centered_ranks``.
    :param estimator: ``"variance"`` or ``"split_half"``.
    """
    rho = check_probabilities(probabilities)
    if rho.min() <= 0.0 or rho.max() >= 1.0:
        raise ValueError(
            "probabilities must lie strictly inside (0, 1) for the Fisher norm; "
            "clip them to [eps, 1 - eps] first."
        )
    if estimator not in SIGNAL_ESTIMATORS:
        raise ValueError(f"estimator must be one of {SIGNAL_ESTIMATORS}, got {estimator!r}.")
    bits = packed_samples(samples, rho.shape[0])
    w = check_weights(weights, bits.shape[0])
    if estimator == "variance":
        return _variance_estimate(rho, bits, w)
    return _split_half_estimate(rho, bits, w)


def _variance_estimate(rho: np.ndarray, bits: np.ndarray, w: np.ndarray) -> GradientEstimate:
    n = w.shape[0]
    sums = weighted_bit_sums(bits, np.stack([w, w * w]), rho.shape[0])
    gradient = (sums[0] - w.sum() * rho) / n
    gradient_energy = _kernels.fisher_inner(gradient, gradient, rho)
    if n < 2:
        return GradientEstimate(gradient, gradient_energy, 0.0, 0.0)

    # sum_i ||u_i||_F^2 without unpacking: theta^2 = theta, so for each parameter
    # sum_i w_i^2 (theta_ij - rho_j)^2 = (1 - 2 rho_j) sum_i w_i^2 theta_ij + rho_j^2 sum_i w_i^2.
    squared_terms = (1.0 - 2.0 * rho) * sums[1] + rho * rho * float(np.sum(w * w))
    total = float(np.sum(squared_terms / (rho * (1.0 - rho))))
    # sum_i ||u_i - g||_F^2 = sum_i ||u_i||_F^2 - n ||g||_F^2. Rounding can make it
    # slightly negative when every u_i is equal.
    spread = max(total - n * gradient_energy, 0.0)
    noise_energy = spread / (n * (n - 1))
    signal_energy = max(gradient_energy - noise_energy, 0.0)
    return GradientEstimate(gradient, gradient_energy, signal_energy, noise_energy)


def _split_half_estimate(rho: np.ndarray, bits: np.ndarray, w: np.ndarray) -> GradientEstimate:
    n = w.shape[0]
    n_first = n // 2
    n_second = n - n_first
    in_first = np.arange(n) < n_first
    first_weights = np.where(in_first, w, 0.0)
    second_weights = np.where(in_first, 0.0, w)
    sums = weighted_bit_sums(bits, np.stack([first_weights, second_weights]), rho.shape[0])

    gradient = (sums[0] + sums[1] - w.sum() * rho) / n
    gradient_energy = _kernels.fisher_inner(gradient, gradient, rho)
    if n_first == 0:
        return GradientEstimate(gradient, gradient_energy, 0.0, 0.0)

    first_gradient = (sums[0] - first_weights.sum() * rho) / n_first
    second_gradient = (sums[1] - second_weights.sum() * rho) / n_second
    signal_energy = max(_kernels.fisher_inner(first_gradient, second_gradient, rho), 0.0)
    difference = first_gradient - second_gradient
    noise_energy = n_first * n_second / n**2 * _kernels.fisher_inner(difference, difference, rho)
    return GradientEstimate(gradient, gradient_energy, signal_energy, noise_energy)
