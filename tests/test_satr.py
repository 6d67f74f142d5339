"""SATR as an SB3 algorithm: construction, learn(), callbacks, logging and bad input."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from sb3_satr import SATR, RSNNPolicy

SMALL = dict(population_size=4, policy_kwargs=dict(n_neurons=16))


class CountingCallback(BaseCallback):
    """Counts on_step calls and stops after ``stop_after`` of them, if set."""

    def __init__(self, stop_after=None):
        super().__init__()
        self.stop_after = stop_after
        self.calls = 0
        self.seen_keys = set()

    def _on_step(self):
        self.calls += 1
        self.seen_keys.update(self.locals)
        return self.stop_after is None or self.calls < self.stop_after


class NaNObservation(gym.Wrapper):
    """Returns a NaN observation at step ``at_step`` of every ``every``-th episode.

    A reset before any step does not start a new episode in this count.
    """

    def __init__(self, env, at_step=3, every=2):
        super().__init__(env)
        self.at_step = at_step
        self.every = every
        self.episode = -1
        self.step_count = 0

    def reset(self, **kwargs):
        if self.episode < 0 or self.step_count > 0:
            self.episode += 1
        self.step_count = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.step_count += 1
        if self.episode % self.every == 0 and self.step_count == self.at_step:
            observation = np.full_like(observation, np.nan)
        return observation, reward, terminated, truncated, info


class EndlessEnv(gym.Env):
    """A valid env whose episodes never end."""

    observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        return np.zeros(2, dtype=np.float32), 1.0, False, False, {}


def test_constructor_forms_build_same_policy():
    env = make_vec_env("CartPole-v1", n_envs=1)
    for model in (
        SATR("CartPole-v1", **SMALL),
        SATR(env, policy=RSNNPolicy, **SMALL),
        SATR("RSNNPolicy", env, **SMALL),
        SATR(policy="RSNNPolicy", env=env, **SMALL),
        SATR(gym.make("CartPole-v1"), **SMALL),
    ):
        assert isinstance(model.policy, RSNNPolicy)
        assert model.policy.layout.n_params == 2 * 4 * 16 + 16 * 16 + 16 * 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(population_size=1), "population_size"),
        (dict(population_size=2.5), "population_size"),
        (dict(n_eval_episodes=0), "n_eval_episodes"),
        (dict(update="adam"), "update"),
        (dict(alive_bonus_offset=float("nan")), "alive_bonus_offset"),
        (dict(probability_eps=0.6), "probability_eps"),
        (dict(learning_rate=-1.0), "learning_rate"),
        (dict(line_search_max_iter=-1), "line_search_max_iter"),
        (dict(max_episode_steps=0), "max_episode_steps"),
        (dict(policy_kwargs=dict(n_neurons=0)), "n_neurons"),
        (dict(target_kl=-0.1), "target_kl"),
    ],
)
def test_invalid_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SATR("CartPole-v1", **kwargs)


def test_device_other_than_cpu_warns():
    with pytest.warns(UserWarning, match="device='cuda' is ignored"):
        model = SATR("CartPole-v1", device="cuda", **SMALL)
    assert str(model.device) == "cpu"


def test_unsupported_spaces_raise():
    env = DummyVecEnv([lambda: gym.wrappers.TimeLimit(EndlessEnv(), 10)])
    env.action_space = spaces.MultiDiscrete([2, 2])
    env.envs[0].action_space = spaces.MultiDiscrete([2, 2])
    with pytest.raises(Exception, match="MultiDiscrete|not supported"):
        SATR(env, **SMALL)


def test_env_without_time_limit_raises():
    with pytest.raises(ValueError, match="no time limit"):
        SATR(EndlessEnv(), **SMALL)


def test_max_episode_steps_caps_endless_env():
    model = SATR(EndlessEnv(), max_episode_steps=7, **SMALL)
    model.learn(1)
    assert model.num_timesteps == 4 * 7
    assert all(info["l"] == 7 for info in model.ep_info_buffer)


def test_timesteps_count_every_vecenv_step():
    env = make_vec_env("CartPole-v1", n_envs=3, seed=0)
    model = SATR(env, seed=0, **SMALL)
    callback = CountingCallback()
    model.learn(200, callback=callback)
    assert model.num_timesteps == 3 * callback.calls
    assert model.num_timesteps >= 200


def test_callback_locals_follow_sb3():
    model = SATR("CartPole-v1", seed=0, **SMALL)
    callback = CountingCallback()
    model.learn(50, callback=callback)
    assert {"new_obs", "rewards", "dones", "infos"} <= callback.seen_keys


def test_callback_stop_leaves_model_unchanged():
    model = SATR("CartPole-v1", seed=0, **SMALL)
    before = model.policy.probabilities_array.copy()
    statistics = model.policy.obs_count.item()
    callback = CountingCallback(stop_after=5)
    model.learn(10_000, callback=callback)
    assert callback.calls == 5
    assert model.num_timesteps == 5
    np.testing.assert_array_equal(model.policy.probabilities_array, before)
    assert model.policy.obs_count.item() == statistics


def test_learn_updates_distribution_and_statistics():
    model = SATR("CartPole-v1", seed=0, **SMALL)
    before = model.policy.probabilities_array.copy()
    model.learn(300)
    assert not np.array_equal(model.policy.probabilities_array, before)
    assert model.policy.obs_count.item() > 0
    assert np.all(model.policy.probabilities_array >= 1e-3)
    assert np.all(model.policy.probabilities_array <= 1 - 1e-3)


def test_logger_records_sb3_keys():
    model = SATR("CartPole-v1", seed=0, **SMALL)
    model.set_logger(configure(None, ["csv"]))
    recorded = {}
    original_dump = model.logger.dump

    def capture(step=0):
        recorded.update(model.logger.name_to_value)
        original_dump(step)

    model.logger.dump = capture
    model.learn(100)
    for key in (
        "rollout/ep_rew_mean",
        "rollout/ep_len_mean",
        "rollout/fitness_mean",
        "rollout/fitness_std",
        "rollout/fitness_max",
        "train/signal_energy",
        "train/noise_energy",
        "train/snr",
        "train/step_size",
        "train/kl",
        "train/entropy",
        "train/fraction_at_bounds",
        "train/density",
        "train/line_search_steps",
        "train/is_line_search_success",
        "time/fps",
    ):
        assert key in recorded, key


def test_continue_with_reset_num_timesteps_false():
    model = SATR("CartPole-v1", seed=0, **SMALL)
    model.learn(100)
    first = model.num_timesteps
    generations = model._n_generations
    model.learn(100, reset_num_timesteps=False)
    assert model.num_timesteps >= first + 100
    assert model._n_generations > generations


def test_continue_with_schedule_after_overshoot():
    model = SATR("CartPole-v1", update="ec", learning_rate=lambda progress: 0.15 * progress, seed=0, **SMALL)
    model.learn(100)
    assert model.num_timesteps > 100  # the last generation ran past the budget
    model.learn(100, reset_num_timesteps=False)
    assert 0.0 < model.search_update.learning_rate <= 0.15


@pytest.mark.parametrize("update", ["ec", "natural"])
def test_other_updates_train_with_schedule(update):
    model = SATR("CartPole-v1", update=update, learning_rate=lambda progress: 0.1 * progress, seed=0, **SMALL)
    model.learn(200)
    assert 0.0 <= model.search_update.learning_rate <= 0.1


def test_vecnormalize_turns_off_internal_normalization():
    env = VecNormalize(make_vec_env("CartPole-v1", n_envs=2, seed=0), norm_reward=True)
    with pytest.warns(UserWarning, match="VecNormalize"):
        model = SATR(env, seed=0, **SMALL)
    assert model.policy.normalize_observations is False
    model.learn(100)
    assert model.policy.obs_count.item() == 0


def test_nan_observation_fails_member_and_spares_statistics():
    env = DummyVecEnv([lambda: NaNObservation(gym.make("CartPole-v1"), at_step=3, every=2)])
    model = SATR(env, seed=0, **SMALL)
    with pytest.warns(RuntimeWarning, match="non-finite observation"):
        model.learn(1)
    assert model._n_failed_members == 2
    assert np.all(np.isfinite(model.policy.obs_mean.numpy()))
    assert np.all(np.isfinite(model.policy.obs_var.numpy()))
    assert np.all(np.isfinite(model.policy.probabilities_array))


def test_member_fitness_independent_of_n_envs():
    fitness = []
    for n_envs in (1, 3):
        env = make_vec_env("CartPole-v1", n_envs=n_envs, seed=0)
        model = SATR(env, seed=5, **SMALL)
        model.learn(1)
        fitness.append(np.sort(model._last_fitness))
        fitness.append(model.policy.probabilities_array.copy())
    np.testing.assert_array_equal(fitness[0], fitness[2])
    np.testing.assert_array_equal(fitness[1], fitness[3])


def test_learn_without_env_raises():
    model = SATR("CartPole-v1", **SMALL)
    model.save("model")
    loaded = SATR.load("model")
    with pytest.raises(ValueError, match="needs an environment"):
        loaded.learn(10)


def test_no_warning_for_default_construction():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SATR("CartPole-v1", **SMALL)
