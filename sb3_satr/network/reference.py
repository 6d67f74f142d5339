"""Float reference of the spiking network: the same equations as the bitset kernel, in numpy.

It exists to test the kernel against and to benchmark it. Sums over presynaptic inputs
run one input at a time in ascending order, as in the kernel, so that float32 rounding is
the same and spike trains match exactly.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from sb3_satr.network.masks import NetworkLayout


class ReferenceState(NamedTuple):
    """``v``, ``i_syn``, ``rate`` ``(B, N)`` float32 and the last spikes ``(B, N)`` bool."""

    v: np.ndarray
    i_syn: np.ndarray
    rate: np.ndarray
    spikes: np.ndarray


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
        n = self.spec.n_neurons
        zeros = lambda: np.zeros((batch_size, n), dtype=np.float32)  # noqa: E731
        return ReferenceState(zeros(), zeros(), zeros(), np.zeros((batch_size, n), dtype=np.bool_))

    def step(
        self,
        connections: np.ndarray,
        observations: np.ndarray,
        state: ReferenceState,
        reset: Optional[np.ndarray] = None,
    ) -> np.ndarray:
        """Advance ``B`` networks by one environment step, updating ``state`` in place.

        :param connections: ``(B, n_params)`` bool connections in the flat layout order.
        :param observations: ``(B, obs_dim)`` float32.
        :param state: Updated in place.
        :param reset: ``(B,)`` bool rows to zero before the step.
        :return: ``(B, n_outputs)`` float32 outputs.
        """
        observations = np.asarray(observations, dtype=np.float32)
        masks = self.layout.split(np.asarray(connections, dtype=np.bool_))
        if reset is not None:
            rows = np.asarray(reset, dtype=np.bool_)
            for array in state:
                array[rows] = 0
        outputs = np.empty((observations.shape[0], self.layout.n_outputs), dtype=np.float32)
        for b in range(observations.shape[0]):
            outputs[b] = self._step_one(
                masks["input"][b], masks["recurrent"][b], masks["output"][b], observations[b],
                state.v[b], state.i_syn[b], state.rate[b], state.spikes[b],
            )
        return outputs

    def _step_one(self, k_in, k_rec, k_out, x, v, i_syn, rate, spikes) -> np.ndarray:
        x2 = np.concatenate([x, -x]).astype(np.float32)
        w_in = k_in.astype(np.float32)
        acc = np.zeros(self.spec.n_neurons, dtype=np.float32)
        for j in range(x2.shape[0]):
            acc += x2[j] * w_in[j]
        i_in = self.r_in * acc

        n_exc = self.spec.n_excitatory
        k_exc = k_rec[:n_exc].astype(np.int64)
        k_inh = k_rec[n_exc:].astype(np.int64)
        for _ in range(self.spec.n_substeps):
            counts = spikes[:n_exc].astype(np.int64) @ k_exc - spikes[n_exc:].astype(np.int64) @ k_inh
            i_syn[:] = self.decay_syn * i_syn + self.r_h * counts.astype(np.float32)
            v[:] = self.decay_mem * v + self.leak_mem * (i_syn + i_in)
            fired = v > self.v_threshold
            v[fired] = self.v_reset
            spikes[:] = fired
            signed = self.sign * fired.astype(np.float32)
            rate[:] = self.decay_out * rate + self.rate_scale * signed

        w_out = k_out.astype(np.float32)
        out = np.zeros(self.layout.n_outputs, dtype=np.float32)
        for k in range(self.spec.n_neurons):
            out += rate[k] * w_out[k]
        return self.r_out * out
