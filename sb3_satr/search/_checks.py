"""Validation of the arrays that the public functions of ``sb3_satr.search`` accept."""

from __future__ import annotations

import numbers

import numpy as np

from sb3_satr.bits import n_words, pack_bits


def check_probabilities(probabilities: np.ndarray, name: str = "probabilities") -> np.ndarray:
    """Return ``probabilities`` as a C-contiguous ``float64 (d,)`` array, or raise ``ValueError``.

    Only ``float64`` input is accepted, so that a ``float32`` vector is never rounded
    silently. Every entry must be finite and in ``[0, 1]``.
    """
    array = np.asarray(probabilities)
    if array.dtype != np.float64:
        raise ValueError(
            f"{name} must have dtype float64, got {array.dtype}. "
            f"Convert it with np.asarray({name}, dtype=np.float64)."
        )
    if array.ndim != 1 or array.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of shape (d,), got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        bad = int(np.flatnonzero(~np.isfinite(array))[0])
        raise ValueError(f"{name} must be finite, but entry {bad} is {array[bad]}.")
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got values in [{low}, {high}].")
    return np.ascontiguousarray(array)


def check_positive_int(value: object, name: str) -> int:
    """Return ``value`` as a Python ``int`` if it is an integer of at least 1, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def packed_samples(samples: np.ndarray, d: int) -> np.ndarray:
    """Return population samples as C-contiguous packed ``uint64 (n, n_words(d))`` words.

    :param samples: Either booleans of shape ``(n, d)`` or packed ``uint64`` words of shape
        ``(n, n_words(d))`` as made by ``sb3_satr.bits.pack_bits``. Padding bits of packed
        words are ignored.
    :param d: Number of parameters.
    """
    array = np.asarray(samples)
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(
            f"samples must be a 2-D array with one row per member, got shape {array.shape}."
        )
    if array.dtype == np.bool_:
        if array.shape[1] != d:
            raise ValueError(
                f"Boolean samples must have shape (n, {d}) to match {d} probabilities, "
                f"got {array.shape}."
            )
        return pack_bits(array, axis=1)
    if array.dtype == np.uint64:
        if array.shape[1] != n_words(d):
            raise ValueError(
                f"Packed samples must have shape (n, {n_words(d)}) to hold {d} parameters "
                f"in 64-bit words, got {array.shape}."
            )
        return np.ascontiguousarray(array)
    raise ValueError(
        f"samples must be booleans of shape (n, d) or packed uint64 words of shape "
        f"(n, n_words(d)), got dtype {array.dtype}. Convert 0/1 integers with samples.astype(bool)."
    )


def check_fitness(fitness: np.ndarray, n_members: int) -> np.ndarray:
    """Return ``fitness`` as ``float64 (n,)``, or raise ``ValueError`` for a wrong shape or non-finite value."""
    array = np.asarray(fitness)
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    ):
        raise ValueError(f"fitness must hold real numbers, got dtype {array.dtype}.")
    if array.shape != (n_members,):
        raise ValueError(
            f"fitness must have shape ({n_members},), one value per sampled member, got {array.shape}."
        )
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        bad = int(np.flatnonzero(~np.isfinite(array))[0])
        raise ValueError(
            f"fitness must be finite, but member {bad} has fitness {array[bad]}. "
            "Replace failed evaluations by a finite value, such as the lowest fitness seen."
        )
    return array


def check_weights(weights: np.ndarray, n_members: int) -> np.ndarray:
    """Return shaped fitness weights as finite ``float64 (n,)``, or raise ``ValueError``."""
    array = np.asarray(weights, dtype=np.float64)
    if array.shape != (n_members,):
        raise ValueError(f"weights must have shape ({n_members},), one per sampled member, got {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError("weights must be finite.")
    return array
