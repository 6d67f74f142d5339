"""numba kernels that advance batches of recurrent spiking networks by one environment step.

Dtype discipline: observations, currents, membrane potentials, rate traces, constants and
outputs are ``float32``; masks and packed spikes are ``uint64``; recurrent spike counts are
``int32``. No value is promoted to ``float64``. Floating-point operations run in the same
order as in ``sb3_satr.network.reference`` (``fastmath`` is off, so LLVM neither reorders
sums nor fuses multiply-adds). Spike trains and the float state therefore match the float
reference bit for bit, and outputs are summed in the same order as there.

Bit order: bit ``j`` of spike word ``w`` is neuron ``64 * w + j`` of its population
(excitatory words first, then inhibitory words), and bit ``j`` of mask word ``[w, k]`` is
presynaptic index ``64 * w + j`` of postsynaptic neuron ``k``. The kernels keep the padding
bits of spike words zero and never read input or output padding, so padding bits of the
masks never count.

Limits: ``n_neurons < 2**31`` so that signed ``int32`` spike counts cannot overflow (a
neuron receives at most ``n_neurons`` spikes per substep).

Speed notes, measured with numba 0.68.1 on an AMD EPYC (Zen 4):

- The word-major mask layout ``(words, N)`` makes every inner loop run over postsynaptic
  neurons with unit stride, so LLVM vectorises the AND + popcount to AVX-512 ``vpopcntq``
  where the CPU has it.
- Loops over neurons that start at an argument (the inhibitory population starts at
  ``n_excitatory``) index arrays with ``uint64`` values. numba skips its negative-index
  wraparound for unsigned indices, and with signed indices that wraparound kept LLVM
  from vectorising these loops.
- Helpers called once per substep are inlined by numba (``inline="always"``), and scratch
  arrays are allocated once per call, not once per network.
"""

from __future__ import annotations

import numba
import numpy as np

from sb3_satr._jit import njit_kernel, popcount64

# Indices into the constants vector built by ``NetworkSpec.kernel_constants``.
_R_IN, _R_H, _R_OUT, _DECAY_SYN, _DECAY_MEM, _LEAK_MEM, _DECAY_OUT, _RATE_SCALE, _V_TH, _V_RESET = range(10)

_ONE = np.uint64(1)
_ZERO_WORD = np.uint64(0)


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


@njit_kernel(boundscheck=False, inline="always")
def _add_popcounts(
    assign, counts, excitatory_bits, a, row_a, b, row_b, inhibitory_bits, c, row_c, d, row_d
):  # pragma: no cover - compiled
    """Add (or with ``assign``, write) two excitatory minus two inhibitory popcounts per neuron.

    ``a`` and ``b`` are excitatory spike words for rows ``row_a`` and ``row_b`` of
    ``excitatory_bits``, and ``c`` and ``d`` are inhibitory spike words for rows of
    ``inhibitory_bits``. Unused slots hold zero words, which add nothing. Four words per
    pass keep each count in a register between popcounts instead of reloading it per word.
    """
    n_neurons = counts.shape[0]
    if assign:
        for k in range(n_neurons):
            counts[k] = np.int32(
                popcount64(a & excitatory_bits[row_a, k])
                + popcount64(b & excitatory_bits[row_b, k])
                - popcount64(c & inhibitory_bits[row_c, k])
                - popcount64(d & inhibitory_bits[row_d, k])
            )
    else:
        for k in range(n_neurons):
            counts[k] += np.int32(
                popcount64(a & excitatory_bits[row_a, k])
                + popcount64(b & excitatory_bits[row_b, k])
                - popcount64(c & inhibitory_bits[row_c, k])
                - popcount64(d & inhibitory_bits[row_d, k])
            )


@njit_kernel(boundscheck=False, inline="always")
def _recurrent_counts(spikes, excitatory_bits, inhibitory_bits, counts):  # pragma: no cover - compiled
    """Write active excitatory minus active inhibitory inputs of every neuron into ``counts``.

    Excitatory words ``2g, 2g + 1`` and inhibitory words ``2g, 2g + 1`` share pass ``g``.
    Passes whose four spike words are all zero are skipped.
    """
    n_exc_words = excitatory_bits.shape[0]
    n_inh_words = inhibitory_bits.shape[0]
    # A population without neurons has no mask rows. Its slots always hold zero words, so
    # pointing them at the other population's rows reads valid memory and adds nothing.
    if n_exc_words == 0:
        excitatory_bits = inhibitory_bits
    if n_inh_words == 0:
        inhibitory_bits = excitatory_bits

    assign = True
    for g in range((max(n_exc_words, n_inh_words) + 1) // 2):
        a = b = c = d = _ZERO_WORD
        row_a = row_b = row_c = row_d = 0
        if 2 * g < n_exc_words:
            row_a = 2 * g
            a = spikes[row_a]
        if 2 * g + 1 < n_exc_words:
            row_b = 2 * g + 1
            b = spikes[row_b]
        if 2 * g < n_inh_words:
            row_c = 2 * g
            c = spikes[n_exc_words + row_c]
        if 2 * g + 1 < n_inh_words:
            row_d = 2 * g + 1
            d = spikes[n_exc_words + row_d]
        if (a | b | c | d) != _ZERO_WORD:
            _add_popcounts(assign, counts, excitatory_bits, a, row_a, b, row_b, inhibitory_bits, c, row_c, d, row_d)
            assign = False
    if assign:
        for k in range(counts.shape[0]):
            counts[k] = 0


@njit_kernel(boundscheck=False, inline="always")
def _update_neurons(
    start, stop, sign, counts, i_in, v, i_syn, rate, fired,
    r_h, decay_syn, decay_mem, leak_mem, decay_out, rate_scale, v_threshold, v_reset,
):  # pragma: no cover - compiled
    """Advance neurons ``start .. stop - 1`` of one population by one substep.

    Writes 1 into ``fired`` (uint8) for the neurons that spiked and 0 for the others.
    ``sign`` is +1 for excitatory and -1 for inhibitory neurons.
    """
    # rate_scale * (sign * spiked), written as a select: both branches are the exact
    # products, including the sign of zero, so results match the reference bit for bit.
    spike_term = rate_scale * sign
    silent_term = rate_scale * (sign * np.float32(0.0))
    first = np.uint64(start)
    for j in range(stop - start):
        k = first + np.uint64(j)
        i_syn[k] = decay_syn * i_syn[k] + r_h * np.float32(counts[k])
        v[k] = decay_mem * v[k] + leak_mem * (i_syn[k] + i_in[k])
        spiked = v[k] > v_threshold
        v[k] = v_reset if spiked else v[k]
        rate[k] = decay_out * rate[k] + (spike_term if spiked else silent_term)
        fired[k] = np.uint8(spiked)


@njit_kernel(boundscheck=False, inline="always")
def _pack_word(fired, start, stop):  # pragma: no cover - compiled
    """Pack ``fired[start:stop]`` (at most 64 entries of 0 or 1) into one word, bit ``j`` for ``start + j``."""
    first = np.uint64(start)
    word = _ZERO_WORD
    for j in range(stop - start):
        word |= np.uint64(fired[first + np.uint64(j)]) << np.uint64(j)
    return word


@njit_kernel(boundscheck=False, inline="always")
def _read_output(rate, output_bits, r_out, output):  # pragma: no cover - compiled
    """Write ``R_out * (rate @ K_out)`` into ``output``, summing neurons in ascending order.

    Four outputs share one pass over the neurons so that four independent addition chains
    hide the latency of each other. With fewer than four left, the last output is computed
    more than once.
    """
    n_neurons = rate.shape[0]
    n_outputs = output.shape[0]
    for first in range(0, n_outputs, 4):
        second = min(first + 1, n_outputs - 1)
        third = min(first + 2, n_outputs - 1)
        fourth = min(first + 3, n_outputs - 1)
        acc0 = acc1 = acc2 = acc3 = np.float32(0.0)
        for k in range(n_neurons):
            r = rate[k]
            word = k >> 6
            shift = np.uint64(k & 63)
            acc0 += r * np.float32((output_bits[word, first] >> shift) & _ONE)
            acc1 += r * np.float32((output_bits[word, second] >> shift) & _ONE)
            acc2 += r * np.float32((output_bits[word, third] >> shift) & _ONE)
            acc3 += r * np.float32((output_bits[word, fourth] >> shift) & _ONE)
        output[first] = r_out * acc0
        output[second] = r_out * acc1
        output[third] = r_out * acc2
        output[fourth] = r_out * acc3


@njit_kernel(boundscheck=False)
def _advance_network(
    observation, input_bits, excitatory_bits, inhibitory_bits, output_bits,
    v, i_syn, rate, spikes, reset, constants, n_substeps, n_excitatory, output, i_in, counts, fired,
):  # pragma: no cover - compiled
    """Advance one network by one environment step (``n_substeps`` network substeps).

    ``i_in`` (float32), ``counts`` (int32) and ``fired`` (uint8), all of length
    ``n_neurons``, are scratch.
    """
    n_neurons = v.shape[0]
    n_exc_words = excitatory_bits.shape[0]
    n_inh_words = inhibitory_bits.shape[0]

    if reset:
        for k in range(n_neurons):
            v[k] = np.float32(0.0)
            i_syn[k] = np.float32(0.0)
            rate[k] = np.float32(0.0)
        for w in range(spikes.shape[0]):
            spikes[w] = _ZERO_WORD

    r_h = constants[_R_H]
    decay_syn = constants[_DECAY_SYN]
    decay_mem = constants[_DECAY_MEM]
    leak_mem = constants[_LEAK_MEM]
    decay_out = constants[_DECAY_OUT]
    rate_scale = constants[_RATE_SCALE]
    v_threshold = constants[_V_TH]
    v_reset = constants[_V_RESET]

    _input_current(observation, input_bits, constants[_R_IN], i_in)

    for _ in range(n_substeps):
        # Recurrent drive from the previous substep's spikes. All spike words are read
        # here, before the packing below overwrites them with this substep's spikes.
        _recurrent_counts(spikes, excitatory_bits, inhibitory_bits, counts)

        _update_neurons(
            0, n_excitatory, np.float32(1.0), counts, i_in, v, i_syn, rate, fired,
            r_h, decay_syn, decay_mem, leak_mem, decay_out, rate_scale, v_threshold, v_reset,
        )
        _update_neurons(
            n_excitatory, n_neurons, np.float32(-1.0), counts, i_in, v, i_syn, rate, fired,
            r_h, decay_syn, decay_mem, leak_mem, decay_out, rate_scale, v_threshold, v_reset,
        )
        for w in range(n_exc_words):
            spikes[w] = _pack_word(fired, 64 * w, min(64 * w + 64, n_excitatory))
        for w in range(n_inh_words):
            start = n_excitatory + 64 * w
            spikes[n_exc_words + w] = _pack_word(fired, start, min(start + 64, n_neurons))

    _read_output(rate, output_bits, constants[_R_OUT], output)


@njit_kernel(boundscheck=False)
def _advance_serial(
    observations, input_bits, excitatory_bits, inhibitory_bits, output_bits, network_index,
    v, i_syn, rate, spikes, reset, constants, n_substeps, n_excitatory, outputs,
):  # pragma: no cover - compiled
    """Advance every row of the batch on the calling thread.

    - ``observations``: ``(B, obs_dim)`` float32.
    - ``input_bits`` .. ``output_bits``: the arrays of ``PackedMasks``, one network per
      leading index.
    - ``network_index``: ``(B,)`` int64, the network of each row.
    - ``v``, ``i_syn``, ``rate``: ``(B, N)`` float32, and ``spikes``:
      ``(B, n_spike_words)`` uint64. All four are updated in place.
    - ``reset``: ``(B,)`` bool. A flagged row starts from the zero state.
    - ``constants``: from ``NetworkSpec.kernel_constants``.
    - ``outputs``: ``(B, n_outputs)`` float32, written.
    """
    n_neurons = v.shape[1]
    i_in = np.empty(n_neurons, dtype=np.float32)
    counts = np.empty(n_neurons, dtype=np.int32)
    fired = np.empty(n_neurons, dtype=np.uint8)
    for b in range(observations.shape[0]):
        m = network_index[b]
        _advance_network(
            observations[b], input_bits[m], excitatory_bits[m], inhibitory_bits[m], output_bits[m],
            v[b], i_syn[b], rate[b], spikes[b], reset[b], constants, n_substeps, n_excitatory, outputs[b],
            i_in, counts, fired,
        )


@njit_kernel(boundscheck=False, parallel=True)
def _advance_parallel(
    observations, input_bits, excitatory_bits, inhibitory_bits, output_bits, network_index,
    v, i_syn, rate, spikes, reset, constants, n_substeps, n_excitatory, outputs,
):  # pragma: no cover - compiled
    """Advance every row like ``_advance_serial``, spreading the rows over numba's threads.

    Each row is advanced by exactly one thread and rows share nothing but read-only masks,
    so results do not depend on the number of threads.
    """
    batch, n_neurons = v.shape
    i_in = np.empty((batch, n_neurons), dtype=np.float32)
    counts = np.empty((batch, n_neurons), dtype=np.int32)
    fired = np.empty((batch, n_neurons), dtype=np.uint8)
    for b in numba.prange(batch):
        m = network_index[b]
        _advance_network(
            observations[b], input_bits[m], excitatory_bits[m], inhibitory_bits[m], output_bits[m],
            v[b], i_syn[b], rate[b], spikes[b], reset[b], constants, n_substeps, n_excitatory, outputs[b],
            i_in[b], counts[b], fired[b],
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
    """Advance a batch with the dense float32 kernel, in parallel over rows.

    This kernel is the float comparison point of ``benchmarks/kernel.py``. ``w_in`` is
    ``(M, 2 * obs_dim, N)``, ``w_rec`` ``(M, N, N)`` and ``w_out`` ``(M, N, n_outputs)``,
    all float32 0/1; ``spiked`` contains the signed spikes ``(B, N)`` float32. Other
    arguments are as in ``_advance_serial``.
    """
    for b in numba.prange(observations.shape[0]):
        m = network_index[b]
        _advance_dense_network(
            observations[b], w_in[m], w_rec[m], w_out[m], v[b], i_syn[b], rate[b], spiked[b], reset[b],
            constants, n_substeps, n_excitatory, outputs[b],
        )


@njit_kernel(boundscheck=False)
def advance_dense_serial(
    observations, w_in, w_rec, w_out, network_index, v, i_syn, rate, spiked, reset, constants, n_substeps,
    n_excitatory, outputs,
):  # pragma: no cover - compiled
    """Advance every row like ``advance_dense``, on the calling thread (for small batches)."""
    for b in range(observations.shape[0]):
        m = network_index[b]
        _advance_dense_network(
            observations[b], w_in[m], w_rec[m], w_out[m], v[b], i_syn[b], rate[b], spiked[b], reset[b],
            constants, n_substeps, n_excitatory, outputs[b],
        )
