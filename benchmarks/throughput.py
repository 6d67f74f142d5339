"""Training throughput of SATR against random-action stepping of the same environments.

Both are measured in one run, in one process, on the same VecEnv layout
(``make_vec_env(env_id, n_envs)``, so DummyVecEnv over Monitor):

- random: ``VecEnv.step`` with actions drawn from the action space, for ``--seconds``;
- SATR: ``learn()`` with the defaults of ``sb3-satr-train`` for ``--seconds`` of wall
  clock, counting the environment steps it took (population sampling, kernel calls,
  updates and logging included).

    python benchmarks/throughput.py --quick
    python benchmarks/throughput.py --env Hopper-v5 --n-envs 1 4 --seconds 60 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from sb3_satr import SATR
from sb3_satr.train import DEFAULT_HYPERPARAMETERS


class StopAfter(BaseCallback):
    """Stops training once ``seconds`` of wall clock have passed since the first step."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds
        self.start = None
        self.steps_at_start = 0

    def _on_step(self) -> bool:
        if self.start is None:
            self.start = time.perf_counter()
            self.steps_at_start = self.model.num_timesteps
        return time.perf_counter() - self.start < self.seconds


def random_steps_per_second(env_id: str, n_envs: int, seconds: float, seed: int) -> float:
    env = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    env.action_space.seed(seed)
    env.reset()
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        actions = np.stack([env.action_space.sample() for _ in range(n_envs)])
        env.step(actions)
        steps += n_envs
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def satr_steps_per_second(
    env_id: str, n_envs: int, seconds: float, seed: int, overrides: dict
) -> tuple[float, int]:
    env = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    model = SATR(env, seed=seed, **{**DEFAULT_HYPERPARAMETERS.get(env_id, {}), **overrides})
    model.learn(1)  # compiles the kernels and runs one generation outside the timed part
    callback = StopAfter(seconds)
    model.learn(10**12, callback=callback, reset_num_timesteps=False)
    elapsed = time.perf_counter() - callback.start
    steps = model.num_timesteps - callback.steps_at_start
    return steps / elapsed, model._n_generations


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Hopper-v5", help="Environment id (default Hopper-v5).")
    parser.add_argument("--n-envs", type=int, nargs="+", default=[1, 4], help="Sub-environment counts (default 1 4).")
    parser.add_argument("--seconds", type=float, default=60.0, help="Seconds per measurement (default 60).")
    parser.add_argument("--seed", type=int, default=0, help="Random seed (default 0).")
    parser.add_argument("--quick", action="store_true", help="20 seconds per measurement, n_envs 1 only.")
    parser.add_argument("--hyperparams", default="{}", help="JSON object of SATR arguments overriding the defaults.")
    parser.add_argument("--json", default=None, help="Write the records to this JSON file.")
    args = parser.parse_args()
    if args.quick:
        args.seconds = 20.0
        args.n_envs = [1]

    overrides = json.loads(args.hyperparams)
    records = []
    for n_envs in args.n_envs:
        random_rate = random_steps_per_second(args.env, n_envs, args.seconds, args.seed)
        satr_rate, generations = satr_steps_per_second(args.env, n_envs, args.seconds, args.seed, overrides)
        record = {
            "env": args.env,
            "n_envs": n_envs,
            "random_steps_per_second": round(random_rate, 1),
            "satr_steps_per_second": round(satr_rate, 1),
            "ratio": round(satr_rate / random_rate, 3),
            "satr_generations": generations,
            "hyperparameters": {**DEFAULT_HYPERPARAMETERS.get(args.env, {}), **overrides},
        }
        records.append(record)
        print(
            f"{args.env} n_envs={n_envs}: random {random_rate:,.0f} steps/s, SATR {satr_rate:,.0f} steps/s, "
            f"ratio {satr_rate / random_rate:.2f}",
            flush=True,
        )

    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as file:
            json.dump(
                {
                    "command": " ".join([sys.executable, *sys.argv]),
                    "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
                    "records": records,
                },
                file,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
