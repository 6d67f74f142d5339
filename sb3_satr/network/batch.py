"""Python face of the bitset kernel: state allocation, input checks and the batched step."""

from __future__ import annotations

from typing import NamedTuple, Optional

import numba
import numpy as np

from sb3_satr.bits import n_words
from sb3_satr.network import kernels
from sb3_satr.network.masks import NetworkLayout, PackedMasks

# Below this batch size the serial kernel is used. One 256-neuron network step takes about
# 7 us, so a batch must be large before two threads save more than the thread start-up costs,
# and SATR steps its environments in the same process, which keeps the second core busy.
# NOTE: the threshold was not measured on an idle machine. On a 2-core machine busy with
# other processes, every parallel call waited milliseconds for a descheduled thread and lost
# to the serial kernel at all batch sizes up to 8 (benchmarks/kernel.py --parallel-threshold).
PARALLEL_MIN_BATCH = 32


def uses_parallel_kernel(batch_size: int) -> bool:
    """Return True when ``BitsetRSNN.step`` runs a batch of this size on numba's thread pool."""
    return batch_size >= PARALLEL_MIN_BATCH and numba.get_num_threads() > 1


class NetworkState(NamedTuple):
    """Per-row state of a batch of ``B`` networks.

    ``v``, ``i_syn`` and ``rate`` are ``(B, N)`` float32; ``spikes`` is
    ``(B, n_words(n_excitatory) + n_words(n_inhibitory))`` uint64, the excitatory words
    first. A zero state is the state at the start of an episode.
    """

    v: np.ndarray
    i_syn: np.ndarray
    rate: np.ndarray
    spikes: np.ndarray

    @property
    def batch_size(self) -> int:
        return int(self.v.shape[0])

    def copy(self) -> "NetworkState":
        return NetworkState(*(array.copy() for array in self))

    def fired(self, n_excitatory: int, n_inhibitory: int) -> np.ndarray:
        """Boolean spikes of the last substep, ``(B, N)``."""
        from sb3_satr.bits import unpack_bits

        n_exc_words = n_words(n_excitatory)
        excitatory = unpack_bits(self.spikes[:, :n_exc_words], n_excitatory, axis=1)
        inhibitory = unpack_bits(self.spikes[:, n_exc_words:], n_inhibitory, axis=1)
        return np.concatenate([excitatory, inhibitory], axis=1)


class BitsetRSNN:
    """Batched bitset implementation of the spiking network for one layout.

    :param layout: Network constants and mask shapes.
    """

    def __init__(self, layout: NetworkLayout) -> None:
        self.layout = layout
        self.spec = layout.spec
        self.constants = self.spec.kernel_constants(layout.obs_dim)
        self.n_spike_words = n_words(self.spec.n_excitatory) + n_words(self.spec.n_inhibitory)
        self._n_excitatory = self.spec.n_excitatory
        # Shapes without the leading network or row axis, computed once because step()
        # checks them on every call.
        n = self.spec.n_neurons
        self._mask_shapes = PackedMasks(
            input=(layout.n_input_words, n),
            excitatory=(n_words(self.spec.n_excitatory), n),
            inhibitory=(n_words(self.spec.n_inhibitory), n),
            output=(n_words(n), layout.n_outputs),
        )
        self._state_shapes = NetworkState(v=(n,), i_syn=(n,), rate=(n,), spikes=(self.n_spike_words,))
        self._state_dtypes = NetworkState(v=np.float32, i_syn=np.float32, rate=np.float32, spikes=np.uint64)

    def initial_state(self, batch_size: int) -> NetworkState:
        """Zero state for ``batch_size`` rows."""
        n = self.spec.n_neurons
        return NetworkState(
            v=np.zeros((batch_size, n), dtype=np.float32),
            i_syn=np.zeros((batch_size, n), dtype=np.float32),
            rate=np.zeros((batch_size, n), dtype=np.float32),
            spikes=np.zeros((batch_size, self.n_spike_words), dtype=np.uint64),
        )

    def step(
        self,
        masks: PackedMasks,
        observations: np.ndarray,
        state: NetworkState,
        reset: Optional[np.ndarray] = None,
        network_index: Optional[np.ndarray] = None,
        out: Optional[np.ndarray] = None,
    ) -> np.ndarray:
        """Advance ``B`` networks by one environment step, updating ``state`` in place.

        :param masks: Packed masks of ``M`` networks.
        :param observations: ``(B, obs_dim)`` float32, already normalised.
        :param state: State of the ``B`` rows, updated in place.
        :param reset: ``(B,)`` bool. Flagged rows start from the zero state before this step.
        :param network_index: ``(B,)`` int64 row of ``masks`` that each batch row runs.
            Defaults to ``arange(B)``, which needs ``M == B``.
        :param out: Optional ``(B, n_outputs)`` float32 array for the outputs.
        :return: ``(B, n_outputs)`` float32 network outputs (``out`` if given).
        """
        layout = self.layout
        observations = np.asarray(observations)
        if observations.dtype != np.float32 or observations.ndim != 2 or observations.shape[1] != layout.obs_dim:
            raise ValueError(
                f"observations must be float32 of shape (B, {layout.obs_dim}), got {observations.dtype} "
                f"{observations.shape}."
            )
        observations = np.ascontiguousarray(observations)
        batch = observations.shape[0]
        self._check_state(state, batch)
        self._check_masks(masks)

        if network_index is None:
            if masks.n_networks != batch:
                raise ValueError(
                    f"Without network_index the masks must hold one network per row: {masks.n_networks} "
                    f"networks for {batch} rows."
                )
            network_index = np.arange(batch, dtype=np.int64)
        else:
            network_index = np.ascontiguousarray(network_index, dtype=np.int64)
            if network_index.shape != (batch,):
                raise ValueError(f"network_index must have shape ({batch},), got {network_index.shape}.")
            if batch and (network_index.min() < 0 or network_index.max() >= masks.n_networks):
                raise ValueError(f"network_index must lie in [0, {masks.n_networks}), got {network_index}.")

        if reset is None:
            reset = np.zeros(batch, dtype=np.bool_)
        else:
            reset = np.ascontiguousarray(reset, dtype=np.bool_)
            if reset.shape != (batch,):
                raise ValueError(f"reset must have shape ({batch},), got {reset.shape}.")

        if out is None:
            out = np.empty((batch, layout.n_outputs), dtype=np.float32)
        elif out.dtype != np.float32 or out.shape != (batch, layout.n_outputs):
            raise ValueError(f"out must be float32 of shape ({batch}, {layout.n_outputs}), got {out.dtype} {out.shape}.")

        self.advance_unchecked(masks, observations, state, reset, network_index, out)
        return out

    def advance_unchecked(
        self,
        masks: PackedMasks,
        observations: np.ndarray,
        state: NetworkState,
        reset: np.ndarray,
        network_index: np.ndarray,
        out: np.ndarray,
    ) -> None:
        """Run the kernel of ``step`` without its checks, for callers that built every array.

        Every argument must already have the exact dtype, shape and C order that ``step``
        checks for (``BitsetRSNN.initial_state``, ``NetworkLayout.pack``, float32
        observations, bool ``reset``, int64 ``network_index`` within the masks, float32
        ``out``). A wrong array is not detected here and can crash the process.
        """
        advance = kernels._advance_parallel if uses_parallel_kernel(observations.shape[0]) else kernels._advance_serial
        advance(
            observations, masks.input, masks.excitatory, masks.inhibitory, masks.output, network_index,
            state.v, state.i_syn, state.rate, state.spikes, reset, self.constants,
            self.spec.n_substeps, self._n_excitatory, out,
        )

    def _check_state(self, state: NetworkState, batch: int) -> None:
        for name, array, dtype, row_shape in zip(NetworkState._fields, state, self._state_dtypes, self._state_shapes):
            shape = (batch, *row_shape)
            if array.dtype != dtype or array.shape != shape or not array.flags.c_contiguous:
                raise ValueError(
                    f"state.{name} must be a C-contiguous {np.dtype(dtype).name} array of shape {shape} for "
                    f"{batch} observations, got {array.dtype} {array.shape}. Build states with "
                    "BitsetRSNN.initial_state."
                )

    def _check_masks(self, masks: PackedMasks) -> None:
        m = masks.n_networks
        for name, array, network_shape in zip(PackedMasks._fields, masks, self._mask_shapes):
            shape = (m, *network_shape)
            if array.dtype != np.uint64 or array.shape != shape or not array.flags.c_contiguous:
                raise ValueError(
                    f"masks.{name} must be a C-contiguous uint64 array of shape {shape}, got {array.dtype} "
                    f"{array.shape}. Build masks with NetworkLayout.pack."
                )
