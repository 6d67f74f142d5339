"""Common interface of the updates of the Bernoulli search distribution."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np

from sb3_satr.search._checks import check_fitness, check_probabilities, packed_samples
from sb3_satr.search.distribution import kl_sum, mean_entropy
from sb3_satr.search.estimators import GradientEstimate
from sb3_satr.search.shaping import centered_ranks

DIAGNOSTIC_KEYS: tuple[str, ...] = (
    "signal_energy",
    "noise_energy",
    "snr",
    "step_size",
    "kl",
    "entropy",
    "fraction_at_bounds",
    "density",
    "line_search_steps",
    "is_line_search_success",
)


def check_eps(eps: float) -> float:
    """Return the clip margin as a float, or raise ``ValueError`` unless ``0 < eps < 0.5``."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0.0 < float(eps) < 0.5:
        raise ValueError(f"eps must be a number in (0, 0.5), got {eps!r}.")
    return float(eps)


def check_learning_rate(learning_rate: float) -> float:
    """Return a learning rate as a float, or raise ``ValueError`` unless it is finite and at least 0."""
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float, np.floating, np.integer)):
        raise ValueError(f"learning_rate must be a number, got {learning_rate!r}.")
    value = float(learning_rate)
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"learning_rate must be finite and at least 0, got {learning_rate!r}.")
    return value


class BernoulliUpdate(ABC):
    """One generation's update of independent Bernoulli connection probabilities.

    ``step`` validates its inputs, clips the incoming probabilities to ``[eps, 1 - eps]``,
    shapes the raw fitness into centered ranks and hands the packed samples to the update
    rule. KL, entropy and the other diagnostics are measured from the clipped input.

    :param eps: Clip margin. Probabilities stay in ``[eps, 1 - eps]`` so that every
        connection keeps being explored and the Fisher norm stays finite.
    """

    def __init__(self, eps: float = 1e-3) -> None:
        self.eps = check_eps(eps)

    @property
    def low(self) -> float:
        return self.eps

    @property
    def high(self) -> float:
        return 1.0 - self.eps

    def step(
        self, probabilities: np.ndarray, samples: np.ndarray, fitness: np.ndarray
    ) -> tuple[np.ndarray, dict[str, float]]:
        """Update the probabilities from one evaluated population.

        :param probabilities: ``float64 (d,)`` in ``[0, 1]``. The array is not modified.
        :param samples: The members that were evaluated, ``bool (n, d)`` or packed
            ``uint64 (n, n_words(d))``, in sampling order.
        :param fitness: Raw fitness ``(n,)``, higher is better, all finite.
        :return: New ``float64 (d,)`` probabilities in ``[eps, 1 - eps]`` and a dict of
            Python floats with the keys of ``DIAGNOSTIC_KEYS``.
        """
        rho = check_probabilities(probabilities)
        bits = packed_samples(samples, rho.shape[0])
        weights = centered_ranks(check_fitness(fitness, bits.shape[0]))
        start = np.clip(rho, self.low, self.high)
        return self._update(start, bits, weights)

    def _clipped_step(
        self, probabilities: np.ndarray, direction: np.ndarray, step_size: float
    ) -> tuple[np.ndarray, float]:
        """Return ``clip(rho + step_size * direction, eps, 1 - eps)`` and its exact ``KL(new || rho)``."""
        new_probabilities = np.clip(probabilities + step_size * direction, self.low, self.high)
        return new_probabilities, kl_sum(new_probabilities, probabilities)

    @abstractmethod
    def _update(
        self, probabilities: np.ndarray, bits: np.ndarray, weights: np.ndarray
    ) -> tuple[np.ndarray, dict[str, float]]:
        """Return the new probabilities and diagnostics from clipped probabilities, packed bits and centered ranks."""

    def get_state(self) -> dict[str, np.ndarray]:
        """Return the internal state as numpy arrays (empty for stateless updates)."""
        return {}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore a state returned by ``get_state``."""
        if state:
            raise ValueError(
                f"{type(self).__name__} has no internal state, got keys {sorted(state)}."
            )

    def _diagnostics(
        self,
        new_probabilities: np.ndarray,
        estimate: GradientEstimate,
        step_size: float,
        kl: float,
        line_search_steps: int = 0,
        is_line_search_success: bool = True,
    ) -> dict[str, float]:
        signal = estimate.signal_energy
        noise = estimate.noise_energy
        if noise > 0.0:
            snr = signal / noise
        else:
            # Without measured noise the ratio is 0 for no signal and unbounded otherwise.
            snr = 0.0 if signal == 0.0 else math.inf
        at_bounds = (new_probabilities <= self.low) | (new_probabilities >= self.high)
        return {
            "signal_energy": float(signal),
            "noise_energy": float(noise),
            "snr": float(snr),
            "step_size": float(step_size),
            "kl": float(kl),
            "entropy": mean_entropy(new_probabilities),
            "fraction_at_bounds": float(np.mean(at_bounds)),
            "density": float(np.mean(new_probabilities)),
            "line_search_steps": float(line_search_steps),
            "is_line_search_success": 1.0 if is_line_search_success else 0.0,
        }
