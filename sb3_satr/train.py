"""Command line: train SATR on one environment, save the model and evaluate the saved file.

Run ``sb3-satr-train --help`` for the options. Without options it trains Hopper-v5 with
the defaults below.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any, Optional, Sequence

DEFAULT_ENV = "Hopper-v5"
DEFAULT_TIMESTEPS = 1_000_000

# Settings used when an environment is trained from the command line. Keys are SATR
# constructor arguments; an environment without an entry uses the SATR defaults.
DEFAULT_HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    "Hopper-v5": {"population_size": 16, "alive_bonus_offset": -1.0},
    "Walker2d-v5": {"population_size": 16, "alive_bonus_offset": -1.0},
    "Humanoid-v5": {"population_size": 16, "alive_bonus_offset": -5.0},
    "CartPole-v1": {"population_size": 16},
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sb3-satr-train",
        description="Train a SATR spiking network policy, save it and evaluate the saved model.",
    )
    parser.add_argument("--env", default=DEFAULT_ENV, help=f"Gymnasium environment id (default {DEFAULT_ENV}).")
    parser.add_argument(
        "--timesteps", type=int, default=DEFAULT_TIMESTEPS, help=f"Environment steps to train (default {DEFAULT_TIMESTEPS:,})."
    )
    parser.add_argument("--seed", type=int, default=0, help="Random seed (default 0).")
    parser.add_argument("--n-envs", type=int, default=1, help="Number of sub-environments (default 1).")
    parser.add_argument(
        "--hyperparams",
        default=None,
        help='JSON object of SATR arguments that override the defaults, e.g. \'{"population_size": 32}\'.',
    )
    parser.add_argument("--output", default="satr_model", help="Path of the saved model, without .zip (default satr_model).")
    parser.add_argument("--eval-episodes", type=int, default=10, help="Deterministic evaluation episodes (default 10).")
    parser.add_argument("--tensorboard-log", default=None, help="Folder for tensorboard logs (default: none).")
    parser.add_argument("--no-progress-bar", action="store_true", help="Hide the progress bar.")
    parser.add_argument("--verbose", type=int, default=1, help="0 silent, 1 log every generation (default 1).")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.timesteps < 1:
        raise SystemExit(f"--timesteps must be positive, got {args.timesteps}.")
    if args.n_envs < 1:
        raise SystemExit(f"--n-envs must be positive, got {args.n_envs}.")
    hyperparameters = dict(DEFAULT_HYPERPARAMETERS.get(args.env, {}))
    if args.hyperparams:
        try:
            overrides = json.loads(args.hyperparams)
        except json.JSONDecodeError as error:
            raise SystemExit(f"--hyperparams is not valid JSON ({error}): {args.hyperparams!r}") from None
        if not isinstance(overrides, dict):
            raise SystemExit(f"--hyperparams must be a JSON object, got {args.hyperparams!r}.")
        hyperparameters.update(overrides)

    # Imported here so that --help returns without loading torch and numba.
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    from sb3_satr import SATR

    env = make_vec_env(args.env, n_envs=args.n_envs, seed=args.seed)
    model = SATR(env, seed=args.seed, verbose=args.verbose, tensorboard_log=args.tensorboard_log, **hyperparameters)
    print(f"Training SATR on {args.env} for {args.timesteps:,} steps with {hyperparameters or 'the defaults'}.")
    start = time.perf_counter()
    model.learn(args.timesteps, progress_bar=not args.no_progress_bar)
    train_seconds = time.perf_counter() - start
    model.save(args.output)
    path = args.output if args.output.endswith(".zip") else args.output + ".zip"
    print(f"Trained {model.num_timesteps:,} steps in {train_seconds:.0f} s; saved {os.path.abspath(path)}.")

    loaded = SATR.load(path)
    eval_env = make_vec_env(args.env, n_envs=1, seed=args.seed + 10_000)
    mean_return, std_return = evaluate_policy(
        loaded, eval_env, n_eval_episodes=args.eval_episodes, deterministic=True
    )
    print(
        f"Deterministic evaluation of the saved model over {args.eval_episodes} episodes: "
        f"return {mean_return:.1f} +/- {std_return:.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
