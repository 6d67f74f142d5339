"""Learning tests: SATR solves CartPole-v1 and improves on Hopper-v5 within small budgets."""

import numpy as np
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_satr import SATR

# About 3 minutes on 2 cores. CartPole-v1 counts as solved at a mean return of 475.
CARTPOLE_TIMESTEPS = 150_000
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
    model = SATR("Hopper-v5", seed=0, population_size=16, alive_bonus_offset=-1.0, policy_kwargs=dict(n_neurons=64))
    before = deterministic_return(model, "Hopper-v5", seed=100, n_episodes=3)
    model.learn(20_000)
    after = deterministic_return(model, "Hopper-v5", seed=100, n_episodes=3)
    print(f"Hopper-v5: deterministic return {before:.1f} before, {after:.1f} after {model.num_timesteps} steps")
    assert np.isfinite(after)
    assert after > before
