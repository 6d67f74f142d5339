"""Float reference of the spiking network: the same equations as the bitset kernel, in numpy.

It exists to test the kernel against and to benchmark it. Each equation is one numpy
expression over the whole batch, with float32 values and masks turned into float32 0/1
matrices. The input current and the output sum presynaptic terms one at a time in
ascending order, as the kernel does, so that float32 rounding is the same. Recurrent
spike counts come from a float32 matrix product of 0/1 values, which is exact in any
summation order while ``n_neurons < 2**24``. Spike trains and outputs therefore match the
kernel bit for bit.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Union

import numpy as np

from sb3_satr.network.masks import NetworkLayout


class ReferenceState(NamedTuple):
    """``v``, ``i_syn``, ``rate`` ``(B, N)`` float32 and the last spikes ``(B, N)`` bool."""

    v: np.ndarray
    i_syn: np.ndarray
    rate: np.ndarray
    spikes: np.ndarray


class ReferenceWeights(NamedTuple):
    """Connection masks of ``B`` networks as float32 0/1 matrices, indexed (pre, post).

    ``input`` is ``(B, 2 * obs_dim, N)``, ``excitatory`` ``(B, n_excitatory, N)`` and
    ``inhibitory`` ``(B, n_inhibitory, N)`` (the two row blocks of ``K_h``), ``output``
    ``(B, N, n_outputs)``.
    """

    input: np.ndarray
    excitatory: np.ndarray
    inhibitory: np.ndarray
    output: np.ndarray


class ReferenceRSNN:
    """Plain numpy implementation with float32 and boolean matrices.

    :param layout: Network constants and mask shapes.
    """

    def __init__(self, layout: NetworkLayout) -> None:
        self.layout = layout
        self.spec = layout.spec
        spec = self.spec
        constants = spec.kernel_constants(layout.obs_dim)
        (
            self.r_in, self.r_h, self.r_out, self.decay_syn, self.decay_mem, self.leak_mem,
            self.decay_out, self.rate_scale, self.v_threshold, self.v_reset,
        ) = (np.float32(c) for c in constants)
        self.sign = np.where(np.arange(spec.n_neurons) < spec.n_excitatory, 1.0, -1.0).astype(np.float32)

    def initial_state(self, batch_size: int) -> ReferenceState:
        """Zero state for ``batch_size`` rows."""
        n = self.spec.n_neurons
        return ReferenceState(
            v=np.zeros((batch_size, n), dtype=np.float32),
            i_syn=np.zeros((batch_size, n), dtype=np.float32),
            rate=np.zeros((batch_size, n), dtype=np.float32),
            spikes=np.zeros((batch_size, n), dtype=np.bool_),
        )

    def weights(self, connections: np.ndarray) -> ReferenceWeights:
        """Convert boolean connections ``(B, n_params)`` into float32 matrices for ``step``."""
        masks = self.layout.split(np.asarray(connections, dtype=np.bool_))
        n_exc = self.spec.n_excitatory
        return ReferenceWeights(
            input=masks["input"].astype(np.float32),
            excitatory=masks["recurrent"][:, :n_exc, :].astype(np.float32),
            inhibitory=masks["recurrent"][:, n_exc:, :].astype(np.float32),
            output=masks["output"].astype(np.float32),
        )

    def step(
        self,
        connections: Union[np.ndarray, ReferenceWeights],
        observations: np.ndarray,
        state: ReferenceState,
        reset: Optional[np.ndarray] = None,
    ) -> np.ndarray:
        """Advance ``B`` networks by one environment step, updating ``state`` in place.

        :param connections: ``(B, n_params)`` bool connections in the flat layout order, or
            the ``ReferenceWeights`` that ``weights`` made from them (faster when stepping
            the same networks many times).
        :param observations: ``(B, obs_dim)`` float32.
        :param state: Updated in place.
        :param reset: ``(B,)`` bool rows to zero before the step.
        :return: ``(B, n_outputs)`` float32 outputs.
        """
        weights = connections if isinstance(connections, ReferenceWeights) else self.weights(connections)
        observations = np.asarray(observations, dtype=np.float32)
        expected = (weights.input.shape[0], self.layout.obs_dim)
        if observations.shape != expected:
            raise ValueError(f"observations must have shape {expected}, got {observations.shape}.")
        if reset is not None:
            rows = np.asarray(reset, dtype=np.bool_)
            for array in state:
                array[rows] = 0

        # Input current R_in * ([x, -x] @ K_in), held for all substeps.
        x2 = np.concatenate([observations, -observations], axis=1)
        acc = np.zeros(state.v.shape, dtype=np.float32)
        for j in range(x2.shape[1]):
            acc += x2[:, j, None] * weights.input[:, j, :]
        i_in = self.r_in * acc

        n_exc = self.spec.n_excitatory
        v, i_syn, rate, spikes = state
        for _ in range(self.spec.n_substeps):
            excitatory = spikes[:, None, :n_exc].astype(np.float32)
            inhibitory = spikes[:, None, n_exc:].astype(np.float32)
            counts = (excitatory @ weights.excitatory)[:, 0, :] - (inhibitory @ weights.inhibitory)[:, 0, :]
            i_syn[:] = self.decay_syn * i_syn + self.r_h * counts
            v[:] = self.decay_mem * v + self.leak_mem * (i_syn + i_in)
            fired = v > self.v_threshold
            v[fired] = self.v_reset
            spikes[:] = fired
            rate[:] = self.decay_out * rate + self.rate_scale * (self.sign * fired.astype(np.float32))

        # Output R_out * (rate @ K_out), summing neurons in ascending order.
        out = np.zeros((observations.shape[0], self.layout.n_outputs), dtype=np.float32)
        for k in range(self.spec.n_neurons):
            out += rate[:, k, None] * weights.output[:, k, :]
        return self.r_out * out
