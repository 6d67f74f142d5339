"""Learning tests: SATR solves CartPole-v1 and improves on Hopper-v5 within small budgets."""

import numpy as np
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_satr import SATR

# About 3 minutes on 2 cores. CartPole-v1 counts as solved at a mean return of 475.
CARTPOLE_TIMESTEPS = 120_000
CARTPOLE_KWARGS = dict(population_size=16, policy_kwargs=dict(n_neurons=64))


def deterministic_return(model, env_id, seed, n_episodes=10):
    env = make_vec_env(env_id, n_envs=1, seed=seed)
    mean_return, _ = evaluate_policy(model, env, n_eval_episodes=n_episodes, deterministic=True)
    return mean_return


def test_cartpole_reaches_475():
    model = SATR("CartPole-v1", seed=0, **CARTPOLE_KWARGS)
    model.learn(CARTPOLE_TIMESTEPS)
    mean_return = deterministic_return(model, "CartPole-v1", seed=100)
    print(f"CartPole-v1 after {model.num_timesteps} steps: deterministic mean return {mean_return:.1f}")
    assert mean_return >= 475


def test_hopper_short_run_improves():
    """The population's mean return rises over a short Hopper-v5 run."""
    model = SATR("Hopper-v5", seed=0, population_size=16, policy_kwargs=dict(n_neurons=64))
    mean_returns = []
    while model.num_timesteps < 40_000:
        model.learn(1, reset_num_timesteps=False)  # one generation per call
        mean_returns.append(float(np.mean(model._last_fitness)))
    first, last = np.mean(mean_returns[:3]), np.mean(mean_returns[-3:])
    print(f"Hopper-v5: mean member return {first:.1f} in the first 3 generations, {last:.1f} in the last 3")
    assert len(mean_returns) >= 6
    assert last > first
