"""Generation time of SATR against the evaluation backend and the number of workers.

Every configuration trains the same seed, so it plays exactly the same episodes (the
fitness is checked to be identical). Only the time differs. For each configuration the
script runs one warm-up generation (worker start and numba compilation), then times
``--generations`` generations of ``learn``. It reports the median generation time, the
member steps per second (the same steps for every configuration), and the overhead of
parallel evaluation in two ways:

- ``overhead``: generation wall time of the evaluation minus the busy time of the
  busiest worker, as the worker measured it (messages, waits, uneven batches);
- ``1-step generation``: the whole generation time when every episode lasts one step,
  which is the fixed cost of a generation (sampling, messages, update).

Run from the repository root: ``python benchmarks/parallel.py --quick``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Any, Optional

# Ray 2.60 keeps a local instance on 127.0.0.1 only when this is 0 before ray is imported.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import numpy as np  # noqa: E402

from stable_baselines3.common.env_util import make_vec_env  # noqa: E402

from sb3_satr import SATR  # noqa: E402


@dataclass
class Measurement:
    label: str
    generation_seconds: float
    timed_seconds: float
    timed_steps: int
    evaluation_seconds: Optional[float]
    overhead_seconds: Optional[float]
    busy_seconds: Optional[list[float]]
    env_seconds: Optional[float]
    kernel_seconds: Optional[float]
    bytes_sent: Optional[int]
    bytes_received: Optional[int]
    short_generation_seconds: float
    fitness: np.ndarray


def time_generations(model: SATR, generations: int) -> tuple[list[float], list[int], list[Any]]:
    """Run one warm-up generation and ``generations`` timed ones, and return their times, steps and timings."""
    model.learn(1, reset_num_timesteps=False)
    times, steps, timings = [], [], []
    for _ in range(generations):
        before = model.num_timesteps
        started = time.perf_counter()
        model.learn(1, reset_num_timesteps=False)
        times.append(time.perf_counter() - started)
        steps.append(model.num_timesteps - before)
        timings.append(None if model._workers is None else model._workers.last_timing)
    return times, steps, timings


def make_env(env_id: str, n_envs: int, max_episode_steps: Optional[int] = None) -> Any:
    env_kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    return make_vec_env(env_id, n_envs=n_envs, seed=0, env_kwargs=env_kwargs)


def measure(
    label: str, env_id: str, common: dict[str, Any], generations: int, n_envs: int = 1, **kwargs: Any
) -> Measurement:
    model = SATR(make_env(env_id, n_envs), **common, **kwargs)
    try:
        times, steps, timings = time_generations(model, generations)
        fitness = model._last_fitness.copy()
    finally:
        model.close_workers()

    short = SATR(make_env(env_id, n_envs, max_episode_steps=1), **common, **kwargs)
    try:
        short_times, _, _ = time_generations(short, generations)
    finally:
        short.close_workers()

    # Every column describes the generation of median time (the middle one for odd counts).
    median = sorted(range(len(times)), key=times.__getitem__)[len(times) // 2]
    measured = timings[median]
    return Measurement(
        label=label,
        generation_seconds=times[median],
        timed_seconds=sum(times),
        timed_steps=sum(steps),
        evaluation_seconds=None if measured is None else measured.wall_seconds,
        overhead_seconds=None if measured is None else measured.overhead_seconds,
        busy_seconds=None if measured is None else [round(float(b), 3) for b in measured.busy_seconds],
        env_seconds=None if measured is None else measured.env_seconds,
        kernel_seconds=None if measured is None else measured.kernel_seconds,
        bytes_sent=None if measured is None else measured.bytes_sent,
        bytes_received=None if measured is None else measured.bytes_received,
        short_generation_seconds=statistics.median(short_times),
        fitness=fitness,
    )


def format_optional(value: Optional[float], digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(measurements: list[Measurement], member_steps: int) -> None:
    print(
        "| backend | generation (s) | member steps/s | evaluation (s) | overhead (s) | worker busy (s) "
        "| env / kernel (s) | sent / received (kB) | 1-step generation (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for m in measurements:
        env_kernel = "-" if m.env_seconds is None else f"{m.env_seconds:.2f} / {m.kernel_seconds:.2f}"
        traffic = "-" if m.bytes_sent is None else f"{m.bytes_sent / 1e3:.0f} / {m.bytes_received / 1e3:.0f}"
        busy = "-" if m.busy_seconds is None else ", ".join(f"{b:.2f}" for b in m.busy_seconds)
        print(
            f"| {m.label} | {m.generation_seconds:.2f} | {member_steps / m.timed_seconds:,.0f} | "
            f"{format_optional(m.evaluation_seconds, 2)} | {format_optional(m.overhead_seconds)} | {busy} | "
            f"{env_kernel} | {traffic} | {m.short_generation_seconds:.3f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="Hopper-v5", help="Environment id (default: Hopper-v5).")
    parser.add_argument("--population-size", type=int, default=64, help="Members per generation (default: 64).")
    parser.add_argument("--generations", type=int, default=5, help="Timed generations per configuration (default: 5).")
    parser.add_argument("--envs-per-worker", type=int, default=4, help="Environment copies per worker (default: 4).")
    parser.add_argument("--no-ray", action="store_true", help="Skip the Ray configuration.")
    parser.add_argument("--quick", action="store_true", help="Population 32 and 3 timed generations.")
    args = parser.parse_args()
    if args.quick:
        args.population_size = 32
        args.generations = 3

    common = dict(population_size=args.population_size, seed=0, alive_bonus_offset=-1.0)
    print(
        f"{args.env}, default network, population {args.population_size}, 1 episode per member, "
        f"{args.generations} timed generations after 1 warm-up; envs_per_worker={args.envs_per_worker}"
    )
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()}")

    configurations: list[tuple[str, dict[str, Any]]] = [
        ("in-process, 1 env", {}),
        (f"in-process, {args.envs_per_worker} envs", dict(n_envs=args.envs_per_worker)),
        ("processes, 1 worker", dict(n_workers=1, envs_per_worker=args.envs_per_worker)),
        ("processes, 2 workers", dict(n_workers=2, envs_per_worker=args.envs_per_worker)),
    ]
    ray = None
    if not args.no_ray:
        import ray

        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        configurations.append(("Ray, 2 workers (local head)", dict(n_workers=2, backend="ray", envs_per_worker=args.envs_per_worker)))

    measurements = []
    try:
        for label, kwargs in configurations:
            measurements.append(measure(label, args.env, common, args.generations, **kwargs))
            print(f"  done: {label}", flush=True)
    finally:
        if ray is not None:
            ray.shutdown()

    reference = measurements[0].fitness
    for m in measurements[1:]:
        if not np.array_equal(m.fitness, reference):
            raise AssertionError(f"{m.label} reached a different fitness than {measurements[0].label}.")
    print("fitness identical across configurations: yes")
    print(f"member steps per timed generation: {measurements[0].timed_steps / args.generations:,.0f}")
    print(f"load average after: {os.getloadavg()}")
    # Every configuration plays the same episodes. With one sub-environment the in-process
    # step count has no idle steps, so it is the member steps of the timed generations.
    print_table(measurements, member_steps=measurements[0].timed_steps)


if __name__ == "__main__":
    main()
