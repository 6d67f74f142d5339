"""Running observation statistics with exact, order-fixed merges."""

from __future__ import annotations

import numpy as np


class ObservationStatistics:
    """Count, mean and sum of squared deviations (``m2``) of observation vectors, in float64.

    Statistics of separate chunks combine with Chan et al.'s parallel update
    (``merge``). The result of a sequence of merges depends on their order in the last
    bits, so callers merge in a fixed order (member by member) to get identical results
    whatever the number of workers.

    :param size: Length of an observation vector.
    """

    def __init__(self, size: int) -> None:
        self.count = 0.0
        self.mean = np.zeros(size, dtype=np.float64)
        self.m2 = np.zeros(size, dtype=np.float64)

    @property
    def var(self) -> np.ndarray:
        """Population variance; ones before any observation."""
        if self.count == 0:
            return np.ones_like(self.mean)
        return self.m2 / self.count

    def merge(self, count: float, mean: np.ndarray, m2: np.ndarray) -> None:
        """Fold in the statistics of another chunk of ``count`` observations."""
        if count == 0:
            return
        if self.count == 0:
            self.count = float(count)
            self.mean = np.array(mean, dtype=np.float64)
            self.m2 = np.array(m2, dtype=np.float64)
            return
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + m2 + delta * delta * (self.count * count / total)
        self.count = total


class TaskStatistics:
    """Per-task Welford accumulators for a generation, one row per evaluation task.

    Each task (one episode of one member) accumulates its own observations in the order
    it saw them, so a task's statistics do not depend on which sub-environment or worker
    ran it.

    :param n_tasks: Number of tasks in the generation.
    :param size: Length of an observation vector.
    """

    def __init__(self, n_tasks: int, size: int) -> None:
        self.count = np.zeros(n_tasks, dtype=np.float64)
        self.mean = np.zeros((n_tasks, size), dtype=np.float64)
        self.m2 = np.zeros((n_tasks, size), dtype=np.float64)

    def add(self, tasks: np.ndarray, observations: np.ndarray) -> None:
        """Add one observation to each task in ``tasks`` (distinct task indices)."""
        if tasks.size == 0:
            return
        observations = np.asarray(observations, dtype=np.float64)
        count = self.count[tasks] + 1.0
        mean = self.mean[tasks]
        delta = observations - mean
        mean = mean + delta / count[:, None]
        self.m2[tasks] += delta * (observations - mean)
        self.mean[tasks] = mean
        self.count[tasks] = count

    def merge_into(self, statistics: ObservationStatistics, tasks: np.ndarray) -> None:
        """Merge the rows ``tasks`` into ``statistics``, in the order given."""
        for task in tasks:
            statistics.merge(self.count[task], self.mean[task], self.m2[task])


def normalize_observations(
    observations: np.ndarray, mean: np.ndarray, std: np.ndarray, clip: float
) -> np.ndarray:
    """Return ``clip((observations - mean) / std, -clip, clip)`` as float32 ``(B, d)``."""
    normalized = (np.asarray(observations, dtype=np.float64) - mean) / std
    # Plain ufuncs instead of np.clip: this runs once per environment step in training.
    return np.minimum(np.maximum(normalized, -clip), clip).astype(np.float32)
