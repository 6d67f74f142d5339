"""Baseline updates for ablations: Evolving Connectivity's Adam step and a plain natural-gradient step."""

from __future__ import annotations

import math

import numpy as np

from sb3_satr.search.base import BernoulliUpdate, check_learning_rate
from sb3_satr.search.estimators import estimate_gradient

_ADAM_STATE_KEYS = ("first_moment", "second_moment", "step_count")


class _LearningRateUpdate(BernoulliUpdate):
    """Update with a ``learning_rate`` attribute that is checked whenever it is set."""

    @property
    def learning_rate(self) -> float:
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self._learning_rate = check_learning_rate(value)


class NaturalGradientUpdate(_LearningRateUpdate):
    """Plain natural-gradient ascent, ``rho' = clip(rho + learning_rate * g, eps, 1 - eps)``.

    ``g`` is the centered-rank natural-gradient estimate. Diagnostics report the
    ``"variance"`` signal and noise energies, and ``step_size`` is the learning rate.

    :param learning_rate: Step size on ``g``, at least 0. The attribute may be changed
        between steps, for example from a schedule.
    :param eps: Clip margin of the probabilities.
    """

    def __init__(self, learning_rate: float = 1.0, eps: float = 1e-3) -> None:
        super().__init__(eps)
        self.learning_rate = learning_rate

    def _update(
        self, probabilities: np.ndarray, bits: np.ndarray, weights: np.ndarray
    ) -> tuple[np.ndarray, dict[str, float]]:
        estimate = estimate_gradient(probabilities, bits, weights, "variance")
        new_probabilities, kl = self._clipped_step(probabilities, estimate.gradient, self.learning_rate)
        return new_probabilities, self._diagnostics(new_probabilities, estimate, self.learning_rate, kl)


class ECUpdate(_LearningRateUpdate):
    """Evolving Connectivity's update: Adam ascent on the natural-gradient estimate.

    From "Evolving Connectivity for Recurrent Spiking Neural Networks", arXiv:2305.17650
    (NeurIPS 2023). The class follows a description of EC's released code (Adam on ``g``,
    then the clip) and was not compared against that code. Per parameter, with bias
    correction::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g^2
        rho' = clip(rho + learning_rate * m_hat / (sqrt(v_hat) + adam_eps), eps, 1 - eps)

    The first step therefore moves every probability with a non-zero ``g`` by
    ``learning_rate``, whatever the signal. Diagnostics report the ``"variance"``
    energies, and ``step_size`` is the learning rate.

    :param learning_rate: Adam learning rate, at least 0; EC uses 0.15. The attribute may
        be changed between steps.
    :param beta1: Decay of the first moment, in ``[0, 1)``.
    :param beta2: Decay of the second moment, in ``[0, 1)``.
    :param adam_eps: Constant added to ``sqrt(v_hat)``, above 0.
    :param eps: Clip margin of the probabilities.
    """

    def __init__(
        self,
        learning_rate: float = 0.15,
        beta1: float = 0.9,
        beta2: float = 0.999,
        adam_eps: float = 1e-8,
        eps: float = 1e-3,
    ) -> None:
        super().__init__(eps)
        for name, value in (("beta1", beta1), ("beta2", beta2)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be a number in [0, 1), got {value!r}.")
        if isinstance(adam_eps, bool) or not isinstance(adam_eps, (int, float)) or not (
            math.isfinite(adam_eps) and adam_eps > 0
        ):
            raise ValueError(f"adam_eps must be a finite number above 0, got {adam_eps!r}.")
        self.learning_rate = learning_rate
        self.beta1 = float(beta1)
        self.beta2 = float(beta2)
        self.adam_eps = float(adam_eps)
        self._first_moment = np.zeros(0, dtype=np.float64)
        self._second_moment = np.zeros(0, dtype=np.float64)
        self._step_count = 0

    def _update(
        self, probabilities: np.ndarray, bits: np.ndarray, weights: np.ndarray
    ) -> tuple[np.ndarray, dict[str, float]]:
        d = probabilities.shape[0]
        if self._step_count == 0:
            self._first_moment = np.zeros(d, dtype=np.float64)
            self._second_moment = np.zeros(d, dtype=np.float64)
        elif self._first_moment.shape[0] != d:
            raise ValueError(
                f"ECUpdate has Adam moments for {self._first_moment.shape[0]} parameters, but the "
                f"probabilities have {d}. Create a new ECUpdate for a different parameter vector."
            )

        estimate = estimate_gradient(probabilities, bits, weights, "variance")
        gradient = estimate.gradient
        self._step_count += 1
        self._first_moment = self.beta1 * self._first_moment + (1.0 - self.beta1) * gradient
        self._second_moment = self.beta2 * self._second_moment + (1.0 - self.beta2) * gradient * gradient
        first_unbiased = self._first_moment / (1.0 - self.beta1**self._step_count)
        second_unbiased = self._second_moment / (1.0 - self.beta2**self._step_count)
        direction = first_unbiased / (np.sqrt(second_unbiased) + self.adam_eps)

        new_probabilities, kl = self._clipped_step(probabilities, direction, self.learning_rate)
        return new_probabilities, self._diagnostics(new_probabilities, estimate, self.learning_rate, kl)

    def get_state(self) -> dict[str, np.ndarray]:
        """Return copies of the Adam moments (``float64 (d,)``, empty before the first step) and the step count (``int64``, 0-d)."""
        return {
            "first_moment": self._first_moment.copy(),
            "second_moment": self._second_moment.copy(),
            "step_count": np.array(self._step_count, dtype=np.int64),
        }

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore the Adam moments and step count returned by ``get_state``."""
        if set(state) != set(_ADAM_STATE_KEYS):
            raise ValueError(f"ECUpdate state must have the keys {_ADAM_STATE_KEYS}, got {sorted(state)}.")

        first = np.asarray(state["first_moment"])
        second = np.asarray(state["second_moment"])
        count = np.asarray(state["step_count"])
        for name, moment in (("first_moment", first), ("second_moment", second)):
            if moment.dtype != np.float64 or moment.ndim != 1:
                raise ValueError(
                    f"{name} must be a float64 array of shape (d,), got dtype {moment.dtype} and shape {moment.shape}."
                )
            if not np.all(np.isfinite(moment)):
                raise ValueError(f"{name} must be finite.")
        if first.shape != second.shape:
            raise ValueError(
                f"first_moment and second_moment must have the same shape, got {first.shape} and {second.shape}."
            )
        if np.any(second < 0):
            raise ValueError("second_moment must be non-negative.")

        if not np.issubdtype(count.dtype, np.integer) or count.size != 1 or int(count.reshape(-1)[0]) < 0:
            raise ValueError(
                f"step_count must be a non-negative integer array of one element, got {count!r}."
            )
        step_count = int(count.reshape(-1)[0])
        if (step_count == 0) != (first.shape[0] == 0):
            raise ValueError(
                f"step_count {step_count} does not match moments of length {first.shape[0]}. "
                "The moments are empty exactly when no step has been taken."
            )

        self._first_moment = first.copy()
        self._second_moment = second.copy()
        self._step_count = step_count
