"""RSNNPolicy: the SB3 recurrent predict contract, action mapping and inspection."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from sb3_satr import RSNNPolicy
from sb3_satr.network.reference import ReferenceRSNN
from sb3_satr.normalization import normalize_observations

OBS_SPACE = spaces.Box(-np.inf, np.inf, shape=(5,), dtype=np.float32)
ACTION_SPACE = spaces.Box(np.array([-2.0, 0.0], dtype=np.float32), np.array([2.0, 0.5], dtype=np.float32))


def make_policy(action_space=ACTION_SPACE, **kwargs):
    kwargs.setdefault("n_neurons", 32)
    policy = RSNNPolicy(OBS_SPACE, action_space, **kwargs)
    rng = np.random.default_rng(0)
    policy.set_probabilities_array(rng.uniform(0.05, 0.95, policy.layout.n_params))
    policy.set_observation_statistics(10, rng.normal(size=5), rng.uniform(0.5, 2.0, size=5))
    return policy


def observation_sequence(n_steps, batch, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(scale=2.0, size=(n_steps, batch, 5)).astype(np.float32)


def test_predict_single_observation_shape_and_dtype():
    policy = make_policy()
    action, state = policy.predict(observation_sequence(1, 1)[0, 0], deterministic=True)
    assert action.shape == (2,)
    assert action.dtype == np.float32
    assert state[0].shape == (1, 32)


def test_predict_batch_actions_within_bounds():
    policy = make_policy()
    state = None
    for observations in observation_sequence(20, 7):
        actions, state = policy.predict(observations, state=state, deterministic=True)
        assert actions.shape == (7, 2)
        assert np.all(actions >= ACTION_SPACE.low)
        assert np.all(actions <= ACTION_SPACE.high)


def test_deterministic_predict_matches_reference():
    policy = make_policy()
    reference = ReferenceRSNN(policy.layout)
    mode = policy.layout.join(policy.mode_masks())[None]
    ref_state = reference.initial_state(1)
    mean, std = policy.observation_normalizer()
    state = None
    for observations in observation_sequence(30, 1):
        actions, state = policy.predict(observations, state=state, deterministic=True)
        normalized = normalize_observations(observations, mean, std, policy.observation_clip)
        outputs = reference.step(mode, normalized, ref_state)
        np.testing.assert_allclose(actions, policy.actions_from_outputs(outputs), rtol=1e-5, atol=1e-6)


def test_episode_start_resets_only_flagged_rows():
    policy = make_policy()
    sequence = observation_sequence(12, 3)
    state = None
    for observations in sequence[:10]:
        _, state = policy.predict(observations, state=state, deterministic=True)
    restart = np.array([False, True, False])
    actions, _ = policy.predict(sequence[10], state=state, episode_start=restart, deterministic=True)
    fresh, _ = policy.predict(sequence[10][1], deterministic=True)
    continued, _ = policy.predict(sequence[10], state=state, deterministic=True)
    np.testing.assert_array_equal(actions[1], fresh)
    np.testing.assert_array_equal(actions[[0, 2]], continued[[0, 2]])


def test_predict_returns_new_state_arrays():
    policy = make_policy()
    observations = observation_sequence(2, 2)
    _, state = policy.predict(observations[0], deterministic=True)
    saved = tuple(array.copy() for array in state)
    episode_start = np.zeros(2, dtype=bool)
    _, new_state = policy.predict(observations[1], state=state, episode_start=episode_start, deterministic=True)
    for old, kept, new in zip(state, saved, new_state):
        assert new is not old
        np.testing.assert_array_equal(old, kept)
    episode_start[:] = True  # evaluate_policy rewrites this array after the call
    again, _ = policy.predict(observations[1], state=state, episode_start=np.zeros(2, dtype=bool), deterministic=True)
    first, _ = policy.predict(observations[1], state=saved, deterministic=True)
    np.testing.assert_array_equal(again, first)


def test_stochastic_network_fixed_within_episode():
    policy = make_policy()
    policy.seed_sampling(3)
    observations = observation_sequence(3, 2)
    _, state = policy.predict(observations[0])
    networks = state[4].copy()
    _, state = policy.predict(observations[1], state=state, episode_start=np.zeros(2, dtype=bool))
    np.testing.assert_array_equal(state[4], networks)
    _, state = policy.predict(observations[2], state=state, episode_start=np.array([True, False]))
    assert not np.array_equal(state[4][0], networks[0])
    np.testing.assert_array_equal(state[4][1], networks[1])


def test_stochastic_networks_differ_between_rows():
    policy = make_policy()
    policy.seed_sampling(4)
    _, state = policy.predict(observation_sequence(1, 2)[0])
    assert not np.array_equal(state[4][0], state[4][1])


def test_discrete_actions_are_argmax():
    policy = make_policy(action_space=spaces.Discrete(4))
    actions, _ = policy.predict(observation_sequence(1, 6)[0], deterministic=True)
    assert actions.shape == (6,)
    assert np.issubdtype(actions.dtype, np.integer)
    assert np.all((actions >= 0) & (actions < 4))


def test_non_finite_observation_raises():
    policy = make_policy()
    observation = np.array([0.0, np.nan, 0.0, 0.0, 0.0], dtype=np.float32)
    with pytest.raises(ValueError, match="NaN or infinite"):
        policy.predict(observation)


def test_wrong_state_shape_raises():
    policy = make_policy()
    _, state = policy.predict(observation_sequence(1, 2)[0])
    with pytest.raises(ValueError, match="state"):
        policy.predict(observation_sequence(1, 3)[0], state=state)


def test_connection_probabilities_shapes():
    policy = make_policy()
    probabilities = policy.connection_probabilities()
    assert probabilities["input"].shape == (10, 32)
    assert probabilities["recurrent"].shape == (32, 32)
    assert probabilities["output"].shape == (32, 2)
    assert all(array.dtype == np.float32 for array in probabilities.values())


def test_set_connection_probabilities_round_trip():
    policy = make_policy()
    probabilities = policy.connection_probabilities()
    probabilities["recurrent"][3, 4] = 0.875
    policy.set_connection_probabilities(probabilities)
    assert policy.connection_probabilities()["recurrent"][3, 4] == np.float32(0.875)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p.update(input=p["input"][:-1]), "shape"),
        (lambda p: p.update(output=p["output"] + 2.0), r"\[0, 1\]"),
        (lambda p: p.pop("recurrent"), "Missing"),
        (lambda p: p.update(extra=p["input"]), "Unknown"),
    ],
)
def test_set_connection_probabilities_rejects_bad_input(change, message):
    policy = make_policy()
    probabilities = policy.connection_probabilities()
    change(probabilities)
    with pytest.raises(ValueError, match=message):
        policy.set_connection_probabilities(probabilities)


def test_mode_masks_follow_probabilities():
    policy = make_policy()
    masks = policy.mode_masks()
    probabilities = policy.connection_probabilities()
    for name in ("input", "recurrent", "output"):
        assert masks[name].dtype == np.bool_
        np.testing.assert_array_equal(masks[name], probabilities[name] > 0.5)


def test_state_dict_holds_float_tensors():
    policy = make_policy()
    state = policy.state_dict()
    for key in ("probabilities", "obs_mean", "obs_var", "obs_count"):
        assert state[key].is_floating_point()


def test_unsupported_spaces_raise():
    with pytest.raises(ValueError, match="Box observation"):
        RSNNPolicy(spaces.Discrete(3), ACTION_SPACE)
    with pytest.raises(ValueError, match="Box and Discrete"):
        RSNNPolicy(OBS_SPACE, spaces.MultiDiscrete([2, 3]))
    with pytest.raises(ValueError, match="finite"):
        RSNNPolicy(OBS_SPACE, spaces.Box(-np.inf, np.inf, shape=(2,)))
    with pytest.raises(ValueError, match="Unknown RSNNPolicy arguments"):
        RSNNPolicy(OBS_SPACE, ACTION_SPACE, n_nerons=10)


def test_mode_network_is_cached_until_probabilities_change():
    policy = make_policy()
    first = policy.packed_mode_masks()
    assert policy.packed_mode_masks() is first
    probabilities = policy.probabilities_array.copy()
    probabilities[:] = 0.9
    policy.set_probabilities_array(probabilities)
    assert policy.packed_mode_masks() is not first


def test_real_env_observation_through_policy():
    env = gym.make("Pendulum-v1")
    policy = RSNNPolicy(env.observation_space, env.action_space, n_neurons=16)
    observation, _ = env.reset(seed=0)
    action, _ = policy.predict(observation, deterministic=True)
    assert env.action_space.contains(action)
