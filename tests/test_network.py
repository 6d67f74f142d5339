"""Tests of the network core: constants, bit packing, popcount, and the bitset kernel
against the float reference."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numba
import numpy as np
import pytest

import sb3_satr
from sb3_satr._jit import popcount64
from sb3_satr.bits import n_words, pack_bits, unpack_bits
from sb3_satr.network import BitsetRSNN, NetworkLayout, NetworkSpec, NetworkState, PackedMasks, ReferenceRSNN
from sb3_satr.network.batch import PARALLEL_MIN_BATCH

PACKAGE_DIR = Path(sb3_satr.__file__).resolve().parent


# Network constants.

INVALID_SPECS = [
    ("n_neurons", 0, r"NetworkSpec\.n_neurons must be a positive integer, got 0\."),
    ("n_neurons", -3, r"NetworkSpec\.n_neurons must be a positive integer, got -3\."),
    ("n_neurons", 2.5, r"NetworkSpec\.n_neurons must be a positive integer, got 2\.5\."),
    ("n_neurons", True, r"NetworkSpec\.n_neurons must be a positive integer, got True\."),
    ("n_substeps", 0, r"NetworkSpec\.n_substeps must be a positive integer, got 0\."),
    ("excitatory_ratio", -0.1, r"NetworkSpec\.excitatory_ratio must lie in \[0, 1\], got -0\.1\."),
    ("excitatory_ratio", 1.5, r"NetworkSpec\.excitatory_ratio must lie in \[0, 1\], got 1\.5\."),
    ("excitatory_ratio", float("nan"), r"NetworkSpec\.excitatory_ratio must be finite, got nan\."),
    ("dt", 0.0, r"NetworkSpec\.dt must be a positive time in ms, got 0\.0\."),
    ("dt", -0.5, r"NetworkSpec\.dt must be a positive time in ms, got -0\.5\."),
    ("dt", float("inf"), r"NetworkSpec\.dt must be finite, got inf\."),
    ("tau_syn", 0.0, r"NetworkSpec\.tau_syn must be a positive time in ms, got 0\.0\."),
    ("tau_mem", -10.0, r"NetworkSpec\.tau_mem must be a positive time in ms, got -10\.0\."),
    ("tau_out", float("nan"), r"NetworkSpec\.tau_out must be finite, got nan\."),
    ("connection_density", 0.0, r"NetworkSpec\.connection_density must lie in \(0, 1\], got 0\.0\."),
    ("connection_density", 1.5, r"NetworkSpec\.connection_density must lie in \(0, 1\], got 1\.5\."),
    ("input_gain", float("inf"), r"NetworkSpec\.input_gain must be finite, got inf\."),
    ("v_threshold", "high", r"NetworkSpec\.v_threshold must be a real number, got 'high'\."),
]


@pytest.mark.parametrize(
    "field, value, message", INVALID_SPECS, ids=[f"{field}={value!r}" for field, value, _ in INVALID_SPECS]
)
def test_spec_rejects_invalid_value(field, value, message):
    with pytest.raises(ValueError, match=message):
        NetworkSpec(**{field: value})


def test_spec_rejects_reset_at_threshold():
    with pytest.raises(ValueError, match=r"NetworkSpec\.v_reset \(1\.0\) must be below v_threshold \(1\.0\)"):
        NetworkSpec(v_reset=1.0)


def test_spec_input_resistance_rejects_empty_observation():
    with pytest.raises(ValueError, match=r"obs_dim must be a positive integer, got 0\."):
        NetworkSpec().input_resistance(0)


def test_spec_defaults_and_derived_values():
    spec = NetworkSpec()
    assert spec.n_neurons == 256
    assert spec.n_excitatory == 128
    assert spec.n_inhibitory == 128
    assert spec.dt == 0.5
    assert spec.n_substeps == 33
    assert spec.v_threshold == 1.0
    assert spec.v_reset == 0.0
    assert spec.decay_syn == pytest.approx(np.exp(-0.5 / 5.0))
    assert spec.decay_mem == pytest.approx(np.exp(-0.5 / 10.0))
    assert spec.decay_out == pytest.approx(np.exp(-0.5 / 10.0))
    # With the default gains and density: R_in = 2 / sqrt(d_obs), R_h = 0.25 and
    # R_out = 5 / sqrt(128) for 256 neurons.
    assert spec.input_resistance(11) == pytest.approx(2.0 / np.sqrt(11))
    assert spec.recurrent_resistance == pytest.approx(0.25)
    assert spec.output_resistance == pytest.approx(5.0 / np.sqrt(128))


def test_spec_rounds_excitatory_count_half_up():
    spec = NetworkSpec(n_neurons=65)
    assert spec.n_excitatory == 33
    assert spec.n_inhibitory == 32


# Bit packing.


@pytest.mark.parametrize("n_bits", [1, 63, 64, 65, 130])
@pytest.mark.parametrize("axis", [0, -1])
def test_pack_bits_round_trip(n_bits, axis):
    rng = np.random.default_rng(n_bits)
    shape = (n_bits, 3) if axis == 0 else (3, n_bits)
    bits = rng.random(shape) < 0.5
    words = pack_bits(bits, axis=axis)
    assert words.dtype == np.uint64
    assert words.shape[axis] == n_words(n_bits)
    np.testing.assert_array_equal(unpack_bits(words, n_bits, axis=axis), bits)


@pytest.mark.parametrize("n_bits", [1, 63, 65, 130])
def test_pack_bits_zeroes_padding(n_bits):
    words = pack_bits(np.ones((2, n_bits), dtype=np.bool_))
    assert _padding_is_zero(words, n_bits, axis=1)


def test_pack_bits_empty_axis():
    words = pack_bits(np.zeros((2, 0), dtype=np.bool_))
    assert words.shape == (2, 0)
    assert unpack_bits(words, 0).shape == (2, 0)


def test_unpack_bits_rejects_wrong_word_count():
    with pytest.raises(ValueError, match=r"1 words along axis -1 cannot hold exactly 65 bits \(expected 2 words\)"):
        unpack_bits(np.zeros((3, 1), dtype=np.uint64), 65)


def test_pack_bits_rejects_non_binary_values():
    with pytest.raises(ValueError, match=r"pack_bits expects booleans or 0/1 integers, got dtype int64"):
        pack_bits(np.array([0, 1, 2], dtype=np.int64))


LAYOUT_CASES = [(n, 0.5) for n in (1, 63, 64, 65, 256)] + [(65, 1.0), (65, 0.0)]


@pytest.mark.parametrize("n_neurons, excitatory_ratio", LAYOUT_CASES)
def test_layout_pack_round_trip(n_neurons, excitatory_ratio):
    spec = NetworkSpec(n_neurons=n_neurons, excitatory_ratio=excitatory_ratio)
    layout = NetworkLayout(spec, obs_dim=11, n_outputs=3)
    connections = np.random.default_rng(n_neurons).random((3, layout.n_params)) < 0.5
    masks = layout.pack(connections)
    assert masks.input.shape == (3, n_words(22), n_neurons)
    assert masks.excitatory.shape == (3, n_words(spec.n_excitatory), n_neurons)
    assert masks.inhibitory.shape == (3, n_words(spec.n_inhibitory), n_neurons)
    assert masks.output.shape == (3, n_words(n_neurons), 3)
    np.testing.assert_array_equal(layout.unpack(masks), connections)


@pytest.mark.parametrize("n_neurons, excitatory_ratio", LAYOUT_CASES)
def test_layout_pack_zeroes_padding(n_neurons, excitatory_ratio):
    spec = NetworkSpec(n_neurons=n_neurons, excitatory_ratio=excitatory_ratio)
    layout = NetworkLayout(spec, obs_dim=11, n_outputs=3)
    masks = layout.pack(np.ones((2, layout.n_params), dtype=np.bool_))
    assert _padding_is_zero(masks.input, 22, axis=1)
    assert _padding_is_zero(masks.excitatory, spec.n_excitatory, axis=1)
    assert _padding_is_zero(masks.inhibitory, spec.n_inhibitory, axis=1)
    assert _padding_is_zero(masks.output, n_neurons, axis=1)


def test_layout_flat_order():
    spec = NetworkSpec(n_neurons=5)
    layout = NetworkLayout(spec, obs_dim=2, n_outputs=3)
    assert layout.n_params == 2 * 2 * 5 + 5 * 5 + 5 * 3
    flat = np.zeros(layout.n_params, dtype=np.bool_)
    flat[[0, 2 * 2 * 5 + 1, layout.n_params - 1]] = True
    parts = layout.split(flat)
    assert np.flatnonzero(parts["input"]).tolist() == [0]
    assert np.argwhere(parts["recurrent"]).tolist() == [[0, 1]]
    assert np.argwhere(parts["output"]).tolist() == [[4, 2]]
    np.testing.assert_array_equal(layout.join(parts), flat)


# Popcount.


@numba.njit
def _popcount_each(words):
    counts = np.empty(words.shape[0], dtype=np.int64)
    for i in range(words.shape[0]):
        counts[i] = popcount64(words[i])
    return counts


@pytest.mark.parametrize(
    "word, expected",
    [(0, 0), (1, 1), (2**63, 1), (2**64 - 1, 64), (0x5555_5555_5555_5555, 32)],
    ids=["zero", "lowest-bit", "highest-bit", "all-ones", "alternating"],
)
def test_popcount_edge_words(word, expected):
    assert _popcount_each(np.array([word], dtype=np.uint64))[0] == expected


def test_popcount_random_words():
    words = np.random.default_rng(0).integers(0, 2**64 - 1, size=1000, dtype=np.uint64, endpoint=True)
    expected = [bin(int(word)).count("1") for word in words]
    np.testing.assert_array_equal(_popcount_each(words), expected)


# Bitset kernel against the float reference.

# Densities of (input, recurrent, output) masks, one network per row. The rows with an
# input density of 0.5 also get a fixed input: see _make_connections.
MASK_DENSITIES = [
    (0.0, 0.0, 0.0),
    (1.0, 1.0, 1.0),
    (0.5, 1.0, 1.0),
    (0.5, 0.0, 0.5),
    (0.5, 0.5, 0.5),
    (0.2, 0.8, 0.3),
]
ACTIVE_ROWS = [2, 3, 4]


@pytest.fixture
def one_numba_thread():
    """Run the test on one numba thread, so that ``BitsetRSNN.step`` uses the serial kernel.

    Each call of the parallel kernel waits for every thread, and on a machine whose cores
    are busy with other work that wait can take milliseconds per call. The serial and the
    parallel kernel share the per-network code, and
    ``test_results_identical_for_one_and_two_threads`` compares the two.
    """
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(previous)


def _make_connections(layout, rng):
    """Boolean connections ``(len(MASK_DENSITIES), n_params)`` with the densities above."""
    rows = []
    for input_density, recurrent_density, output_density in MASK_DENSITIES:
        parts = {
            "input": rng.random(layout.shapes["input"]) < input_density,
            "recurrent": rng.random(layout.shapes["recurrent"]) < recurrent_density,
            "output": rng.random(layout.shapes["output"]) < output_density,
        }
        if input_density == 0.5:
            # Every neuron reads +x[0] and not -x[0], so that large x[0] makes it spike and
            # the comparison cannot pass on silent networks.
            parts["input"][0, :] = True
            parts["input"][layout.obs_dim, :] = False
        rows.append(layout.join(parts))
    return np.stack(rows)


def _compare_with_reference(spec, obs_dim, n_steps, seed, n_outputs=3, reset_probability=0.01):
    """Step both implementations on one random sequence and compare after every step.

    Spikes of the last substep and the float state must be equal, outputs within 1e-5
    relative. Returns the number of last-substep spikes per row, summed over the steps.
    """
    rng = np.random.default_rng(seed)
    layout = NetworkLayout(spec, obs_dim=obs_dim, n_outputs=n_outputs)
    connections = _make_connections(layout, rng)
    batch = connections.shape[0]
    bitset, reference = BitsetRSNN(layout), ReferenceRSNN(layout)
    masks, weights = layout.pack(connections), reference.weights(connections)
    state, reference_state = bitset.initial_state(batch), reference.initial_state(batch)

    spike_counts = np.zeros(batch, dtype=np.int64)
    for step in range(n_steps):
        observations = (3.0 * rng.standard_normal((batch, obs_dim))).astype(np.float32)
        reset = rng.random(batch) < reset_probability
        outputs = bitset.step(masks, observations, state, reset=reset)
        expected_outputs = reference.step(weights, observations, reference_state, reset=reset)

        fired = state.fired(spec.n_excitatory, spec.n_inhibitory)
        if not np.array_equal(fired, reference_state.spikes):
            rows = np.flatnonzero((fired != reference_state.spikes).any(axis=1)).tolist()
            pytest.fail(f"spikes differ from the reference at step {step} in rows {rows}")
        # Equal spikes over a long run need the float state to agree to the last bit.
        np.testing.assert_array_equal(state.v, reference_state.v, err_msg=f"v at step {step}")
        np.testing.assert_array_equal(state.i_syn, reference_state.i_syn, err_msg=f"i_syn at step {step}")
        np.testing.assert_array_equal(state.rate, reference_state.rate, err_msg=f"rate at step {step}")
        np.testing.assert_allclose(outputs, expected_outputs, rtol=1e-5, atol=0, err_msg=f"outputs at step {step}")
        spike_counts += fired.sum(axis=1)
    return spike_counts


@pytest.mark.parametrize("obs_dim", [1, 11, 348])
@pytest.mark.parametrize("n_neurons", [1, 63, 64, 65, 256])
@pytest.mark.usefixtures("one_numba_thread")
def test_bitset_matches_reference(n_neurons, obs_dim):
    spec = NetworkSpec(n_neurons=n_neurons)
    spike_counts = _compare_with_reference(spec, obs_dim, n_steps=500, seed=n_neurons + obs_dim)
    assert spike_counts[ACTIVE_ROWS[0]] > 0, "the network with a fixed input never spiked"


@pytest.mark.parametrize("excitatory_ratio", [0.0, 0.8, 1.0])
@pytest.mark.usefixtures("one_numba_thread")
def test_bitset_matches_reference_unbalanced_populations(excitatory_ratio):
    spec = NetworkSpec(n_neurons=130, excitatory_ratio=excitatory_ratio)
    spike_counts = _compare_with_reference(spec, obs_dim=11, n_steps=200, seed=7)
    assert spike_counts[ACTIVE_ROWS].sum() > 0


@pytest.mark.parametrize("n_neurons", [65, 256])
@pytest.mark.usefixtures("one_numba_thread")
def test_bitset_matches_reference_every_substep(n_neurons):
    # With one substep per call, the spikes compared after each call are every spike
    # that the networks emit.
    spec = NetworkSpec(n_neurons=n_neurons, n_substeps=1)
    spike_counts = _compare_with_reference(spec, obs_dim=11, n_steps=300, seed=3)
    assert spike_counts[ACTIVE_ROWS].sum() > 0


@pytest.mark.usefixtures("one_numba_thread")
def test_padding_bits_never_count():
    spec = NetworkSpec(n_neurons=65)
    layout = NetworkLayout(spec, obs_dim=11, n_outputs=3)
    rng = np.random.default_rng(5)
    masks = layout.pack(_make_connections(layout, rng))
    dirty = PackedMasks(
        input=_set_padding(masks.input, 22),
        excitatory=_set_padding(masks.excitatory, spec.n_excitatory),
        inhibitory=_set_padding(masks.inhibitory, spec.n_inhibitory),
        output=_set_padding(masks.output, spec.n_neurons),
    )
    assert not np.array_equal(dirty.input, masks.input)

    network = BitsetRSNN(layout)
    clean_state, dirty_state = network.initial_state(masks.n_networks), network.initial_state(masks.n_networks)
    for step in range(50):
        observations = (3.0 * rng.standard_normal((masks.n_networks, 11))).astype(np.float32)
        clean_outputs = network.step(masks, observations, clean_state)
        dirty_outputs = network.step(dirty, observations, dirty_state)
        np.testing.assert_array_equal(dirty_outputs, clean_outputs, err_msg=f"step {step}")
        np.testing.assert_array_equal(dirty_state.spikes, clean_state.spikes, err_msg=f"step {step}")
    assert _padding_is_zero(clean_state.spikes[:, :1], spec.n_excitatory, axis=1)
    assert _padding_is_zero(clean_state.spikes[:, 1:], spec.n_inhibitory, axis=1)


@pytest.mark.usefixtures("one_numba_thread")
def test_reset_restarts_only_flagged_rows():
    spec = NetworkSpec(n_neurons=65)
    layout = NetworkLayout(spec, obs_dim=11, n_outputs=3)
    rng = np.random.default_rng(11)
    masks = layout.pack(_make_connections(layout, rng)[ACTIVE_ROWS + [5]])
    network = BitsetRSNN(layout)
    state = network.initial_state(4)
    for _ in range(20):
        network.step(masks, (3.0 * rng.standard_normal((4, 11))).astype(np.float32), state)
    observations = (3.0 * rng.standard_normal((4, 11))).astype(np.float32)

    rows_without_reset, rows_with_reset = np.array([0, 2]), np.array([1, 3])
    continued = NetworkState(*(array[rows_without_reset] for array in state))
    continued_outputs = network.step(
        masks, observations[rows_without_reset], continued, network_index=rows_without_reset
    )
    restarted = network.initial_state(2)
    restarted_outputs = network.step(masks, observations[rows_with_reset], restarted, network_index=rows_with_reset)

    reset = np.array([False, True, False, True])
    outputs = network.step(masks, observations, state, reset=reset)

    np.testing.assert_array_equal(outputs[rows_without_reset], continued_outputs)
    np.testing.assert_array_equal(outputs[rows_with_reset], restarted_outputs)
    for name, array, continued_array, restarted_array in zip(NetworkState._fields, state, continued, restarted):
        np.testing.assert_array_equal(
            array[rows_without_reset], continued_array, err_msg=f"state.{name} of rows without reset"
        )
        np.testing.assert_array_equal(array[rows_with_reset], restarted_array, err_msg=f"state.{name} of reset rows")


def test_step_rejects_float64_state():
    layout = NetworkLayout(NetworkSpec(n_neurons=65), obs_dim=11, n_outputs=3)
    network = BitsetRSNN(layout)
    masks = layout.pack(np.zeros((2, layout.n_params), dtype=np.bool_))
    state = network.initial_state(2)._replace(v=np.zeros((2, 65)))
    with pytest.raises(ValueError, match=r"state\.v must be a C-contiguous float32 array of shape \(2, 65\)"):
        network.step(masks, np.zeros((2, 11), dtype=np.float32), state)


def test_step_rejects_float64_observations():
    layout = NetworkLayout(NetworkSpec(n_neurons=65), obs_dim=11, n_outputs=3)
    network = BitsetRSNN(layout)
    masks = layout.pack(np.zeros((2, layout.n_params), dtype=np.bool_))
    with pytest.raises(ValueError, match=r"observations must be float32 of shape \(B, 11\), got float64 \(2, 11\)"):
        network.step(masks, np.zeros((2, 11)), network.initial_state(2))


# Subprocess runs: thread counts and installs where numba cannot cache.

# Steps 64 networks of 256 neurons and saves their outputs and final state to argv[1].
STEP_SCRIPT = textwrap.dedent(
    """
    import sys

    import numba
    import numpy as np

    from sb3_satr.network import BitsetRSNN, NetworkLayout, NetworkSpec

    spec = NetworkSpec(n_neurons=256)
    layout = NetworkLayout(spec, obs_dim=11, n_outputs=3)
    rng = np.random.default_rng(2024)
    connections = rng.random((64, layout.n_params)) < rng.uniform(0.1, 0.9, size=(64, 1))
    masks = layout.pack(connections)
    network = BitsetRSNN(layout)
    state = network.initial_state(64)
    outputs = []
    for step in range(30):
        observations = (3.0 * rng.standard_normal((64, 11))).astype(np.float32)
        reset = rng.random(64) < 0.05
        outputs.append(network.step(masks, observations, state, reset=reset).copy())
        # One step through the serial kernel, with a batch below the parallel threshold.
        outputs.append(network.step(masks, observations[:1], network.initial_state(1), network_index=[step]).copy())
    np.savez(sys.argv[1], outputs=np.concatenate(outputs), **state._asdict())
    print(numba.get_num_threads())
    """
)


def _run_python(code, args, env_updates, cwd):
    env = dict(os.environ)
    env.update(env_updates)
    result = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, f"subprocess failed with exit code {result.returncode}:\n{result.stderr}"
    return result.stdout


def test_results_identical_for_one_and_two_threads(tmp_path):
    assert 64 >= PARALLEL_MIN_BATCH
    saved = {}
    for threads in (1, 2):
        path = tmp_path / f"threads_{threads}.npz"
        stdout = _run_python(STEP_SCRIPT, [str(path)], {"NUMBA_NUM_THREADS": str(threads)}, tmp_path)
        assert stdout.split()[-1] == str(threads)
        saved[threads] = dict(np.load(path))
    assert saved[1].keys() == saved[2].keys()
    for name in saved[1]:
        assert saved[1][name].tobytes() == saved[2][name].tobytes(), f"{name} differs between 1 and 2 threads"


# Imports the package from argv[1], steps the serial and the parallel kernel, saves the
# outputs to argv[2] and prints a JSON report of the caching warnings and the LLVM IR.
UNCACHED_SCRIPT = textwrap.dedent(
    """
    import json
    import re
    import sys
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import numpy as np

        import sb3_satr
        from sb3_satr.network import BitsetRSNN, NetworkLayout, NetworkSpec, kernels

        layout = NetworkLayout(NetworkSpec(n_neurons=65), obs_dim=11, n_outputs=3)
        rng = np.random.default_rng(99)
        masks = layout.pack(rng.random((40, layout.n_params)) < 0.5)
        network = BitsetRSNN(layout)
        observations = (3.0 * rng.standard_normal((40, 11))).astype(np.float32)
        serial = network.step(masks, observations[:1], network.initial_state(1), network_index=[0])
        parallel = network.step(masks, observations, network.initial_state(40))
        np.savez(sys.argv[2], serial=serial, parallel=parallel)

    ir = {}
    for name in ("_advance_serial", "_advance_parallel"):
        dispatcher = getattr(kernels, name)
        ir[name] = dispatcher.inspect_llvm(dispatcher.signatures[0])
    print(json.dumps({
        "package": sb3_satr.__file__,
        "cache_warnings": [str(w.message) for w in caught if "cannot cache" in str(w.message)],
        "double_count": {name: len(re.findall(r"\\bdouble\\b", text)) for name, text in ir.items()},
        "ctpop_count": {name: text.count("llvm.ctpop.i64") for name, text in ir.items()},
    }))
    """
)


@pytest.fixture(scope="module")
def uncached_run(tmp_path_factory):
    """Run UNCACHED_SCRIPT on a copy of the package where numba has nowhere to cache.

    File permissions would not stop a test that runs as root, so instead every
    ``__pycache__`` of the copy is a regular file, and HOME, XDG_CACHE_HOME and
    NUMBA_CACHE_DIR point below a regular file.
    """
    root = tmp_path_factory.mktemp("uncached")
    site = root / "site"
    shutil.copytree(PACKAGE_DIR, site / "sb3_satr", ignore=shutil.ignore_patterns("__pycache__"))
    for folder in [site / "sb3_satr", *(site / "sb3_satr").rglob("*")]:
        if folder.is_dir():
            (folder / "__pycache__").write_text("")
    blocker = root / "regular_file"
    blocker.write_text("")
    env = {
        "PYTHONPATH": str(site),
        "HOME": str(blocker / "home"),
        "XDG_CACHE_HOME": str(blocker / "cache"),
        "NUMBA_CACHE_DIR": str(blocker / "numba"),
    }
    outputs_path = root / "outputs.npz"
    stdout = _run_python(UNCACHED_SCRIPT, [str(site), str(outputs_path)], env, root)
    report = json.loads(stdout.strip().splitlines()[-1])
    report["outputs"] = dict(np.load(outputs_path))
    report["site"] = str(site)
    return report


def test_uncached_script_reaches_parallel_kernel():
    assert 40 >= PARALLEL_MIN_BATCH


def test_uncached_install_imports_the_copy(uncached_run):
    assert uncached_run["package"].startswith(uncached_run["site"])


def test_uncached_install_warns_once(uncached_run):
    # Caching is impossible here, so the fallback must warn, and only once per process.
    assert len(uncached_run["cache_warnings"]) == 1


def test_uncached_install_steps_like_cached_install(uncached_run):
    layout = NetworkLayout(NetworkSpec(n_neurons=65), obs_dim=11, n_outputs=3)
    rng = np.random.default_rng(99)
    masks = layout.pack(rng.random((40, layout.n_params)) < 0.5)
    network = BitsetRSNN(layout)
    observations = (3.0 * rng.standard_normal((40, 11))).astype(np.float32)
    serial = network.step(masks, observations[:1], network.initial_state(1), network_index=[0])
    parallel = network.step(masks, observations, network.initial_state(40))
    assert uncached_run["outputs"]["serial"].tobytes() == serial.tobytes()
    assert uncached_run["outputs"]["parallel"].tobytes() == parallel.tobytes()


@pytest.mark.parametrize("kernel", ["_advance_serial", "_advance_parallel"])
def test_bitset_kernel_has_no_float64(uncached_run, kernel):
    # The compiled module includes the inlined helpers, so a promotion anywhere on the
    # bit path would show up as an LLVM ``double``.
    assert uncached_run["double_count"][kernel] == 0
    assert uncached_run["ctpop_count"][kernel] > 0


# Helpers.


def _padding_is_zero(words, n_bits, axis):
    """Whether every bit past ``n_bits`` along ``axis`` of the packed words is zero."""
    n_stored = words.shape[axis] * 64
    bits = unpack_bits(np.ascontiguousarray(words), n_stored, axis=axis)
    return not np.take(bits, np.arange(n_bits, n_stored), axis=axis).any()


def _set_padding(words, n_bits):
    """Copy of masks packed along axis 1 with every padding bit set to one."""
    words = words.copy()
    used = n_bits % 64
    if used:
        words[:, -1, ...] |= ~np.uint64((1 << used) - 1)
    return words
