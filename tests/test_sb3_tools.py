"""SB3 tooling with SATR: evaluation, callbacks, tensorboard and custom environments."""

import glob
import os

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.callbacks import (
    CallbackList,
    CheckpointCallback,
    EvalCallback,
    ProgressBarCallback,
    StopTrainingOnMaxEpisodes,
    StopTrainingOnNoModelImprovement,
    StopTrainingOnRewardThreshold,
)
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_satr import SATR

SMALL = dict(population_size=4, policy_kwargs=dict(n_neurons=16))


class TargetEnv(gym.Env):
    """Custom env: reward is minus the distance of the action to a target; 20-step episodes."""

    observation_space = spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
    action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)

    def __init__(self):
        self.target = np.array([0.5, -0.25], dtype=np.float32)
        self.steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.steps = 0
        return self.np_random.uniform(-1, 1, size=3).astype(np.float32), {}

    def step(self, action):
        self.steps += 1
        reward = -float(np.linalg.norm(action - self.target))
        observation = self.np_random.uniform(-1, 1, size=3).astype(np.float32)
        return observation, reward, False, self.steps >= 20, {}


def test_evaluate_policy_with_states():
    model = SATR("CartPole-v1", seed=0, **SMALL)
    model.learn(200)
    env = make_vec_env("CartPole-v1", n_envs=2, seed=1)
    returns, lengths = evaluate_policy(model, env, n_eval_episodes=4, deterministic=True, return_episode_rewards=True)
    assert len(returns) == 4
    assert all(length >= 8 for length in lengths)


def test_eval_callback_stops_on_reward_threshold():
    model = SATR("CartPole-v1", seed=0, **SMALL)
    stop = StopTrainingOnRewardThreshold(reward_threshold=-1.0, verbose=0)
    evaluation = EvalCallback(
        make_vec_env("CartPole-v1", n_envs=1, seed=2), callback_on_new_best=stop, eval_freq=50, n_eval_episodes=1
    )
    model.learn(100_000, callback=evaluation)
    assert model.num_timesteps == 50
    assert evaluation.best_mean_reward > -1.0


def test_eval_callback_stops_without_improvement():
    model = SATR("CartPole-v1", seed=0, **SMALL)
    stop = StopTrainingOnNoModelImprovement(max_no_improvement_evals=1, min_evals=1, verbose=0)
    evaluation = EvalCallback(
        make_vec_env("CartPole-v1", n_envs=1, seed=2), callback_after_eval=stop, eval_freq=20, n_eval_episodes=1
    )
    model.learn(100_000, callback=evaluation)
    assert model.num_timesteps < 100_000
    assert model.num_timesteps % 20 == 0


def test_checkpoint_callback_writes_loadable_models():
    model = SATR("CartPole-v1", seed=0, **SMALL)
    model.learn(150, callback=CheckpointCallback(save_freq=50, save_path="checkpoints", name_prefix="satr"))
    files = sorted(glob.glob("checkpoints/satr_*_steps.zip"))
    assert len(files) >= 3
    loaded = SATR.load(files[-1])
    assert loaded.policy.layout.n_params == model.policy.layout.n_params


def test_stop_on_max_episodes():
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = SATR(env, seed=0, **SMALL)
    model.learn(100_000, callback=StopTrainingOnMaxEpisodes(max_episodes=3))
    finished = sum(1 for _ in model.ep_info_buffer)
    assert finished >= 3
    assert model.num_timesteps < 100_000


def test_progress_bar_and_callback_list(capsys):
    model = SATR("CartPole-v1", seed=0, **SMALL)
    checkpoint = CheckpointCallback(save_freq=10_000, save_path="checkpoints")
    model.learn(100, callback=CallbackList([checkpoint, ProgressBarCallback()]))
    assert model.num_timesteps >= 100
    assert checkpoint.n_calls == model.num_timesteps


def test_learn_progress_bar_flag():
    model = SATR("CartPole-v1", seed=0, **SMALL)
    model.learn(100, progress_bar=True)
    assert model.num_timesteps >= 100


def test_tensorboard_log_written():
    pytest.importorskip("tensorboard")
    model = SATR("CartPole-v1", seed=0, tensorboard_log="tb", **SMALL)
    model.learn(100, tb_log_name="run")
    event_files = glob.glob(os.path.join("tb", "run_1", "events.out.tfevents.*"))
    assert len(event_files) == 1
    assert os.path.getsize(event_files[0]) > 0


def test_custom_env_passing_check_env():
    env = TargetEnv()
    check_env(env)
    model = SATR(TargetEnv(), max_episode_steps=20, seed=0, **SMALL)
    model.learn(200)
    action, _ = model.predict(env.reset(seed=0)[0], deterministic=True)
    assert env.action_space.contains(action)
