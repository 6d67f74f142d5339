"""SATR, SATR with the EC update, ARS and RecurrentPPO on MuJoCo v5, under one wall-clock budget.

Every run is one process limited to one thread (numba, torch and BLAS), so that ``--jobs 2``
runs two of them side by side on a 2-core machine without either borrowing the other's core.
A run builds its model and environments with rl-zoo3's ExperimentManager from the shipped
``zoo_configs/`` (VecNormalize included where a config sets ``normalize``), then trains until
``--minutes`` of training wall clock have passed. Every ``--eval-interval`` seconds of training
it pauses the clock and plays ``--eval-episodes`` deterministic episodes on a separate
evaluation env with fixed reset seeds.

Two studies share the runs:

- ``curves``: every algorithm of ``--algos`` on every env of ``--envs``, with its zoo config;
- ``population``: SATR and the EC update on Hopper-v5 at ``--population-sizes``. The
  runs at the population of the zoo config are those of ``curves``.

``--study custom --runs JSON`` runs a given list instead, for example SATR with another
``target_kl`` or population on HalfCheetah-v5.

``satr_ec`` is the zoo's ``satr`` entry with ``update='ec'`` (EC's own learning rate). One JSON
per run goes to ``<output-dir>/runs/``, which lets an interrupted study resume; ``report.py``
turns them into tables and plots.

    python benchmarks/compare.py --quick                  # about 4 minutes
    python benchmarks/compare.py --minutes 4 --jobs 2     # the study of docs/benchmarks.md
    python benchmarks/compare.py --study population --population-sizes 16 256
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ALGOS = ("satr", "satr_ec", "ars", "ppo_lstm")
THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class RunSpec:
    """One training run: an algorithm key of this script, an env id, a seed, and optional SATR overrides."""

    algo: str
    env: str
    seed: int
    population_size: int | None = None
    target_kl: float | None = None

    @property
    def group(self) -> str:
        """The name without the seed: runs of one group differ only in their seed."""
        population = "" if self.population_size is None else f"_pop{self.population_size}"
        target_kl = "" if self.target_kl is None else f"_kl{self.target_kl:g}"
        return f"{self.env}_{self.algo}{population}{target_kl}"

    @property
    def name(self) -> str:
        return f"{self.group}_seed{self.seed}"

    def zoo_algo_and_overrides(self) -> tuple[str, dict[str, Any]]:
        """Return rl-zoo's algorithm key and the hyperparameters that override its config."""
        overrides: dict[str, Any] = {}
        if self.population_size is not None:
            overrides["population_size"] = self.population_size
        if self.target_kl is not None:
            if not self.algo.startswith("satr"):
                raise ValueError(
                    f"target_kl is a SATR argument, but the run's algo is {self.algo!r}. "
                    "Remove target_kl from this run or use 'satr' or 'satr_ec'."
                )
            overrides["target_kl"] = self.target_kl
        if self.algo == "satr_ec":
            overrides["update"] = "ec"
            return "satr", overrides
        return self.algo, overrides


# --------------------------------------------------------------------------------------------
# One run, in its own process.
# --------------------------------------------------------------------------------------------


class TrainingClock:
    """Training wall clock that stops while the policy is being evaluated."""

    def __init__(self, budget: float, interval: float, evaluate):
        self.budget = budget
        self.interval = interval
        self.evaluate = evaluate
        self.spent = 0.0
        self.resumed_at: float | None = None
        self.next_evaluation = 0.0

    def start(self) -> None:
        if self.resumed_at is None:
            self.resumed_at = time.perf_counter()

    def elapsed(self) -> float:
        if self.resumed_at is None:
            return self.spent
        return self.spent + time.perf_counter() - self.resumed_at

    def tick(self) -> bool:
        """Evaluate when one is due; return False once the budget is spent."""
        elapsed = self.elapsed()
        if elapsed >= self.next_evaluation or elapsed >= self.budget:
            self.spent = elapsed
            self.evaluate(elapsed)
            while self.next_evaluation <= elapsed:
                self.next_evaluation += self.interval
            self.resumed_at = time.perf_counter()
        return elapsed < self.budget


def run_one(spec: RunSpec, minutes: float, eval_interval: float, eval_episodes: int, output: Path) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(1)

    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import sync_envs_normalization

    from sb3_satr.zoo import register
    from sb3_satr.zoo.experiment import ZooExperimentManager

    register()
    zoo_algo, overrides = spec.zoo_algo_and_overrides()
    log_folder = tempfile.mkdtemp(prefix="sb3_satr_compare_")
    namespace = argparse.Namespace(algo=zoo_algo, env=spec.env, seed=spec.seed, hyperparams=overrides)
    manager = ZooExperimentManager(
        namespace,
        zoo_algo,
        spec.env,
        log_folder,
        eval_freq=-1,
        hyperparams=overrides,
        seed=spec.seed,
        verbose=0,
        device="cpu",
    )
    model, saved_hyperparams = manager.setup_experiment()
    eval_env = manager.create_envs(1, eval_env=True, no_log=True)

    evaluations: list[dict[str, Any]] = []
    generations: list[dict[str, Any]] = []

    def evaluate(elapsed: float) -> None:
        sync_envs_normalization(model.get_env(), eval_env)
        eval_env.seed(spec.seed + 10_000)
        returns, lengths = evaluate_policy(
            model, eval_env, n_eval_episodes=eval_episodes, deterministic=True, return_episode_rewards=True
        )
        record = {
            "wall_seconds": round(elapsed, 3),
            "env_steps": int(model.num_timesteps),
            "return_mean": float(np.mean(returns)),
            "return_std": float(np.std(returns)),
            "returns": [float(value) for value in returns],
            "lengths": [int(value) for value in lengths],
        }
        evaluations.append(record)
        print(
            f"[{spec.name}] {elapsed:7.1f} s {record['env_steps']:>10,} steps  "
            f"return {record['return_mean']:8.1f} +/- {record['return_std']:.1f}",
            flush=True,
        )

    clock = TrainingClock(minutes * 60.0, eval_interval, evaluate)
    is_satr = zoo_algo == "satr"
    if is_satr:
        # The update reports its KL per connection under kl_reduction="mean", else summed.
        n_connections = int(model.policy.probabilities.numel())
        kl_divisor = 1 if getattr(model.search_update, "kl_reduction", "sum") == "mean" else n_connections
    evaluates_inside = zoo_algo != "ars"  # ARS loads candidate weights into its policy mid-update.

    class BudgetCallback(BaseCallback):
        def _on_training_start(self) -> None:
            clock.start()

        def _on_step(self) -> bool:
            if is_satr and self.model._n_generations > len(generations):
                diagnostics = self.model._last_diagnostics
                generations.append(
                    {
                        "generation": int(self.model._n_generations),
                        "env_steps": int(self.model.num_timesteps),
                        "wall_seconds": round(clock.elapsed(), 3),
                        "fitness_mean": float(np.mean(self.model._last_fitness)),
                        **{key: float(value) for key, value in diagnostics.items()},
                        "kl_per_connection": float(diagnostics["kl"]) / kl_divisor,
                    }
                )
            if evaluates_inside:
                return clock.tick()
            return clock.elapsed() < clock.budget

    callback = BudgetCallback()
    if evaluates_inside:
        model.learn(10**12, callback=callback)
    else:
        # sb3-contrib's ARS ignores a callback that returns False: train one update per call.
        reset = True
        while clock.tick():
            model.learn(1, callback=callback, reset_num_timesteps=reset)
            reset = False

    if not evaluations or evaluations[-1]["env_steps"] != model.num_timesteps:
        clock.spent = clock.elapsed()
        evaluate(clock.spent)

    # SATR's probabilities are a buffer, not a parameter, so they are counted apart.
    if is_satr:
        n_parameters = n_connections
    else:
        n_parameters = int(sum(parameter.numel() for parameter in model.policy.parameters()))
    result = {
        "spec": asdict(spec),
        "name": spec.name,
        "zoo_algo": zoo_algo,
        "overrides": overrides,
        "hyperparameters": {key: repr(value) for key, value in saved_hyperparams.items()},
        "n_parameters": n_parameters,
        "minutes": minutes,
        "eval_interval": eval_interval,
        "eval_episodes": eval_episodes,
        "training_seconds": round(clock.spent, 3),
        "env_steps": int(model.num_timesteps),
        "evaluations": evaluations,
        "generations": generations,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(".partial")
    partial.write_text(json.dumps(result, indent=1))
    os.replace(partial, output)
    model.get_env().close()
    eval_env.close()
    shutil.rmtree(log_folder, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# The study: a list of runs, executed --jobs at a time in child processes.
# --------------------------------------------------------------------------------------------


def planned_runs(args: argparse.Namespace) -> list[RunSpec]:
    runs: list[RunSpec] = []
    if args.study in ("curves", "all"):
        runs += [RunSpec(algo, env, seed) for env in args.envs for algo in args.algos for seed in args.seeds]
    if args.study in ("population", "all"):
        for population_size in args.population_sizes:
            for algo in ("satr", "satr_ec"):
                for seed in args.seeds:
                    # The zoo config's own population is the curves run: the same spec.
                    override = None if population_size == zoo_population("Hopper-v5") else population_size
                    runs.append(RunSpec(algo, "Hopper-v5", seed, override))
    if args.study == "custom":
        runs = [RunSpec(**fields) for fields in json.loads(args.runs)]
    unique: dict[str, RunSpec] = {}
    for spec in runs:
        unique.setdefault(spec.name, spec)
    return list(unique.values())


def zoo_population(env_id: str) -> int:
    """Population of the shipped ``zoo_configs/satr.yml`` entry of ``env_id``."""
    import yaml

    from sb3_satr.zoo.configs import shipped_config_path

    config = yaml.safe_load(shipped_config_path("satr").read_text())
    return int(config[env_id]["population_size"])


def child_environment() -> dict[str, str]:
    environment = dict(os.environ)
    for variable in THREAD_VARIABLES:
        environment[variable] = "1"
    environment["PYTHONUNBUFFERED"] = "1"
    return environment


def run_study(args: argparse.Namespace) -> int:
    runs_dir = Path(args.output_dir) / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    todo = [spec for spec in planned_runs(args) if not (args.resume and (runs_dir / f"{spec.name}.json").exists())]
    print(f"{len(todo)} runs of {args.minutes} minutes, {args.jobs} at a time, results in {runs_dir}", flush=True)

    pending = list(todo)
    active: list[tuple[RunSpec, subprocess.Popen]] = []
    failures: list[str] = []
    while pending or active:
        while pending and len(active) < args.jobs:
            spec = pending.pop(0)
            command = [
                sys.executable,
                __file__,
                "--_run",
                json.dumps(asdict(spec)),
                "--minutes",
                str(args.minutes),
                "--eval-interval",
                str(args.eval_interval),
                "--eval-episodes",
                str(args.eval_episodes),
                "--output-dir",
                args.output_dir,
            ]
            log = open(runs_dir / f"{spec.name}.log", "w")
            active.append((spec, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=child_environment())))
            print(f"started {spec.name}", flush=True)
        time.sleep(1.0)
        for spec, process in list(active):
            if process.poll() is not None:
                active.remove((spec, process))
                if process.returncode == 0:
                    print(f"finished {spec.name}", flush=True)
                else:
                    failures.append(spec.name)
                    print(f"FAILED {spec.name} (exit {process.returncode}), see {runs_dir / spec.name}.log", flush=True)
    if failures:
        print(f"{len(failures)} runs failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--study",
        choices=("curves", "population", "all", "custom"),
        default="all",
        help="Which runs (default all); custom runs the list given by --runs.",
    )
    parser.add_argument(
        "--runs",
        default="[]",
        help='JSON list of runs for --study custom, e.g. \'[{"algo": "satr", "env": "Hopper-v5", "seed": 0, "target_kl": 0.2}]\'.',
    )
    parser.add_argument("--algos", nargs="+", choices=ALGOS, default=list(ALGOS), help="Algorithms of the curves.")
    parser.add_argument("--envs", nargs="+", default=["Hopper-v5", "HalfCheetah-v5"], help="Env ids of the curves.")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="Seeds (default 0 1 2).")
    parser.add_argument("--population-sizes", nargs="+", type=int, default=[16, 64, 256], help="Populations of the study.")
    parser.add_argument("--minutes", type=float, default=4.0, help="Training wall clock per run (default 4).")
    parser.add_argument("--eval-interval", type=float, default=30.0, help="Training seconds between evaluations (default 30).")
    parser.add_argument("--eval-episodes", type=int, default=5, help="Deterministic episodes per evaluation (default 5).")
    parser.add_argument("--jobs", type=int, default=2, help="Runs at a time, each on one thread (default 2).")
    parser.add_argument("--resume", action="store_true", help="Skip runs whose JSON already exists.")
    parser.add_argument("--output-dir", default="benchmarks/results/compare", help="Folder of the results.")
    parser.add_argument("--quick", action="store_true", help="Hopper-v5, seed 0, 1 minute per run, populations 16 and 64.")
    parser.add_argument("--_run", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._run is not None:
        spec = RunSpec(**json.loads(args._run))
        output = Path(args.output_dir) / "runs" / f"{spec.name}.json"
        run_one(spec, args.minutes, args.eval_interval, args.eval_episodes, output)
        return 0

    if args.quick:
        args.envs, args.seeds, args.minutes, args.eval_interval = ["Hopper-v5"], [0], 1.0, 15.0
        args.population_sizes = [16, 64]
        if args.output_dir == parser.get_default("output_dir"):
            args.output_dir = "benchmarks/results/compare_quick"
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")

    started = time.time()
    status = run_study(args)
    from report import machine_and_versions  # benchmarks/ is on sys.path when this runs as a script

    manifest = {
        "command": " ".join([sys.executable, *sys.argv]),
        **machine_and_versions(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_minutes": round((time.time() - started) / 60.0, 2),
        "arguments": {key: value for key, value in vars(args).items() if not key.startswith("_")},
    }
    Path(args.output_dir, "manifest.json").write_text(json.dumps(manifest, indent=2))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
