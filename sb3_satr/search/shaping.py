"""Fitness shaping by centered ranks, and the natural-gradient estimate from packed bits."""

from __future__ import annotations

import numpy as np

from sb3_satr.search import _kernels
from sb3_satr.search._checks import check_fitness, check_probabilities, check_weights, packed_samples


def centered_ranks(fitness: np.ndarray) -> np.ndarray:
    """Shape fitness into centered ranks ``w_i = rank_i / (n - 1) - 0.5`` in ``[-0.5, 0.5]``.

    ``rank_i`` counts from 0 for the lowest fitness. Members with equal fitness share the
    average of the ranks they span, so the result does not depend on member order, equal
    members get equal weights and the weights still sum to zero (up to rounding). When all
    fitness values are equal every weight is exactly 0. A population of one member gets
    the weight 0.

    :param fitness: Finite real values, shape ``(n,)``.
    :return: ``float64 (n,)``.
    """
    values = np.asarray(fitness)
    if values.ndim != 1 or values.shape[0] == 0:
        raise ValueError(f"fitness must be a non-empty 1-D array, got shape {values.shape}.")
    values = check_fitness(values, values.shape[0])
    n = values.shape[0]
    if n == 1:
        return np.zeros(1, dtype=np.float64)

    order = np.argsort(values, kind="stable")
    sorted_values = values[order]

    # Runs of equal values: ``starts`` is the first sorted position of each run. A run
    # covering positions a .. b - 1 gets the average rank (a + b - 1) / 2.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    stops = np.r_[starts[1:], n]
    run_ranks = (starts + stops - 1) / 2.0
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.repeat(run_ranks, stops - starts)

    return ranks / (n - 1) - 0.5


def natural_gradient(probabilities: np.ndarray, samples: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Estimate the natural gradient ``g = (1/n) sum_i w_i (theta_i - rho)`` from packed bits.

    The Fisher matrix of independent Bernoullis is ``diag(1 / (rho (1 - rho)))``, so ``g``
    estimates the natural gradient of the expected shaped fitness in the ``rho``
    coordinates. The sum over members runs on the packed words, and the ``rho`` term uses
    ``sum_i w_i``, which is 0 for centered ranks up to rounding.

    :param probabilities: ``float64 (d,)``.
    :param samples: ``bool (n, d)`` or packed ``uint64 (n, n_words(d))``.
    :param weights: Shaped fitness ``(n,)``, for example from ``centered_ranks``.
    :return: ``float64 (d,)``.
    """
    rho = check_probabilities(probabilities)
    bits = packed_samples(samples, rho.shape[0])
    w = check_weights(weights, bits.shape[0])
    weighted_sums = weighted_bit_sums(bits, w[np.newaxis, :], rho.shape[0])[0]
    return (weighted_sums - w.sum() * rho) / w.shape[0]


def weighted_bit_sums(bits: np.ndarray, weights: np.ndarray, d: int) -> np.ndarray:
    """Return ``sums[k, j] = sum_i weights[k, i] * theta_ij`` as ``float64 (K, d)``.

    :param bits: Packed ``uint64 (n, n_words(d))`` samples, C-contiguous.
    :param weights: ``float64 (K, n)``.
    """
    sums = np.empty((weights.shape[0], 64 * bits.shape[1]), dtype=np.float64)
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    if bits.size >= _kernels.PARALLEL_MIN_WORDS:
        _kernels.weighted_bit_sums_parallel(bits, weights, sums)
    else:
        _kernels.weighted_bit_sums_serial(bits, weights, sums)
    return sums[:, :d]
