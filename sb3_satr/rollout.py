"""Fused per-step kernels of population evaluation.

One environment step of evaluation needs, for every busy sub-environment, a finiteness check
of its observation, one Welford update of its task's statistics, the normalised network
input, and, after the kernel, the scaled actions and the reward bookkeeping. In numpy these
are a dozen small-array calls of about a microsecond of dispatch each. Together they cost
roughly a tenth of a Hopper-v5 step (an estimate from timing the calls one by one). The
kernels below do each part in one call.

They repeat the numpy formulas of ``TaskStatistics.add``, ``normalize_observations`` and
``RSNNPolicy.actions_from_outputs`` operation for operation, in the same dtypes: float64 for
statistics and normalisation, float32 for actions. Their results are therefore bit-identical
to the numpy versions, which ``tests/test_rollout.py`` checks.
"""

from __future__ import annotations

import numpy as np

from sb3_satr._jit import njit_kernel
from sb3_satr.normalization import TaskStatistics


def statistics_buffers(statistics: TaskStatistics | None) -> tuple[bool, np.ndarray, np.ndarray, np.ndarray]:
    """Return the ``track_statistics`` flag and the ``count``, ``mean``, ``m2`` arguments of ``observe_rows``.

    Without statistics the arrays are empty placeholders of the dtypes the kernel was
    compiled for, so that both cases share one compiled signature.
    """
    if statistics is None:
        return False, np.zeros(0), np.zeros((0, 0)), np.zeros((0, 0))
    return True, statistics.count, statistics.mean, statistics.m2


@njit_kernel()
def observe_rows(
    observations: np.ndarray,
    row_task: np.ndarray,
    failed: np.ndarray,
    track_statistics: bool,
    count: np.ndarray,
    mean: np.ndarray,
    m2: np.ndarray,
    normalize: bool,
    obs_mean: np.ndarray,
    obs_std: np.ndarray,
    clip: float,
    network_input: np.ndarray,
) -> None:
    """Check, record and normalise one observation per row.

    :param observations: ``float64 (B, d)`` observations, one row per sub-environment.
    :param row_task: ``int64 (B,)`` task of each row, ``-1`` for a row that plays no task.
    :param failed: ``bool (n_tasks,)``; a task whose observation is not finite is set to True.
    :param track_statistics: Add the observation of each task that has not failed to
        ``count``, ``mean`` and ``m2`` (per-task Welford accumulators, float64).
    :param normalize: Write ``clip((x - obs_mean) / obs_std)`` into ``network_input``; else ``x``.
    :param network_input: ``float32 (B, d)`` output. A row whose observation is not finite
        gets the input of an all-zero observation.
    """
    n_rows, size = observations.shape
    for row in range(n_rows):
        finite = True
        for j in range(size):
            if not np.isfinite(observations[row, j]):
                finite = False
                break
        task = row_task[row]
        if task >= 0 and not finite:
            failed[task] = True
        if track_statistics and finite and task >= 0 and not failed[task]:
            new_count = count[task] + 1.0
            for j in range(size):
                x = observations[row, j]
                delta = x - mean[task, j]
                new_mean = mean[task, j] + delta / new_count
                m2[task, j] += delta * (x - new_mean)
                mean[task, j] = new_mean
            count[task] = new_count
        for j in range(size):
            x = observations[row, j] if finite else 0.0
            if normalize:
                z = (x - obs_mean[j]) / obs_std[j]
                x = min(max(z, -clip), clip)
            network_input[row, j] = np.float32(x)


@njit_kernel()
def scale_box_actions(outputs: np.ndarray, low: np.ndarray, high: np.ndarray, actions: np.ndarray) -> None:
    """Map ``float32 (B, k)`` outputs in ``[-1, 1]`` onto ``[low, high]``, all in float32.

    The same operations as the numpy formula of ``RSNNPolicy.actions_from_outputs``:
    clip to ``[-1, 1]``, ``low + (u + 1) * (0.5 * (high - low))``, clip to ``[low, high]``.
    """
    float32_one = np.float32(1.0)
    half = np.float32(0.5)
    n_rows, size = outputs.shape
    for row in range(n_rows):
        for j in range(size):
            unit = min(max(outputs[row, j], -float32_one), float32_one)
            scaled = low[j] + (unit + float32_one) * (half * (high[j] - low[j]))
            actions[row, j] = min(max(scaled, low[j]), high[j])


@njit_kernel()
def add_rewards(row_task: np.ndarray, rewards: np.ndarray, returns: np.ndarray, lengths: np.ndarray, failed: np.ndarray) -> None:
    """Add each busy row's ``float64`` reward to its task's return and count one step.

    A reward that is not finite fails its task.
    """
    for row in range(row_task.shape[0]):
        task = row_task[row]
        if task < 0:
            continue
        reward = rewards[row]
        returns[task] += reward
        lengths[task] += 1
        if not np.isfinite(reward):
            failed[task] = True
