"""Evaluation of population members inside a worker process or Ray actor.

A worker owns its own copies of the environment, rebuilt from the training env's
``EnvSpec``, and plays whole episodes (tasks) with the batched bitset kernel. Once per
generation it receives the connection probabilities, the seed of the population sample
and the frozen observation normaliser. With each batch of tasks it receives the task
indices, their members and their episode seeds. It rebuilds its members from the seed and
returns per-task returns, lengths, failure flags and observation statistics.

Each task resets its environment copy with its own seed and starts its network from the
zero state, and rewards are rounded to float32 before they are summed in float64, as
Stable-Baselines3's ``DummyVecEnv`` stores them. Per-task results therefore match the
in-process evaluation of ``SATR`` exactly, whichever worker runs the task and whatever
else that worker runs at the same time.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Optional

import gymnasium as gym
import numba
import numpy as np
from gymnasium.envs.registration import EnvSpec
from stable_baselines3.common.monitor import Monitor

from sb3_satr.network.batch import NetworkState
from sb3_satr.network.masks import PackedMasks
from sb3_satr.normalization import TaskStatistics
from sb3_satr.rollout import observe_rows, statistics_buffers
from sb3_satr.search import sample_population


@dataclass(frozen=True)
class WorkerSettings:
    """Settings a worker receives once, when it starts.

    :param env_spec: Spec of the training environment, without its ``Monitor`` wrapper.
    :param policy_class: The policy class; the worker uses its network and action mapping.
    :param policy_kwargs: ``policy._get_constructor_parameters()`` of the model's policy.
    :param envs_per_worker: Environment copies, and so episodes in flight, per worker.
    :param numba_threads: numba threads of the worker, or ``None`` to keep numba's default.
    """

    env_spec: EnvSpec
    policy_class: type
    policy_kwargs: dict[str, Any]
    envs_per_worker: int
    numba_threads: Optional[int]


@dataclass(frozen=True)
class GenerationJob:
    """Data every worker receives once per generation.

    :param generation: Index of the generation; batches of tasks carry it too.
    :param probabilities: ``float64 (d,)`` connection probabilities the population is sampled from.
    :param sample_seed: Seed of the population sample (see ``sample_population``).
    :param population_size: Number of members in the generation.
    :param obs_mean: ``float64 (obs_dim,)`` mean of the frozen observation normaliser.
    :param obs_std: ``float64 (obs_dim,)`` standard deviation of the frozen normaliser.
    """

    generation: int
    probabilities: np.ndarray
    sample_seed: int
    population_size: int
    obs_mean: np.ndarray
    obs_std: np.ndarray


@dataclass(frozen=True)
class TaskBatch:
    """A batch of tasks (one episode each) sent to one worker.

    :param generation: Generation the tasks belong to.
    :param tasks: ``int64 (k,)`` task indices within the generation.
    :param members: ``int64 (k,)`` member that plays each task.
    :param seeds: ``int64 (k,)`` seed of each task's ``env.reset``.
    """

    generation: int
    tasks: np.ndarray
    members: np.ndarray
    seeds: np.ndarray


@dataclass
class TaskBatchResult:
    """Results of a ``TaskBatch``, in the order of its tasks.

    ``obs_count``, ``obs_mean`` and ``obs_m2`` are the per-task Welford statistics of the
    observations each task acted on (``None`` when the policy does not normalise
    observations). ``final_infos`` contains the info dict of each episode's last step,
    including ``Monitor``'s ``"episode"`` entry. Times are in seconds: ``env_seconds`` in
    ``reset`` and ``step``, ``kernel_seconds`` in the network and the action mapping,
    ``busy_seconds`` for the whole batch, sampling included.
    """

    tasks: np.ndarray
    returns: np.ndarray
    lengths: np.ndarray
    failed: np.ndarray
    obs_count: Optional[np.ndarray]
    obs_mean: Optional[np.ndarray]
    obs_m2: Optional[np.ndarray]
    final_infos: list[dict[str, Any]]
    env_seconds: float
    kernel_seconds: float
    busy_seconds: float


@dataclass
class EpisodeResults:
    """Per-task outcome of ``play_episodes``."""

    returns: np.ndarray
    lengths: np.ndarray
    failed: np.ndarray
    statistics: Optional[TaskStatistics]
    final_infos: list[dict[str, Any]]
    env_seconds: float
    kernel_seconds: float


def member_fitness(
    returns: np.ndarray,
    lengths: np.ndarray,
    failed: np.ndarray,
    n_eval_episodes: int,
    alive_bonus_offset: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Return each member's fitness and failure flag from per-task results.

    Task ``t`` is episode ``t % n_eval_episodes`` of member ``t // n_eval_episodes``. The
    fitness is the mean over a member's episodes of ``return + alive_bonus_offset * length``,
    and NaN for a member with a failed episode.
    """
    shaped = returns + alive_bonus_offset * lengths
    member_failed = failed.reshape(-1, n_eval_episodes).any(axis=1)
    fitness = shaped.reshape(-1, n_eval_episodes).mean(axis=1)
    fitness[member_failed] = np.nan
    return fitness, member_failed


def make_worker_env(spec: EnvSpec) -> gym.Env:
    """Build one environment copy from ``spec`` and wrap it in ``Monitor``, as ``make_vec_env`` does."""
    return Monitor(gym.make(spec))


def play_episodes(
    policy: Any,
    envs: list[gym.Env],
    masks: PackedMasks,
    rows: np.ndarray,
    seeds: np.ndarray,
    obs_mean: np.ndarray,
    obs_std: np.ndarray,
) -> EpisodeResults:
    """Play one episode per task, stepping the networks of all busy environments in one kernel call.

    Task ``k`` resets a free environment with ``seeds[k]`` and runs network ``rows[k]`` of
    ``masks`` from the zero state until the episode ends. Tasks start in order as
    environments become free. A task whose observation or reward is not finite is marked
    failed: its network then gets zeros as input, it plays on to the end of the episode,
    and its later observations are left out of the statistics.

    :param policy: An ``RSNNPolicy``; its network, normaliser settings and action mapping are used.
    :param envs: Environment copies, at least one.
    :param masks: Packed masks of the networks the tasks run.
    :param rows: ``int64 (k,)`` row of ``masks`` for each task.
    :param seeds: ``int64 (k,)`` reset seed of each task.
    :param obs_mean: ``float64 (obs_dim,)`` normaliser mean, frozen for the generation.
    :param obs_std: ``float64 (obs_dim,)`` normaliser standard deviation.
    """
    network = policy.network
    n_tasks = len(seeds)
    n_envs = len(envs)
    obs_dtype = policy.observation_space.dtype

    returns = np.zeros(n_tasks, dtype=np.float64)
    lengths = np.zeros(n_tasks, dtype=np.int64)
    failed = np.zeros(n_tasks, dtype=np.bool_)
    statistics = TaskStatistics(n_tasks, policy.obs_dim) if policy.normalize_observations else None
    buffers = statistics_buffers(statistics)
    obs_mean = np.ascontiguousarray(obs_mean, dtype=np.float64)
    obs_std = np.ascontiguousarray(obs_std, dtype=np.float64)
    final_infos: list[dict[str, Any]] = [{} for _ in range(n_tasks)]

    state = network.initial_state(n_envs)
    observations = np.zeros((n_envs, policy.obs_dim), dtype=np.float64)
    slot_task = np.full(n_envs, -1, dtype=np.int64)
    reset = np.ones(n_envs, dtype=np.bool_)
    next_task = 0
    n_finished = 0
    env_seconds = 0.0
    kernel_seconds = 0.0

    while n_finished < n_tasks:
        started = time.perf_counter()
        for i in range(n_envs):
            if slot_task[i] >= 0 or next_task >= n_tasks:
                continue
            # The in-process path takes the reset observation as returned, without the
            # cast to the space's dtype that DummyVecEnv applies to step observations.
            observation, _ = envs[i].reset(seed=int(seeds[next_task]))
            observations[i] = np.asarray(observation).reshape(-1)
            slot_task[i] = next_task
            reset[i] = True
            next_task += 1
        env_seconds += time.perf_counter() - started

        started = time.perf_counter()
        active = np.flatnonzero(slot_task >= 0)
        tasks = slot_task[active]
        network_input = np.empty((active.size, policy.obs_dim), dtype=np.float32)
        observe_rows(
            observations[active],
            tasks,
            failed,
            *buffers,
            policy.normalize_observations,
            obs_mean,
            obs_std,
            policy.observation_clip,
            network_input,
        )
        outputs = _step_rows(network, masks, network_input, state, active, reset, rows[tasks])
        reset[active] = False
        actions = policy.actions_from_outputs(outputs)
        kernel_seconds += time.perf_counter() - started

        started = time.perf_counter()
        for k, i in enumerate(active):
            task = tasks[k]
            observation, reward, terminated, truncated, info = envs[i].step(actions[k])
            reward32 = np.float32(reward)
            returns[task] += np.float64(reward32)
            lengths[task] += 1
            if not np.isfinite(reward32):
                failed[task] = True
            if terminated or truncated:
                info = dict(info)
                info["TimeLimit.truncated"] = bool(truncated and not terminated)
                final_infos[task] = info
                slot_task[i] = -1
                n_finished += 1
            else:
                observations[i] = np.asarray(observation, dtype=obs_dtype).reshape(-1)
        env_seconds += time.perf_counter() - started

    return EpisodeResults(returns, lengths, failed, statistics, final_infos, env_seconds, kernel_seconds)


def _step_rows(
    network: Any,
    masks: PackedMasks,
    network_input: np.ndarray,
    state: NetworkState,
    active: np.ndarray,
    reset: np.ndarray,
    network_index: np.ndarray,
) -> np.ndarray:
    """Advance the state rows ``active`` only; the rows of idle environments are left as they are."""
    if active.size == state.batch_size:
        return network.step(masks, network_input, state, reset=reset, network_index=network_index)
    rows = NetworkState(*(array[active] for array in state))
    outputs = network.step(masks, network_input, rows, reset=reset[active], network_index=network_index)
    for array, updated in zip(state, rows):
        array[active] = updated
    return outputs


class EvaluationWorker:
    """The state of one worker: its policy, its environment copies and the current generation.

    Used by the processes of the ``"processes"`` backend and by the actors of the ``"ray"``
    backend.

    :param settings: Settings sent when the worker starts.
    """

    def __init__(self, settings: WorkerSettings) -> None:
        if settings.numba_threads is not None:
            numba.set_num_threads(max(1, min(int(settings.numba_threads), numba.config.NUMBA_NUM_THREADS)))
        self.policy = settings.policy_class(**settings.policy_kwargs)
        self.envs = [make_worker_env(settings.env_spec) for _ in range(settings.envs_per_worker)]
        env = self.envs[0]
        if env.observation_space != self.policy.observation_space or env.action_space != self.policy.action_space:
            raise ValueError(
                f"The environment rebuilt from spec {settings.env_spec.id!r} has observation space "
                f"{env.observation_space} and action space {env.action_space}, but the model expects "
                f"{self.policy.observation_space} and {self.policy.action_space}. Wrappers that are not part "
                "of the spec are lost in workers: register an environment that includes them."
            )
        self.job: Optional[GenerationJob] = None

    def describe(self) -> dict[str, Any]:
        """Process id, host name and numba thread count of this worker."""
        return {"pid": os.getpid(), "host": socket.gethostname(), "numba_threads": numba.get_num_threads()}

    def set_job(self, job: GenerationJob) -> None:
        self.job = job

    def run(self, batch: TaskBatch, job: Optional[GenerationJob] = None) -> TaskBatchResult:
        """Sample the batch's members and play its tasks.

        :param batch: The tasks to play.
        :param job: The generation of the batch; defaults to the last one given to ``set_job``.
        """
        started = time.perf_counter()
        if job is not None:
            self.job = job
        job = self.job
        if job is None or job.generation != batch.generation:
            raise RuntimeError(
                f"The worker received tasks of generation {batch.generation}, but its current generation "
                f"data is for generation {None if job is None else job.generation}."
            )
        members, rows = np.unique(batch.members, return_inverse=True)
        words = sample_population(job.probabilities, job.population_size, job.sample_seed, members=members)
        masks = self.policy.layout.pack_flat_words(words)
        episodes = play_episodes(
            self.policy, self.envs, masks, rows.astype(np.int64), batch.seeds, job.obs_mean, job.obs_std
        )
        statistics = episodes.statistics
        return TaskBatchResult(
            tasks=batch.tasks,
            returns=episodes.returns,
            lengths=episodes.lengths,
            failed=episodes.failed,
            obs_count=None if statistics is None else statistics.count,
            obs_mean=None if statistics is None else statistics.mean,
            obs_m2=None if statistics is None else statistics.m2,
            final_infos=episodes.final_infos,
            env_seconds=episodes.env_seconds,
            kernel_seconds=episodes.kernel_seconds,
            busy_seconds=time.perf_counter() - started,
        )

    def close(self) -> None:
        for env in self.envs:
            env.close()
