"""The search distribution: independent Bernoulli connections, their samples and divergences.

Each parameter ``j`` is a connection present with probability ``rho_j``. A population
member is the bit vector ``theta_i`` with ``theta_ij = (u_ij < rho_j)``, stored packed as in
``sb3_satr.bits``.
"""

from __future__ import annotations

import numbers

import numpy as np

from sb3_satr.bits import n_words
from sb3_satr.search import _kernels
from sb3_satr.search._checks import check_positive_int, check_probabilities

_SEED_LIMIT = 2**63


def sample_population(
    probabilities: np.ndarray,
    n: int,
    seed: int,
    members: np.ndarray | None = None,
) -> np.ndarray:
    """Sample population members straight into packed bits.

    Member ``i`` depends only on ``seed``, ``i`` and ``probabilities``, not on ``n``, on the
    other members requested or on the numba thread count. A worker can therefore rebuild
    any subset of a population from the seed. The uniform draws come from a counter-based
    hash (SplitMix64 keyed by seed and member, read at the parameter index) and have 53
    bits, so ``P(theta_ij = 1)`` equals ``rho_j`` up to ``2**-53``.

    Memory is the output only, ``8 * len(members) * n_words(d)`` bytes, plus ``8 * d`` bytes
    of thresholds. The population is never held as floats.

    :param probabilities: ``float64 (d,)`` connection probabilities in ``[0, 1]``.
    :param n: Population size. Member indices must lie in ``[0, n)``.
    :param seed: Integer in ``[0, 2**63)``.
    :param members: Integer indices of the members to sample, in output order. Repeats are
        allowed. ``None`` samples ``range(n)``.
    :return: ``uint64 (len(members), n_words(d))``, bit ``j`` of word ``w`` is connection
        ``64 * w + j``; padding bits are zero.
    """
    rho = check_probabilities(probabilities)
    n = check_positive_int(n, "n")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) < _SEED_LIMIT:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}.")

    if members is None:
        member_indices = np.arange(n, dtype=np.int64)
    else:
        member_array = np.asarray(members)
        if member_array.ndim != 1 or not (member_array.size == 0 or np.issubdtype(member_array.dtype, np.integer)):
            raise ValueError(
                f"members must be a 1-D array of integer member indices, got dtype {member_array.dtype} "
                f"and shape {member_array.shape}."
            )
        if member_array.size and (member_array.min() < 0 or member_array.max() >= n):
            raise ValueError(
                f"members must lie in [0, n) = [0, {n}), got values in "
                f"[{member_array.min()}, {member_array.max()}]."
            )
        member_indices = np.ascontiguousarray(member_array, dtype=np.int64)

    # For an integer k, k / 2**53 < rho exactly when k < ceil(rho * 2**53). The product
    # rho * 2**53 is exact because it only changes the exponent.
    thresholds = np.ceil(rho * 2.0**53).astype(np.uint64)
    out = np.empty((member_indices.shape[0], n_words(rho.shape[0])), dtype=np.uint64)
    if out.size >= _kernels.PARALLEL_MIN_WORDS:
        _kernels.sample_bits_parallel(thresholds, np.uint64(seed), member_indices, out)
    else:
        _kernels.sample_bits_serial(thresholds, np.uint64(seed), member_indices, out)
    return out


def mode_connections(probabilities: np.ndarray) -> np.ndarray:
    """Return the mode of the distribution, ``rho > 0.5``, as ``bool (d,)``.

    A probability of exactly 0.5 gives no connection.
    """
    return check_probabilities(probabilities) > 0.5


def bernoulli_kl(q: np.ndarray, p: np.ndarray) -> float:
    """Compute the exact ``KL(q || p)`` in nats between two vectors of independent Bernoullis.

    ``KL = sum_j q_j log(q_j / p_j) + (1 - q_j) log((1 - q_j) / (1 - p_j))``, with
    ``0 log 0 = 0``. The result is ``inf`` where ``p_j`` is 0 or 1 and ``q_j`` differs.

    :param q: ``float64 (d,)`` probabilities in ``[0, 1]``.
    :param p: ``float64 (d,)`` probabilities in ``[0, 1]``.
    """
    q_array = check_probabilities(q, "q")
    p_array = check_probabilities(p, "p")
    if q_array.shape != p_array.shape:
        raise ValueError(f"q and p must have the same shape, got {q_array.shape} and {p_array.shape}.")
    return kl_sum(q_array, p_array)


def kl_sum(q: np.ndarray, p: np.ndarray) -> float:
    """Compute ``KL(q || p)`` of ``bernoulli_kl`` for ``float64 (d,)`` arrays that are already valid.

    The two terms of each parameter cancel to first order, so the sum can round to a
    value just below 0 when ``q`` and ``p`` nearly agree. It is then returned as 0.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        present = np.where(q > 0.0, q * np.log(q / p), 0.0)
        absent = np.where(q < 1.0, (1.0 - q) * np.log((1.0 - q) / (1.0 - p)), 0.0)
    return max(float(np.sum(present + absent)), 0.0)


def mean_entropy(probabilities: np.ndarray) -> float:
    """Compute the mean entropy per connection, in nats (``log 2`` at 0.5, 0 at 0 or 1)."""
    rho = check_probabilities(probabilities)
    inside = rho[(rho > 0.0) & (rho < 1.0)]
    terms = -(inside * np.log(inside) + (1.0 - inside) * np.log1p(-inside))
    return float(np.sum(terms) / rho.shape[0])
