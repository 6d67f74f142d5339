"""SATR on Hopper-v5 for a fixed wall-clock budget, with a deterministic evaluation curve.

Protocol: one process. Every ``--eval-interval`` seconds of training wall clock, the current
mode network plays ``--eval-episodes`` deterministic episodes on a separate Monitor-wrapped
env. Evaluation time is not counted in the wall clock.

    python benchmarks/hopper.py                       # 15 minutes, defaults of sb3-satr-train
    python benchmarks/hopper.py --minutes 2 --eval-interval 30

Writes ``hopper_seed{SEED}.csv`` and ``.json`` into ``--output-dir``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

import sb3_satr
from sb3_satr import SATR
from sb3_satr.train import DEFAULT_HYPERPARAMETERS


class WallClockEvaluation(BaseCallback):
    """Evaluates every ``interval`` seconds of training time and stops after ``budget`` seconds."""

    def __init__(self, eval_env, budget, interval, n_episodes):
        super().__init__()
        self.eval_env = eval_env
        self.budget = budget
        self.interval = interval
        self.n_episodes = n_episodes
        self.records = []
        self.training_seconds = 0.0
        self.last_resume = None
        self.next_evaluation = 0.0

    def _on_training_start(self):
        self.last_resume = time.perf_counter()

    def _on_step(self):
        elapsed = self.training_seconds + time.perf_counter() - self.last_resume
        if elapsed >= self.next_evaluation or elapsed >= self.budget:
            self.training_seconds = elapsed
            self.evaluate()
            self.next_evaluation += self.interval
            self.last_resume = time.perf_counter()
        return elapsed < self.budget

    def evaluate(self):
        returns, _ = evaluate_policy(
            self.model, self.eval_env, n_eval_episodes=self.n_episodes, deterministic=True, return_episode_rewards=True
        )
        record = {
            "wall_seconds": round(self.training_seconds, 2),
            "env_steps": int(self.model.num_timesteps),
            "generations": int(self.model._n_generations),
            "return_mean": float(np.mean(returns)),
            "return_std": float(np.std(returns)),
        }
        self.records.append(record)
        print(
            f"{record['wall_seconds']:8.1f} s  {record['env_steps']:>9,} steps  generation {record['generations']:>5}  "
            f"return {record['return_mean']:8.1f} +/- {record['return_std']:.1f}",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="Training wall-clock budget in minutes (default 15).")
    parser.add_argument("--eval-interval", type=float, default=60.0, help="Seconds of training between evaluations (default 60).")
    parser.add_argument("--eval-episodes", type=int, default=5, help="Deterministic episodes per evaluation (default 5).")
    parser.add_argument("--seed", type=int, default=0, help="Random seed (default 0).")
    parser.add_argument("--hyperparams", default=None, help="JSON object of SATR arguments overriding the defaults.")
    parser.add_argument("--output-dir", default="benchmarks/results", help="Folder for the CSV and JSON results.")
    args = parser.parse_args()

    hyperparameters = dict(DEFAULT_HYPERPARAMETERS["Hopper-v5"])
    if args.hyperparams:
        hyperparameters.update(json.loads(args.hyperparams))
    env = make_vec_env("Hopper-v5", n_envs=1, seed=args.seed)
    eval_env = make_vec_env("Hopper-v5", n_envs=1, seed=args.seed + 10_000)
    model = SATR(env, seed=args.seed, **hyperparameters)
    callback = WallClockEvaluation(eval_env, args.minutes * 60.0, args.eval_interval, args.eval_episodes)
    print(f"SATR on Hopper-v5 for {args.minutes} minutes with {hyperparameters}", flush=True)
    model.learn(10**12, callback=callback)

    os.makedirs(args.output_dir, exist_ok=True)
    stem = os.path.join(args.output_dir, f"hopper_seed{args.seed}")
    with open(stem + ".csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(callback.records[0]))
        writer.writeheader()
        writer.writerows(callback.records)
    with open(stem + ".json", "w") as file:
        json.dump(
            {
                "command": " ".join([sys.executable, *sys.argv]),
                "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
                "versions": {"sb3_satr": sb3_satr.__version__, "python": platform.python_version()},
                "hyperparameters": hyperparameters,
                "seed": args.seed,
                "curve": callback.records,
            },
            file,
            indent=2,
        )
    print(f"Wrote {stem}.csv and {stem}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
