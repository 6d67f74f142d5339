"""Saving and loading SATR models and policies."""

import zipfile

import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from sb3_satr import SATR, RSNNPolicy

SMALL = dict(population_size=4, policy_kwargs=dict(n_neurons=16))


def rollout_actions(model_or_policy, observations):
    state = None
    actions = []
    starts = np.ones(1, dtype=bool)
    for observation in observations:
        action, state = model_or_policy.predict(observation[None], state=state, episode_start=starts, deterministic=True)
        starts = np.zeros(1, dtype=bool)
        actions.append(action)
    return np.concatenate(actions)


def observation_sequence(n_steps=40, seed=0):
    return np.random.default_rng(seed).normal(size=(n_steps, 4)).astype(np.float32)


@pytest.fixture
def trained():
    model = SATR("CartPole-v1", seed=0, **SMALL)
    model.learn(300)
    return model


def test_load_without_env_gives_same_actions(trained):
    trained.save("model")
    loaded = SATR.load("model")
    observations = observation_sequence()
    np.testing.assert_array_equal(rollout_actions(loaded, observations), rollout_actions(trained, observations))


def test_load_restores_probabilities_and_statistics(trained):
    trained.save("model")
    loaded = SATR.load("model")
    np.testing.assert_array_equal(loaded.policy.probabilities_array, trained.policy.probabilities_array)
    np.testing.assert_array_equal(loaded.policy.obs_mean.numpy(), trained.policy.obs_mean.numpy())
    np.testing.assert_array_equal(loaded.policy.obs_var.numpy(), trained.policy.obs_var.numpy())
    assert loaded.policy.obs_count.item() == trained.policy.obs_count.item()


def test_load_keeps_hyperparameters(trained):
    trained.save("model")
    loaded = SATR.load("model")
    assert loaded.population_size == 4
    assert loaded.policy.spec.n_neurons == 16
    assert loaded._n_generations == trained._n_generations
    assert loaded.num_timesteps == trained.num_timesteps


def test_load_with_env_continues_training(trained):
    trained.save("model")
    loaded = SATR.load("model", env=make_vec_env("CartPole-v1", n_envs=2, seed=1))
    before = loaded.policy.probabilities_array.copy()
    steps = loaded.num_timesteps
    loaded.learn(100, reset_num_timesteps=False)
    assert loaded.num_timesteps > steps
    assert not np.array_equal(loaded.policy.probabilities_array, before)


def test_save_load_continue_matches_uninterrupted():
    uninterrupted = SATR("CartPole-v1", update="ec", seed=3, **SMALL)
    uninterrupted.learn(200)
    interrupted = SATR("CartPole-v1", update="ec", seed=3, **SMALL)
    interrupted.learn(100)
    interrupted.save("half")
    resumed = SATR.load("half", env=make_vec_env("CartPole-v1", n_envs=1, seed=3))
    resumed.learn(200 - resumed.num_timesteps, reset_num_timesteps=False)
    assert resumed._n_generations == uninterrupted._n_generations
    np.testing.assert_array_equal(resumed.policy.probabilities_array, uninterrupted.policy.probabilities_array)
    np.testing.assert_array_equal(resumed.policy.obs_mean.numpy(), uninterrupted.policy.obs_mean.numpy())


def test_adam_state_saved_with_ec_update():
    model = SATR("CartPole-v1", update="ec", seed=0, **SMALL)
    model.learn(200)
    model.save("ec_model")
    loaded = SATR.load("ec_model")
    for key, value in model.search_update.get_state().items():
        np.testing.assert_array_equal(loaded.search_update.get_state()[key], value)


def test_load_with_other_update_warns_and_trains(trained):
    trained.save("model")
    with pytest.warns(UserWarning, match="saved with another update"):
        loaded = SATR.load("model", env=make_vec_env("CartPole-v1", n_envs=1, seed=1), update="ec")
    np.testing.assert_array_equal(loaded.policy.probabilities_array, trained.policy.probabilities_array)
    loaded.learn(100, reset_num_timesteps=False)
    assert int(loaded.search_update.get_state()["step_count"]) >= 1


def test_get_set_parameters_round_trip(trained):
    parameters = trained.get_parameters()
    fresh = SATR("CartPole-v1", seed=1, **SMALL)
    fresh.set_parameters(parameters)
    np.testing.assert_array_equal(fresh.policy.probabilities_array, trained.policy.probabilities_array)


def test_policy_save_and_load(trained):
    trained.policy.save("policy.pth")
    policy = RSNNPolicy.load("policy.pth")
    observations = observation_sequence()
    np.testing.assert_array_equal(rollout_actions(policy, observations), rollout_actions(trained.policy, observations))


@pytest.mark.parametrize("kept_fraction", [0.1, 0.5, 0.9])
def test_damaged_file_raises_clear_error(trained, kept_fraction):
    trained.save("model")
    with open("model.zip", "rb") as file:
        content = file.read()
    with open("damaged.zip", "wb") as file:
        file.write(content[: int(len(content) * kept_fraction)])
    with pytest.raises(ValueError, match="damaged"):
        SATR.load("damaged.zip")


def test_non_zip_file_raises_clear_error():
    with open("notes.zip", "w") as file:
        file.write("not a model")
    with pytest.raises(ValueError, match="zip-file"):
        SATR.load("notes.zip")


def test_foreign_model_file_raises(tmp_path):
    PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16).save("ppo_model")
    with pytest.raises(ValueError, match="RSNNPolicy"):
        SATR.load("ppo_model")


def test_state_dict_tensors_load_with_weights_only(trained):
    trained.save("model")
    with zipfile.ZipFile("model.zip") as archive:
        with archive.open("policy.pth") as file:
            state = th.load(file, weights_only=True)
    assert state["probabilities"].dtype == th.float64
