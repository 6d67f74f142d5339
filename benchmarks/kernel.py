"""Time the bitset network kernel against float implementations and one Hopper-v5 step.

For every ``n_neurons`` in {128, 256, 512, 1024} and batch size B in {1, 64, 256}, at
Hopper-v5 sizes (11 observations, 3 outputs), it measures the time per network and
environment step of

- ``bitset``: ``BitsetRSNN.step``, the packed ``uint64`` numba kernel;
- ``float_reference``: ``ReferenceRSNN.step``, the same equations in numpy (float32),
  with BLAS on one thread unless ``OPENBLAS_NUM_THREADS`` sets another count;
- ``dense_numba``: ``kernels.advance_dense``, a numba kernel with float32 0/1 weight
  matrices that skips silent presynaptic neurons (serial below the same batch size as
  the bitset kernel);

and the time of one ``env.step`` of ``gymnasium.make("Hopper-v5")`` with random actions,
in the same run. Every batch row runs its own network, with every connection present with
probability 0.5 (the search distribution at initialisation), on standard normal inputs.
It also times a popcount-only loop and the kernel's recurrent popcount loop on one core.

    python benchmarks/kernel.py --quick --json kernel.json   # about a minute on an idle 2-core machine
    python benchmarks/kernel.py                               # more and longer timing rounds
    python benchmarks/kernel.py --quick --cpu-time            # one thread, CPU time: for a busy machine
    python benchmarks/kernel.py --asm                         # popcount instructions of the kernels
    python benchmarks/kernel.py --parallel-threshold          # serial against parallel kernel, B = 1 to 8

``--json`` writes a list of records ``{"impl", "n_neurons", "batch",
"us_per_network_step"}``. The Hopper record has ``n_neurons`` null and ``batch`` 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import tempfile
import time

N_NEURONS = (128, 256, 512, 1024)
BATCHES = (1, 64, 256)
OBS_DIM = 11
N_OUTPUTS = 3
DENSITY = 0.5
THRESHOLD_BATCHES = range(1, 9)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter timing rounds")
    parser.add_argument("--json", metavar="PATH", help="write the timing records to this JSON file")
    parser.add_argument("--seed", type=int, default=0, help="seed of masks, observations and actions")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="run numba on one thread and report process CPU time instead of wall-clock time",
    )
    parser.add_argument(
        "--asm",
        action="store_true",
        help="compile the bitset kernels without the numba cache and count their popcount instructions",
    )
    parser.add_argument(
        "--parallel-threshold",
        action="store_true",
        help="time the serial and the parallel bitset kernel for batches of 1 to 8 rows",
    )
    return parser.parse_args()


# Thread counts and the numba cache folder are read when numpy and numba are imported, so
# they are set before the imports below. numpy's BLAS runs on one thread unless the caller
# sets its thread count. The reference multiplies one spike vector per row, too small to
# gain from threads. On a busy 2-core machine, a call at 1024 neurons that took about
# 10 ms with one BLAS thread took up to a second with two.
ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    for variable in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
if ARGS is not None and ARGS.cpu_time:
    for variable in ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = "1"
if ARGS is not None and ARGS.asm:
    # numba shows the assembly only of code that it compiled in this process.
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="sb3_satr_asm_")

import numba  # noqa: E402
import numpy as np  # noqa: E402

from sb3_satr._jit import popcount64  # noqa: E402
from sb3_satr.bits import n_words  # noqa: E402
from sb3_satr.network import BitsetRSNN, NetworkLayout, NetworkSpec, ReferenceRSNN  # noqa: E402
from sb3_satr.network import kernels  # noqa: E402
from sb3_satr.network.batch import uses_parallel_kernel  # noqa: E402
from sb3_satr.network.reference import ReferenceWeights  # noqa: E402


# Timing.


class Timer:
    """Median time per call over rounds that each last at least ``round_seconds``.

    With ``warm_up``, a first call compiles or loads the numba kernels and is not timed.
    A call slower than ``slow_call_seconds`` is timed once, so that the slowest cells
    (numpy at 1024 neurons and 256 rows) stay within the budget.

    :param quick: Use 3 rounds of 0.1 s instead of 7 rounds of 0.4 s.
    :param cpu_time: Measure process CPU time (``time.process_time``), which leaves out the
        time that other processes hold the core. Only meaningful on one thread.
    """

    def __init__(self, quick: bool, cpu_time: bool) -> None:
        self.rounds = 3 if quick else 7
        self.round_seconds = 0.1 if quick else 0.4
        self.slow_call_seconds = 0.5 if quick else 2.0
        self.clock = time.process_time if cpu_time else time.perf_counter

    def seconds_per_call(self, call, warm_up: bool = True) -> float:
        if warm_up:
            call()
        start = self.clock()
        call()
        first = self.clock() - start
        if first > self.slow_call_seconds:
            return first
        per_call = []
        for _ in range(self.rounds):
            calls = 0
            start = self.clock()
            while True:
                call()
                calls += 1
                elapsed = self.clock() - start
                if elapsed >= self.round_seconds:
                    break
            per_call.append(elapsed / calls)
        return statistics.median(per_call)


# Networks.


def random_connections(layout: NetworkLayout, batch: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean connections ``(batch, n_params)``, drawn one row at a time to bound memory."""
    connections = np.empty((batch, layout.n_params), dtype=np.bool_)
    for row in range(batch):
        connections[row] = rng.random(layout.n_params, dtype=np.float32) < DENSITY
    return connections


class Cell:
    """Networks of one size for the largest batch, in the form of each implementation.

    At 1024 neurons and 256 rows the float32 matrices take about 2 GB.
    """

    def __init__(self, n_neurons: int, max_batch: int, rng: np.random.Generator) -> None:
        self.spec = NetworkSpec(n_neurons=n_neurons)
        self.layout = NetworkLayout(self.spec, OBS_DIM, N_OUTPUTS)
        connections = random_connections(self.layout, max_batch, rng)
        self.masks = self.layout.pack(connections)
        self.weights = ReferenceRSNN(self.layout).weights(connections)
        parts = self.layout.split(connections)
        self.w_rec = parts["recurrent"].astype(np.float32)
        del connections, parts
        self.constants = self.spec.kernel_constants(OBS_DIM)
        # A pool of observation batches that every implementation cycles through.
        self.observations = rng.standard_normal((16, max_batch, OBS_DIM)).astype(np.float32)

    def bitset(self, batch: int):
        network = BitsetRSNN(self.layout)
        masks = self.masks.take(np.arange(batch))
        state = network.initial_state(batch)
        out = np.empty((batch, N_OUTPUTS), dtype=np.float32)
        steps = _count()

        def call():
            network.step(masks, self.observations[next(steps) % 16, :batch], state, out=out)

        return call, state

    def float_reference(self, batch: int):
        network = ReferenceRSNN(self.layout)
        weights = ReferenceWeights(*(array[:batch] for array in self.weights))
        state = network.initial_state(batch)
        steps = _count()

        def call():
            network.step(weights, self.observations[next(steps) % 16, :batch], state)

        return call

    def dense_numba(self, batch: int):
        n = self.spec.n_neurons
        w_in, w_rec, w_out = self.weights.input[:batch], self.w_rec[:batch], self.weights.output[:batch]
        network_index = np.arange(batch, dtype=np.int64)
        v, i_syn, rate, spiked = (np.zeros((batch, n), dtype=np.float32) for _ in range(4))
        reset = np.zeros(batch, dtype=np.bool_)
        out = np.empty((batch, N_OUTPUTS), dtype=np.float32)
        advance = kernels.advance_dense if uses_parallel_kernel(batch) else kernels.advance_dense_serial
        steps = _count()

        def call():
            advance(
                self.observations[next(steps) % 16, :batch], w_in, w_rec, w_out, network_index,
                v, i_syn, rate, spiked, reset, self.constants, self.spec.n_substeps, self.spec.n_excitatory, out,
            )

        return call

    def serial_bitset_kernel(self, batch: int):
        """Build the arguments of ``kernels._advance_serial`` for ``batch`` fresh rows.

        Calling the kernel directly leaves out the Python checks of ``BitsetRSNN.step``.
        """
        masks = self.masks.take(np.arange(batch))
        state = BitsetRSNN(self.layout).initial_state(batch)
        arguments = (
            self.observations[0, :batch], masks.input, masks.excitatory, masks.inhibitory, masks.output,
            np.arange(batch, dtype=np.int64), state.v, state.i_syn, state.rate, state.spikes,
            np.zeros(batch, dtype=np.bool_), self.constants, self.spec.n_substeps, self.spec.n_excitatory,
            np.empty((batch, N_OUTPUTS), dtype=np.float32),
        )
        return arguments


def _count():
    count = 0
    while True:
        yield count
        count += 1


# Hopper-v5.


def hopper_step_seconds(n_steps: int, seed: int, clock) -> float:
    """Mean time of ``env.step`` with uniform random actions; resets are not timed."""
    import gymnasium as gym

    env = gym.make("Hopper-v5")
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    actions = rng.uniform(low, high, size=(n_steps, low.shape[0])).astype(np.float32)
    total = 0.0
    for action in actions:
        start = clock()
        _, _, terminated, truncated, _ = env.step(action)
        total += clock() - start
        if terminated or truncated:
            env.reset()
    env.close()
    return total / n_steps


# Popcount throughput.


@numba.njit(boundscheck=False)
def _popcount_sum(words, repeats):  # pragma: no cover - compiled
    """Sum the popcounts of ``words`` ``repeats`` times: a loop that does little else."""
    total = 0
    for _ in range(repeats):
        for i in range(words.shape[0]):
            total += popcount64(words[i])
    return total


@numba.njit(boundscheck=False)
def _recurrent_counts_repeated(spikes, excitatory_bits, inhibitory_bits, counts, repeats):  # pragma: no cover
    for _ in range(repeats):
        kernels._recurrent_counts(spikes, excitatory_bits, inhibitory_bits, counts)
    return counts[0]


def popcounts_per_network_step(spec: NetworkSpec) -> int:
    """Popcounts that the bitset kernel runs per network and step when no spike word is zero.

    Each recurrent pass covers two excitatory and two inhibitory words of every neuron.
    The kernel skips passes whose four spike words are all zero.
    """
    passes = (max(n_words(spec.n_excitatory), n_words(spec.n_inhibitory)) + 1) // 2
    return spec.n_substeps * spec.n_neurons * 4 * passes


def report_popcount_rates(timer: Timer, cells_serial: dict) -> None:
    """Print popcounts per second of one core: alone, in the recurrent loop, in the kernel."""
    words = np.random.default_rng(1).integers(0, 2**63, size=2048, dtype=np.uint64)
    repeats = 2000
    peak = words.shape[0] * repeats / timer.seconds_per_call(lambda: _popcount_sum(words, repeats))
    print(f"\npopcount-only loop, one core: {peak / 1e9:.2f} G popcounts/s")

    for n, (spec, masks, kernel_seconds) in cells_serial.items():
        # All spike words set, so no pass is skipped.
        spikes = np.full(n_words(spec.n_excitatory) + n_words(spec.n_inhibitory), 2**64 - 1, dtype=np.uint64)
        counts = np.empty(n, dtype=np.int32)
        loop_calls = 2000
        loop_seconds = timer.seconds_per_call(
            lambda: _recurrent_counts_repeated(spikes, masks.excitatory[0], masks.inhibitory[0], counts, loop_calls)
        )
        per_substep = popcounts_per_network_step(spec) // spec.n_substeps
        loop_rate = per_substep * loop_calls / loop_seconds
        kernel_rate = popcounts_per_network_step(spec) / kernel_seconds
        print(
            f"n_neurons={n}: recurrent popcount loop {loop_rate / 1e9:.2f} G/s "
            f"({100 * loop_rate / peak:.0f} % of the popcount-only loop); whole serial kernel at most "
            f"{kernel_rate / 1e9:.2f} G/s ({100 * kernel_rate / peak:.0f} %), "
            f"{1e6 * kernel_seconds:.2f} us per network step"
        )


# Reports.


def machine_description() -> str:
    model = "unknown CPU"
    flags = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            text = cpuinfo.read()
        name = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE).group(1)
        family = re.search(r"^cpu family\s*:\s*(\d+)$", text, re.MULTILINE).group(1)
        model_number = re.search(r"^model\s*:\s*(\d+)$", text, re.MULTILINE).group(1)
        model = f"{name} (family {family}, model {model_number})"
        flags = set(re.search(r"^flags\s*:\s*(.+)$", text, re.MULTILINE).group(1).split())
    except (OSError, AttributeError):
        pass
    popcount_flags = ", ".join(flag for flag in ("popcnt", "avx512_vpopcntdq") if flag in flags) or "none listed"
    return (
        f"{model}, {os.cpu_count()} logical CPUs, popcount flags: {popcount_flags}; "
        f"numba {numba.__version__} with {numba.get_num_threads()} threads, numpy {np.__version__}, "
        f"Python {platform.python_version()}"
    )


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def print_table(records: list[dict], hopper_us: float) -> None:
    table = {(r["n_neurons"], r["batch"], r["impl"]): r["us_per_network_step"] for r in records}
    print()
    print(
        "| n_neurons | B | bitset (us) | dense_numba (us) | float_reference (us) | "
        "fastest float / bitset | bitset / Hopper step |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in N_NEURONS:
        for batch in BATCHES:
            bitset = table[(n, batch, "bitset")]
            dense = table[(n, batch, "dense_numba")]
            reference = table[(n, batch, "float_reference")]
            print(
                f"| {n} | {batch} | {bitset:.2f} | {dense:.2f} | {reference:.1f} | "
                f"{min(dense, reference) / bitset:.1f}x | {100 * bitset / hopper_us:.1f} % |"
            )
    print(f"\nHopper-v5 env.step: {hopper_us:.1f} us")


def _record(impl: str, n_neurons: int, batch: int, seconds_per_call: float) -> dict:
    return {"impl": impl, "n_neurons": n_neurons, "batch": batch, "us_per_network_step": 1e6 * seconds_per_call / batch}


# Modes.


def run_benchmark(args: argparse.Namespace) -> None:
    timer = Timer(args.quick, args.cpu_time)
    rng = np.random.default_rng(args.seed)
    hopper_steps = 2000 if args.quick else 10000
    print(f"machine: {machine_description()}")
    print(f"clock: {'process CPU time, one thread' if args.cpu_time else 'wall clock'}")
    print(f"load average at start: {load_average()}")

    # Hopper is timed before and after the kernels, which shows drift from other load.
    hopper_before = hopper_step_seconds(hopper_steps, args.seed, timer.clock)
    records = []
    spike_fraction = {}
    cells_serial = {}
    for n in N_NEURONS:
        cell = Cell(n, max(BATCHES), rng)
        for batch in BATCHES:
            call, state = cell.bitset(batch)
            records.append(_record("bitset", n, batch, timer.seconds_per_call(call)))
            spike_fraction[(n, batch)] = float(state.fired(cell.spec.n_excitatory, cell.spec.n_inhibitory).mean())
            records.append(_record("dense_numba", n, batch, timer.seconds_per_call(cell.dense_numba(batch))))
            reference_seconds = timer.seconds_per_call(cell.float_reference(batch), warm_up=False)
            records.append(_record("float_reference", n, batch, reference_seconds))
            timings = ", ".join(f"{r['impl']} {r['us_per_network_step']:.2f} us" for r in records[-3:])
            print(f"n_neurons={n} B={batch}: {timings}", flush=True)
        arguments = cell.serial_bitset_kernel(64)
        serial_seconds = timer.seconds_per_call(lambda: kernels._advance_serial(*arguments)) / 64
        cells_serial[n] = (cell.spec, cell.masks.take(np.arange(1)), serial_seconds)
        del cell
    hopper_after = hopper_step_seconds(hopper_steps, args.seed + 1, timer.clock)
    hopper_us = 1e6 * (hopper_before + hopper_after) / 2
    records.append({"impl": "hopper_env_step", "n_neurons": None, "batch": 1, "us_per_network_step": hopper_us})

    print_table(records, hopper_us)
    print(f"Hopper-v5 env.step before the kernels {1e6 * hopper_before:.1f} us, after {1e6 * hopper_after:.1f} us")
    fractions = ", ".join(
        f"{n}: {100 * np.mean([f for (m, _), f in spike_fraction.items() if m == n]):.1f} %" for n in N_NEURONS
    )
    print(f"neurons spiking in the last substep of the bitset runs, by n_neurons: {fractions}")
    report_popcount_rates(timer, cells_serial)
    if numba.get_num_threads() > 1:
        print(f"numba threading layer: {numba.threading_layer()}")
    print(f"load average at end: {load_average()}")

    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(records, file, indent=1)
        print(f"wrote {len(records)} records to {args.json}")


def run_asm() -> None:
    """Count the popcount instructions of the bitset kernels, compiled in this process."""
    cell = Cell(256, 8, np.random.default_rng(0))
    for batch in (1, 8):
        arguments = cell.serial_bitset_kernel(batch)
        kernels._advance_serial(*arguments)
        kernels._advance_parallel(*arguments)
    _popcount_sum(np.zeros(8, dtype=np.uint64), 1)

    print(f"machine: {machine_description()}")
    for name, dispatcher in (
        ("_advance_serial", kernels._advance_serial),
        ("_advance_parallel", kernels._advance_parallel),
        ("popcount-only loop", _popcount_sum),
    ):
        asm = dispatcher.inspect_asm(dispatcher.signatures[0])
        found = {}
        for line in asm.splitlines():
            match = re.match(r"\s+(v?popcnt[a-z]*)\s+(.*)$", line)
            if match:
                # AT&T syntax: the last operand is the destination register.
                destination = match.group(2).split(",")[-1].strip()
                key = f"{match.group(1)} {_register_width(destination)}"
                found[key] = found.get(key, 0) + 1
        listing = ", ".join(f"{key}: {count}" for key, count in sorted(found.items())) or "no popcount instruction"
        print(f"{name}: {listing}")


def _register_width(register: str) -> str:
    widths = {"%zmm": "512-bit", "%ymm": "256-bit", "%xmm": "128-bit"}
    return f"({widths.get(register[:4], 'scalar')})"


def run_parallel_threshold(args: argparse.Namespace) -> None:
    """Time one call of the serial and the parallel bitset kernel for small batches."""
    timer = Timer(args.quick, cpu_time=False)
    rng = np.random.default_rng(args.seed)
    print(f"machine: {machine_description()}")
    print(f"load average at start: {load_average()}")
    print("| n_neurons | B | serial (us per call) | parallel (us per call) |")
    print("|---:|---:|---:|---:|")
    for n in N_NEURONS:
        cell = Cell(n, max(THRESHOLD_BATCHES), rng)
        for batch in THRESHOLD_BATCHES:
            arguments = cell.serial_bitset_kernel(batch)
            serial = timer.seconds_per_call(lambda: kernels._advance_serial(*arguments))
            parallel = timer.seconds_per_call(lambda: kernels._advance_parallel(*arguments))
            print(f"| {n} | {batch} | {1e6 * serial:.1f} | {1e6 * parallel:.1f} |", flush=True)
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    if ARGS.asm:
        run_asm()
    elif ARGS.parallel_threshold:
        run_parallel_threshold(ARGS)
    else:
        run_benchmark(ARGS)
