"""Packing of boolean arrays into ``uint64`` words.

Bit order: bit ``j`` (value ``1 << j``) of word ``w`` stores element ``64 * w + j`` of the
packed axis. Bits past the end of the axis (padding) are zero after packing, and every
kernel of this package ignores them.
"""

from __future__ import annotations

import sys

import numpy as np

WORD_BITS = 64


def n_words(n_bits: int) -> int:
    """Number of 64-bit words that hold ``n_bits`` bits."""
    if n_bits < 0:
        raise ValueError(f"n_bits must be non-negative, got {n_bits}.")
    return (int(n_bits) + WORD_BITS - 1) // WORD_BITS


def pack_bits(bits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Pack a boolean array along ``axis`` into ``uint64`` words.

    :param bits: Array of booleans (or 0/1 integers) of any shape.
    :param axis: Axis to pack. Its length ``n`` becomes ``n_words(n)``.
    :return: ``uint64`` array, C-contiguous, with the packed axis in place of ``axis``.
    """
    bits = np.asarray(bits)
    if bits.dtype != np.bool_:
        if not np.issubdtype(bits.dtype, np.integer) or (bits.size and (bits.min() < 0 or bits.max() > 1)):
            raise ValueError(f"pack_bits expects booleans or 0/1 integers, got dtype {bits.dtype}.")
        bits = bits.astype(np.bool_)
    moved = np.moveaxis(bits, axis, -1)
    n_bits = moved.shape[-1]
    padded_bytes = n_words(n_bits) * 8
    packed_bytes = np.packbits(moved, axis=-1, bitorder="little")
    if packed_bytes.shape[-1] != padded_bytes:
        pad = [(0, 0)] * (packed_bytes.ndim - 1) + [(0, padded_bytes - packed_bytes.shape[-1])]
        packed_bytes = np.pad(packed_bytes, pad)
    words = np.ascontiguousarray(packed_bytes).view("<u8").astype(np.uint64, copy=False)
    return np.ascontiguousarray(np.moveaxis(words, -1, axis))


def unpack_bits(words: np.ndarray, n_bits: int, axis: int = -1) -> np.ndarray:
    """Unpack ``uint64`` words along ``axis`` into ``n_bits`` booleans (inverse of ``pack_bits``)."""
    words = np.asarray(words)
    if words.dtype != np.uint64:
        raise ValueError(f"unpack_bits expects uint64 words, got dtype {words.dtype}.")
    moved = np.ascontiguousarray(np.moveaxis(words, axis, -1))
    if moved.shape[-1] != n_words(n_bits):
        raise ValueError(
            f"{moved.shape[-1]} words along axis {axis} cannot hold exactly {n_bits} bits "
            f"(expected {n_words(n_bits)} words)."
        )
    as_bytes = moved.astype("<u8", copy=False).view(np.uint8)
    bits = np.unpackbits(as_bytes, axis=-1, count=n_bits, bitorder="little").astype(np.bool_)
    return np.moveaxis(bits, -1, axis)


if sys.byteorder != "little":  # pragma: no cover - every supported platform is little-endian
    raise ImportError("sb3_satr's bit packing assumes a little-endian machine.")
