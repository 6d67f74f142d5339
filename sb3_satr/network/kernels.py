"""numba kernels that advance batches of recurrent spiking networks by one environment step.

Dtype discipline: observations, currents, membrane potentials, rate traces, constants and
outputs are ``float32``; masks and packed spikes are ``uint64``; spike counts are
``int64``. No value is promoted to ``float64``. Floating-point operations run in the same
order as in ``sb3_satr.network.reference`` (``fastmath`` is off), so spike trains match the
float reference exactly.

Limits: any ``n_neurons`` and observation size that fit in memory. Spike counts are
``int64`` and a postsynaptic neuron receives at most ``n_neurons`` spikes per substep, so
they cannot overflow.
"""

from __future__ import annotations

import numba
import numpy as np

from sb3_satr._jit import njit_kernel, popcount64

# Indices into the constants vector built by ``NetworkSpec.kernel_constants``.
_R_IN, _R_H, _R_OUT, _DECAY_SYN, _DECAY_MEM, _LEAK_MEM, _DECAY_OUT, _RATE_SCALE, _V_TH, _V_RESET = range(10)

_ONE = np.uint64(1)


@njit_kernel(boundscheck=False)
def _input_current(observation, input_bits, resistance, current):  # pragma: no cover - compiled
    """Write ``R_in * ([x, -x] @ K_in)`` into ``current``, summing inputs in ascending order."""
    obs_dim = observation.shape[0]
    n_neurons = current.shape[0]
    for k in range(n_neurons):
        current[k] = np.float32(0.0)
    for j in range(2 * obs_dim):
        if j < obs_dim:
            x = observation[j]
        else:
            x = -observation[j - obs_dim]
        word = j >> 6
        shift = np.uint64(j & 63)
        for k in range(n_neurons):
            bit = (input_bits[word, k] >> shift) & _ONE
            current[k] += x * np.float32(bit)
    for k in range(n_neurons):
        current[k] = resistance * current[k]


@njit_kernel(boundscheck=False)
def _pack_spikes(fired, start, stop, words):  # pragma: no cover - compiled
    """Pack ``fired[start:stop]`` into ``words`` (bit ``j`` of word ``w`` is neuron ``start + 64 w + j``)."""
    n = stop - start
    for w in range(words.shape[0]):
        base = start + 64 * w
        width = min(64, n - 64 * w)
        word = np.uint64(0)
        for j in range(width):
            word |= np.uint64(fired[base + j]) << np.uint64(j)
        words[w] = word


@njit_kernel(boundscheck=False)
def _advance_network(
    observation,
    input_bits,
    excitatory_bits,
    inhibitory_bits,
    output_bits,
    v,
    i_syn,
    rate,
    spikes,
    reset,
    constants,
    n_substeps,
    n_excitatory,
    output,
):  # pragma: no cover - compiled
    """Advance one network by one environment step (``n_substeps`` network substeps)."""
    n_neurons = v.shape[0]
    n_exc_words = excitatory_bits.shape[0]
    n_inh_words = inhibitory_bits.shape[0]

    if reset:
        for k in range(n_neurons):
            v[k] = np.float32(0.0)
            i_syn[k] = np.float32(0.0)
            rate[k] = np.float32(0.0)
        for w in range(spikes.shape[0]):
            spikes[w] = np.uint64(0)

    r_h = constants[_R_H]
    decay_syn = constants[_DECAY_SYN]
    decay_mem = constants[_DECAY_MEM]
    leak_mem = constants[_LEAK_MEM]
    decay_out = constants[_DECAY_OUT]
    rate_scale = constants[_RATE_SCALE]
    v_threshold = constants[_V_TH]
    v_reset = constants[_V_RESET]

    i_in = np.empty(n_neurons, dtype=np.float32)
    _input_current(observation, input_bits, constants[_R_IN], i_in)

    sign = np.empty(n_neurons, dtype=np.float32)
    for k in range(n_neurons):
        sign[k] = np.float32(1.0) if k < n_excitatory else np.float32(-1.0)

    counts = np.empty(n_neurons, dtype=np.int64)
    fired = np.empty(n_neurons, dtype=np.uint8)
    for _ in range(n_substeps):
        # Recurrent drive from the previous substep's spikes: active excitatory inputs
        # minus active inhibitory inputs, one AND + popcount per 64 presynaptic neurons.
        for k in range(n_neurons):
            counts[k] = 0
        for w in range(n_exc_words):
            word = spikes[w]
            if word != 0:
                for k in range(n_neurons):
                    counts[k] += popcount64(word & excitatory_bits[w, k])
        for w in range(n_inh_words):
            word = spikes[n_exc_words + w]
            if word != 0:
                for k in range(n_neurons):
                    counts[k] -= popcount64(word & inhibitory_bits[w, k])

        for k in range(n_neurons):
            i_syn[k] = decay_syn * i_syn[k] + r_h * np.float32(counts[k])
            v[k] = decay_mem * v[k] + leak_mem * (i_syn[k] + i_in[k])
            spiked = v[k] > v_threshold
            v[k] = v_reset if spiked else v[k]
            fired[k] = np.uint8(spiked)
            rate[k] = decay_out * rate[k] + rate_scale * (sign[k] * np.float32(spiked))

        _pack_spikes(fired, 0, n_excitatory, spikes[:n_exc_words])
        _pack_spikes(fired, n_excitatory, n_neurons, spikes[n_exc_words:])

    # Output: R_out * (rate @ K_out), summing presynaptic neurons in ascending order.
    r_out = constants[_R_OUT]
    for m in range(output.shape[0]):
        acc = np.float32(0.0)
        for k in range(n_neurons):
            bit = (output_bits[k >> 6, m] >> np.uint64(k & 63)) & _ONE
            acc += rate[k] * np.float32(bit)
        output[m] = r_out * acc


@njit_kernel(boundscheck=False)
def _advance_serial(
    observations, input_bits, excitatory_bits, inhibitory_bits, output_bits, network_index,
    v, i_syn, rate, spikes, reset, constants, n_substeps, n_excitatory, outputs,
):  # pragma: no cover - compiled
    for b in range(observations.shape[0]):
        m = network_index[b]
        _advance_network(
            observations[b], input_bits[m], excitatory_bits[m], inhibitory_bits[m], output_bits[m],
            v[b], i_syn[b], rate[b], spikes[b], reset[b], constants, n_substeps, n_excitatory, outputs[b],
        )


@njit_kernel(boundscheck=False, parallel=True)
def _advance_parallel(
    observations, input_bits, excitatory_bits, inhibitory_bits, output_bits, network_index,
    v, i_syn, rate, spikes, reset, constants, n_substeps, n_excitatory, outputs,
):  # pragma: no cover - compiled
    # Each row is owned by one thread and rows share nothing, so results do not depend
    # on the number of threads.
    for b in numba.prange(observations.shape[0]):
        m = network_index[b]
        _advance_network(
            observations[b], input_bits[m], excitatory_bits[m], inhibitory_bits[m], output_bits[m],
            v[b], i_syn[b], rate[b], spikes[b], reset[b], constants, n_substeps, n_excitatory, outputs[b],
        )


@njit_kernel(boundscheck=False)
def _advance_dense_network(
    observation, w_in, w_rec, w_out, v, i_syn, rate, spiked, reset, constants, n_substeps, n_excitatory, output,
):  # pragma: no cover - compiled
    """Dense float32 version of ``_advance_network`` with 0/1 float weight matrices."""
    n_neurons = v.shape[0]
    obs_dim = observation.shape[0]
    if reset:
        for k in range(n_neurons):
            v[k] = np.float32(0.0)
            i_syn[k] = np.float32(0.0)
            rate[k] = np.float32(0.0)
            spiked[k] = np.float32(0.0)

    i_in = np.zeros(n_neurons, dtype=np.float32)
    for j in range(obs_dim):
        x = observation[j]
        for k in range(n_neurons):
            i_in[k] += x * w_in[j, k] - x * w_in[obs_dim + j, k]
    r_in = constants[_R_IN]
    for k in range(n_neurons):
        i_in[k] = r_in * i_in[k]

    drive = np.empty(n_neurons, dtype=np.float32)
    sign = np.empty(n_neurons, dtype=np.float32)
    for k in range(n_neurons):
        sign[k] = np.float32(1.0) if k < n_excitatory else np.float32(-1.0)
    for _ in range(n_substeps):
        for k in range(n_neurons):
            drive[k] = np.float32(0.0)
        for pre in range(n_neurons):
            s = spiked[pre]
            if s != 0.0:
                for k in range(n_neurons):
                    drive[k] += s * w_rec[pre, k]
        for k in range(n_neurons):
            i_syn[k] = constants[_DECAY_SYN] * i_syn[k] + constants[_R_H] * drive[k]
            v[k] = constants[_DECAY_MEM] * v[k] + constants[_LEAK_MEM] * (i_syn[k] + i_in[k])
            fire = v[k] > constants[_V_TH]
            v[k] = constants[_V_RESET] if fire else v[k]
            spiked[k] = sign[k] * np.float32(fire)
            rate[k] = constants[_DECAY_OUT] * rate[k] + constants[_RATE_SCALE] * spiked[k]

    for m in range(output.shape[0]):
        acc = np.float32(0.0)
        for k in range(n_neurons):
            acc += rate[k] * w_out[k, m]
        output[m] = constants[_R_OUT] * acc


@njit_kernel(boundscheck=False, parallel=True)
def advance_dense(
    observations, w_in, w_rec, w_out, network_index, v, i_syn, rate, spiked, reset, constants, n_substeps,
    n_excitatory, outputs,
):  # pragma: no cover - compiled
    """Advance a batch with the dense float32 kernel; the comparison point of the benchmarks.

    ``w_in`` is ``(M, 2 * obs_dim, N)``, ``w_rec`` ``(M, N, N)`` and ``w_out``
    ``(M, N, n_outputs)``, all float32 0/1; ``spiked`` holds the signed spikes
    ``(B, N)`` float32. Other arguments are as in ``advance``.
    """
    for b in numba.prange(observations.shape[0]):
        m = network_index[b]
        _advance_dense_network(
            observations[b], w_in[m], w_rec[m], w_out[m], v[b], i_syn[b], rate[b], spiked[b], reset[b],
            constants, n_substeps, n_excitatory, outputs[b],
        )
