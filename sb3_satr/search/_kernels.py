"""numba kernels of the Bernoulli search: sampling into packed bits, weighted bit sums and
the Fisher inner product.

Dtype discipline: packed samples, seeds, hashes and sampling thresholds are ``uint64``;
member indices are ``int64``; probabilities, weights and sums are ``float64``. Bits
follow ``sb3_satr.bits``: bit ``j`` (value ``1 << j``) of word ``w`` is parameter
``64 * w + j``. No kernel reads padding bits as parameters.

Limits: any population size and parameter count that fit in memory. Member indices are
below ``2**63``, and the per-parameter counter of the sampling hash is a ``uint64``.

Each kernel comes in a serial and a parallel version with identical results. The parallel
version splits the work so that each output element is written by one thread and summed
in a fixed order, so results do not depend on the number of threads either.
"""

from __future__ import annotations

import numba
import numpy as np

from sb3_satr._jit import njit_kernel

_ONE = np.uint64(1)
_SHIFT_30 = np.uint64(30)
_SHIFT_27 = np.uint64(27)
_SHIFT_31 = np.uint64(31)
_SHIFT_11 = np.uint64(11)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
# Weyl increment of SplitMix64: the odd integer nearest to 2**64 / golden ratio.
_GAMMA = np.uint64(0x9E3779B97F4A7C15)

# Words per block of the weighted bit sums: 16 words are 1,024 parameters, so the float64
# accumulators of two weight rows take 16 KiB and stay in the L1 cache.
_BLOCK_WORDS = 16

# Below this many packed words of input (about 1 to 2 ms of work on one core) the wrappers
# call the serial kernels. Waking the thread pool costs more than it saves there, and
# much more when another process keeps a core busy.
PARALLEL_MIN_WORDS = 1 << 16


@njit_kernel(inline="always")
def mix64(z):  # pragma: no cover - compiled
    """Scramble a ``uint64`` with the SplitMix64 output function (a bijection on 64 bits).

    SplitMix64 is from G. L. Steele, D. Lea and C. H. Flood, "Fast splittable pseudorandom
    number generators", OOPSLA 2014. The two multipliers are D. Stafford's "Mix13" variant.
    The multiplications wrap modulo ``2**64`` on purpose. Under ``NUMBA_DISABLE_JIT=1``
    numpy still returns the same bits but warns about the overflow.
    """
    z = (z ^ (z >> _SHIFT_30)) * _MIX_1
    z = (z ^ (z >> _SHIFT_27)) * _MIX_2
    return z ^ (z >> _SHIFT_31)


@njit_kernel(inline="always")
def member_key(seed, member):  # pragma: no cover - compiled
    """Return the ``uint64`` stream key of one population member.

    Both inputs go through ``mix64`` before they are combined, so neighbouring seeds and
    neighbouring member indices give unrelated keys.
    """
    return mix64(mix64(seed + _GAMMA) ^ mix64(np.uint64(member) + _GAMMA + _GAMMA))


@njit_kernel(boundscheck=False)
def _sample_member(thresholds, key, out_row):  # pragma: no cover - compiled
    """Write the packed bits of the member with stream ``key`` into ``out_row``."""
    d = thresholds.shape[0]
    for w in range(out_row.shape[0]):
        base = 64 * w
        width = min(64, d - base)
        word = np.uint64(0)
        for b in range(width):
            j = base + b
            draw = mix64(key + np.uint64(j + 1) * _GAMMA) >> _SHIFT_11
            if draw < thresholds[j]:
                word |= _ONE << np.uint64(b)
        out_row[w] = word


@njit_kernel(boundscheck=False)
def sample_bits_serial(thresholds, seed, members, out):  # pragma: no cover - compiled
    """Sample ``theta_ij = (u_ij < rho_j)`` for the listed members straight into packed words.

    ``u_ij`` is the top 53 bits of the SplitMix64 stream keyed by ``member_key(seed, i)``,
    read at position ``j + 1``, as a fraction of ``2**53``. The bit therefore depends only
    on ``seed``, the member index ``i``, ``j`` and ``rho_j``, whatever the thread count and
    whichever other members are sampled.

    :param thresholds: ``uint64 (d,)``, ``ceil(rho_j * 2**53)``. The bit is set when the
        53-bit integer is below it, which is ``u < rho`` exactly.
    :param seed: ``uint64`` seed.
    :param members: ``int64 (m,)`` non-negative member indices.
    :param out: ``uint64 (m, n_words(d))``, overwritten. Padding bits are written as zero.
    """
    for row in range(members.shape[0]):
        _sample_member(thresholds, member_key(seed, members[row]), out[row])


@njit_kernel(boundscheck=False, parallel=True)
def sample_bits_parallel(thresholds, seed, members, out):  # pragma: no cover - compiled
    """``sample_bits_serial`` with one member per thread at a time; the bits are identical."""
    for row in numba.prange(members.shape[0]):
        _sample_member(thresholds, member_key(seed, members[row]), out[row])


@njit_kernel(boundscheck=False)
def _accumulate_block(bits, weights, first, width, shifts, sums):  # pragma: no cover - compiled
    """Write ``sum_i weights[k, i] * theta_ij`` for words ``first .. first + width - 1`` into ``sums``."""
    acc = np.zeros((weights.shape[0], 64 * width), dtype=np.float64)
    for i in range(bits.shape[0]):
        for k in range(weights.shape[0]):
            weight = weights[k, i]
            if weight == 0.0:
                continue
            # Word offsets counted from 0 and shift amounts read from an array: written
            # this way LLVM vectorises the loop over the 64 bits, about 6 times faster
            # than with ``range(first, last)`` or the loop counter as shift (numba 0.68,
            # AVX-512).
            for c in range(width):
                word = bits[i, first + c]
                base = 64 * c
                for b in range(64):
                    acc[k, base + b] += weight * np.float64(np.int64((word >> shifts[b]) & _ONE))
    for k in range(weights.shape[0]):
        for c in range(64 * width):
            sums[k, 64 * first + c] = acc[k, c]


@njit_kernel(boundscheck=False)
def weighted_bit_sums_serial(bits, weights, sums):  # pragma: no cover - compiled
    """Accumulate ``sums[k, j] = sum_i weights[k, i] * theta_ij`` from packed samples.

    Words are processed in blocks of ``_BLOCK_WORDS``, and every block adds members in
    index order, so each sum has the same rounding in the serial and parallel kernels.

    :param bits: ``uint64 (n, n_words)`` packed samples.
    :param weights: ``float64 (K, n)``, one row per sum.
    :param sums: ``float64 (K, 64 * n_words)``, overwritten. Columns past ``d`` receive
        the weighted padding bits and are for the caller to drop.
    """
    n_words = bits.shape[1]
    shifts = np.arange(64).astype(np.uint64)
    for block in range((n_words + _BLOCK_WORDS - 1) // _BLOCK_WORDS):
        first = block * _BLOCK_WORDS
        _accumulate_block(bits, weights, first, min(n_words - first, _BLOCK_WORDS), shifts, sums)


@njit_kernel(boundscheck=False, parallel=True)
def weighted_bit_sums_parallel(bits, weights, sums):  # pragma: no cover - compiled
    """``weighted_bit_sums_serial`` with one block per thread at a time; the sums are identical."""
    n_words = bits.shape[1]
    shifts = np.arange(64).astype(np.uint64)
    for block in numba.prange((n_words + _BLOCK_WORDS - 1) // _BLOCK_WORDS):
        first = block * _BLOCK_WORDS
        _accumulate_block(bits, weights, first, min(n_words - first, _BLOCK_WORDS), shifts, sums)


@njit_kernel(boundscheck=False)
def fisher_inner(a, b, probabilities):  # pragma: no cover - compiled
    """Return ``<a, b>_F = sum_j a_j b_j / (rho_j (1 - rho_j))`` for ``float64 (d,)`` arrays.

    A plain loop rather than ``np.dot``: BLAS threads gain nothing at this size and
    stall when the cores are busy.
    """
    total = 0.0
    for j in range(a.shape[0]):
        rho = probabilities[j]
        total += a[j] * b[j] / (rho * (1.0 - rho))
    return total
