"""The fused per-step kernels of evaluation against the numpy formulas they replace."""

import numpy as np
import pytest

from sb3_satr.normalization import TaskStatistics, normalize_observations
from sb3_satr.rollout import add_rewards, observe_rows, scale_box_actions


def numpy_observe(observations, row_task, failed, statistics, normalize, mean, std, clip):
    """The per-step code of SATR's evaluation loop before the kernels, kept as the reference."""
    active = row_task >= 0
    finite = np.isfinite(observations).all(axis=1)
    failed[row_task[active & ~finite]] = True
    observations = np.where(finite[:, None], observations, 0.0)
    scored = active & finite
    scored[active] &= ~failed[row_task[active]]
    if statistics is not None:
        statistics.add(row_task[scored], observations[scored])
    if normalize:
        return normalize_observations(observations, mean, std, clip)
    return observations.astype(np.float32)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("track", [True, False])
def test_observe_rows_matches_numpy_bit_for_bit(normalize, track):
    rng = np.random.default_rng(3)
    n_envs, size, n_tasks = 5, 11, 9
    mean = rng.normal(size=size)
    std = rng.uniform(0.1, 3.0, size=size)
    reference_failed = np.zeros(n_tasks, dtype=np.bool_)
    reference_failed[4] = True
    failed = reference_failed.copy()
    reference = TaskStatistics(n_tasks, size) if track else None
    fused = TaskStatistics(n_tasks, size)
    for step in range(40):
        observations = rng.normal(scale=10.0, size=(n_envs, size))
        if step % 7 == 3:
            observations[1, 2] = np.nan
        if step % 11 == 5:
            observations[3, 0] = np.inf
        row_task = rng.permutation(n_tasks)[:n_envs].astype(np.int64)
        row_task[rng.random(n_envs) < 0.2] = -1
        expected = numpy_observe(observations, row_task, reference_failed, reference, normalize, mean, std, 5.0)
        network_input = np.empty((n_envs, size), dtype=np.float32)
        observe_rows(
            observations, row_task, failed, track, fused.count, fused.mean, fused.m2, normalize, mean, std, 5.0, network_input
        )
        assert network_input.tobytes() == expected.tobytes()
        assert np.array_equal(failed, reference_failed)
    if track:
        assert fused.count.tobytes() == reference.count.tobytes()
        assert fused.mean.tobytes() == reference.mean.tobytes()
        assert fused.m2.tobytes() == reference.m2.tobytes()
    else:
        assert not fused.count.any()


def test_observe_rows_non_finite_row():
    observations = np.array([[1.0, np.nan], [2.0, 3.0]])
    failed = np.zeros(2, dtype=np.bool_)
    statistics = TaskStatistics(2, 2)
    network_input = np.empty((2, 2), dtype=np.float32)
    observe_rows(
        observations, np.array([0, 1]), failed, True, statistics.count, statistics.mean, statistics.m2,
        False, np.zeros(2), np.ones(2), 5.0, network_input,
    )
    assert failed.tolist() == [True, False]
    assert network_input[0].tolist() == [0.0, 0.0]
    assert statistics.count.tolist() == [0.0, 1.0]


def test_scale_box_actions_matches_numpy():
    rng = np.random.default_rng(4)
    outputs = rng.uniform(-1.5, 1.5, size=(64, 6)).astype(np.float32)
    low = rng.uniform(-3.0, -0.1, size=6).astype(np.float32)
    high = rng.uniform(0.1, 3.0, size=6).astype(np.float32)
    unit = np.minimum(np.maximum(outputs, -1.0), 1.0)
    expected = np.minimum(np.maximum(low + (unit + 1.0) * (0.5 * (high - low)), low), high)
    actions = np.empty_like(outputs)
    scale_box_actions(outputs, low, high, actions)
    assert expected.dtype == np.float32
    assert actions.tobytes() == expected.tobytes()


def test_add_rewards_busy_rows():
    returns = np.zeros(3)
    lengths = np.zeros(3, dtype=np.int64)
    failed = np.zeros(3, dtype=np.bool_)
    add_rewards(np.array([2, -1, 0]), np.array([1.5, 7.0, np.inf]), returns, lengths, failed)
    assert returns[2] == 1.5
    assert returns[1] == 0.0
    assert lengths.tolist() == [1, 0, 1]
    assert failed.tolist() == [True, False, False]
