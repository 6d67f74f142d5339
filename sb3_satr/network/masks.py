"""Layout of the connection parameters and their packed form for the bitset kernel."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from sb3_satr.bits import n_words, pack_bits, unpack_bits
from sb3_satr.network.spec import NetworkSpec

MASK_NAMES = ("input", "recurrent", "output")


class PackedMasks(NamedTuple):
    """Connection masks of ``M`` networks in the packed form the bitset kernel reads.

    All arrays are C-contiguous ``uint64``. Bits follow ``sb3_satr.bits``: bit ``j`` of
    word ``w`` is presynaptic index ``64 * w + j``, and padding bits are zero.

    - ``input``: ``(M, n_words(2 * obs_dim), N)``, rows of ``K_in`` packed per postsynaptic
      neuron; presynaptic index ``j < obs_dim`` reads ``x[j]`` and ``obs_dim + j`` reads
      ``-x[j]``.
    - ``excitatory``: ``(M, n_words(n_excitatory), N)``, rows ``0 .. n_excitatory - 1`` of
      ``K_h``.
    - ``inhibitory``: ``(M, n_words(n_inhibitory), N)``, the remaining rows of ``K_h``.
    - ``output``: ``(M, n_words(N), n_outputs)``, ``K_out`` packed over presynaptic neurons.
    """

    input: np.ndarray
    excitatory: np.ndarray
    inhibitory: np.ndarray
    output: np.ndarray

    @property
    def n_networks(self) -> int:
        return int(self.input.shape[0])

    def take(self, rows: np.ndarray) -> "PackedMasks":
        """Copy the masks of the networks at ``rows``."""
        return PackedMasks(*(np.ascontiguousarray(array[rows]) for array in self))


class NetworkLayout:
    """Shapes of the three connection masks and their order in the flat parameter vector.

    The flat vector, of length ``n_params = 2 * obs_dim * N + N * N + N * n_outputs``, contains
    ``K_in`` ``(2 * obs_dim, N)``, then ``K_h`` ``(N, N)`` indexed (pre, post), then ``K_out``
    ``(N, n_outputs)``, each in row-major order.

    :param spec: Network constants.
    :param obs_dim: Size of the raw observation vector.
    :param n_outputs: Number of network outputs (action dimensions, or actions for a
        discrete space).
    """

    def __init__(self, spec: NetworkSpec, obs_dim: int, n_outputs: int) -> None:
        if isinstance(obs_dim, bool) or int(obs_dim) != obs_dim or obs_dim < 1:
            raise ValueError(f"obs_dim must be a positive integer, got {obs_dim!r}.")
        if isinstance(n_outputs, bool) or int(n_outputs) != n_outputs or n_outputs < 1:
            raise ValueError(f"n_outputs must be a positive integer, got {n_outputs!r}.")
        self.spec = spec
        self.obs_dim = int(obs_dim)
        self.n_outputs = int(n_outputs)

        n = spec.n_neurons
        self.shapes = {
            "input": (2 * self.obs_dim, n),
            "recurrent": (n, n),
            "output": (n, self.n_outputs),
        }
        offsets = np.cumsum([0] + [int(np.prod(shape)) for shape in self.shapes.values()])
        self.slices = {name: slice(int(offsets[i]), int(offsets[i + 1])) for i, name in enumerate(MASK_NAMES)}
        self.n_params = int(offsets[-1])

    @property
    def n_input_words(self) -> int:
        return n_words(2 * self.obs_dim)

    def split(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Views of a ``(..., n_params)`` array as the three masks, shaped ``(..., *shape)``."""
        flat = np.asarray(flat)
        if flat.shape[-1] != self.n_params:
            raise ValueError(f"Expected a last axis of {self.n_params} connection parameters, got shape {flat.shape}.")
        lead = flat.shape[:-1]
        return {name: flat[..., self.slices[name]].reshape(lead + self.shapes[name]) for name in MASK_NAMES}

    def join(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        """Concatenate mask-shaped arrays into the flat order (inverse of ``split``)."""
        missing = set(MASK_NAMES) - set(parts)
        if missing:
            raise ValueError(f"Missing connection arrays {sorted(missing)}; expected keys {list(MASK_NAMES)}.")
        pieces = []
        lead = None
        for name in MASK_NAMES:
            array = np.asarray(parts[name])
            shape = self.shapes[name]
            if array.shape[-2:] != shape:
                raise ValueError(f"Connection array {name!r} must have shape {shape}, got {array.shape}.")
            if lead is None:
                lead = array.shape[:-2]
            pieces.append(array.reshape(lead + (-1,)))
        return np.concatenate(pieces, axis=-1)

    def pack(self, connections: np.ndarray) -> PackedMasks:
        """Pack boolean connections ``(M, n_params)`` (or one network, ``(n_params,)``)."""
        connections = np.asarray(connections, dtype=np.bool_)
        if connections.ndim == 1:
            connections = connections[None]
        parts = self.split(connections)
        n_exc = self.spec.n_excitatory
        recurrent = parts["recurrent"]
        return PackedMasks(
            input=pack_bits(parts["input"], axis=1),
            excitatory=pack_bits(recurrent[:, :n_exc, :], axis=1),
            inhibitory=pack_bits(recurrent[:, n_exc:, :], axis=1),
            output=pack_bits(parts["output"], axis=1),
        )

    def pack_flat_words(self, words: np.ndarray) -> PackedMasks:
        """Pack networks given as flat packed parameter bits ``(M, n_words(n_params))``."""
        return self.pack(unpack_bits(np.asarray(words), self.n_params, axis=-1))

    def unpack(self, masks: PackedMasks) -> np.ndarray:
        """Boolean connections ``(M, n_params)`` from packed masks (inverse of ``pack``)."""
        spec = self.spec
        recurrent = np.concatenate(
            [
                unpack_bits(masks.excitatory, spec.n_excitatory, axis=1),
                unpack_bits(masks.inhibitory, spec.n_inhibitory, axis=1),
            ],
            axis=1,
        )
        return self.join(
            {
                "input": unpack_bits(masks.input, 2 * self.obs_dim, axis=1),
                "recurrent": recurrent,
                "output": unpack_bits(masks.output, spec.n_neurons, axis=1),
            }
        )
