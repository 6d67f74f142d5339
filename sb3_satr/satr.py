"""SATR: Signal-Adaptive Trust Regions for binary recurrent spiking network policies."""

from __future__ import annotations

import math
import pickle
import sys
import time
import warnings
import zipfile
from typing import Any, ClassVar, Literal, Optional, TypeVar, Union

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from gymnasium.wrappers import TimeLimit
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import safe_mean
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecNormalize

from sb3_satr.evaluation import GenerationJob, WorkerSettings, member_fitness
from sb3_satr.network.masks import PackedMasks
from sb3_satr.normalization import ObservationStatistics, TaskStatistics
from sb3_satr.rollout import add_rewards, observe_rows, statistics_buffers
from sb3_satr.parallel import (
    BackendName,
    WorkerBackend,
    make_backend,
    resolve_backend,
    worker_env_spec,
)
from sb3_satr.policies import RSNNPolicy
from sb3_satr.search import (
    BernoulliUpdate,
    ECUpdate,
    NaturalGradientUpdate,
    SATRUpdate,
    sample_population,
)

SelfSATR = TypeVar("SelfSATR", bound="SATR")

UpdateName = Literal["satr", "ec", "natural"]


class PopulationResult:
    """Outcome of evaluating one generation.

    :param fitness: ``(n,)`` mean shaped return per member, NaN for failed members.
    :param failed: ``(n,)`` members that saw a non-finite observation or reward.
    :param episode_returns: ``(n, n_eval_episodes)`` raw returns.
    :param episode_lengths: ``(n, n_eval_episodes)`` episode lengths.
    :param statistics: Per-task observation statistics, or ``None`` without normalisation.
    """

    def __init__(self, fitness, failed, episode_returns, episode_lengths, statistics) -> None:
        self.fitness = fitness
        self.failed = failed
        self.episode_returns = episode_returns
        self.episode_lengths = episode_lengths
        self.statistics = statistics


class _UpdateState(th.nn.Module):
    """Internal state of the distribution update (Adam moments of the EC update) as buffers,
    so that it is saved and loaded with the model.

    The shapes of the state arrays may change once the update has run (EC allocates its
    moments on the first step), so loading replaces the buffers instead of copying into them.
    """

    def __init__(self, update: BernoulliUpdate) -> None:
        super().__init__()
        self.pull(update)

    def pull(self, update: BernoulliUpdate) -> None:
        for name, value in update.get_state().items():
            self.register_buffer(name, th.as_tensor(np.array(value)).clone())

    def push(self, update: BernoulliUpdate) -> None:
        update.set_state({name: buffer.numpy().copy() for name, buffer in self.named_buffers()})

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        expected = set(dict(self.named_buffers()))
        if set(state_dict) != expected:
            # A model saved with one update and loaded with another (SATR.load(path, update="ec")).
            warnings.warn(
                f"The saved update state has keys {sorted(state_dict)}, but the update of this model expects "
                f"{sorted(expected)}, so the model was saved with another update. The new update starts from "
                "its initial state; the connection probabilities and observation statistics are loaded.",
                UserWarning,
                stacklevel=2,
            )
            return th.nn.modules.module._IncompatibleKeys([], [])
        for name, value in state_dict.items():
            self.register_buffer(name, th.as_tensor(value).clone())
        return th.nn.modules.module._IncompatibleKeys([], [])


class SATR(BaseAlgorithm):
    """Signal-Adaptive Trust Regions (SATR) for recurrent spiking network policies.

    Paper: J. Li et al., "Signal-Adaptive Trust Regions for Gradient-Free Optimization of
    Recurrent Spiking Neural Networks", arXiv:2601.21572 (2026). The network and the search
    distribution follow "Evolving Connectivity for Recurrent Spiking Neural Networks"
    (EC, arXiv:2305.17650).

    Each generation samples ``population_size`` binary networks from independent Bernoulli
    connection probabilities, plays ``n_eval_episodes`` full episodes with each on the
    model's VecEnv, and moves the probabilities along the natural gradient of the
    rank-shaped returns. The SATR update bounds the exact KL divergence of each move by a
    budget scaled with the signal energy the population found. Parts of the SATR update are
    this package's reconstruction, listed in ``docs/algorithm.md``.

    The first argument may be the environment or, in the Stable-Baselines3 form, the policy:
    ``SATR("Hopper-v5")``, ``SATR(env, policy=RSNNPolicy)`` and ``SATR("RSNNPolicy", env)``
    are the same.

    :param policy_or_env: The environment (id, ``gym.Env`` or ``VecEnv``) or the policy.
    :param env: The environment, when the first argument is the policy.
    :param policy: The policy class or its alias ``"RSNNPolicy"``.
    :param population_size: Networks sampled per generation (at least 2).
    :param n_eval_episodes: Episodes each network plays; its fitness is the mean return.
    :param alive_bonus_offset: Added to the fitness once per episode step, as in ARS. A
        negative value removes the reward for merely staying alive (Hopper, Walker2d,
        Humanoid).
    :param update: ``"satr"`` (signal-adaptive trust region), ``"ec"`` (Adam on the natural
        gradient, as in EC) or ``"natural"`` (plain natural-gradient step).
    :param target_kl: SATR's trust-region scale ``delta``.
    :param signal_estimator: SATR's signal energy estimator: ``"variance"`` or ``"split_half"``
        (from one population) or ``"ema"`` (moving averages across generations).
    :param trust_region_budget: SATR's KL budget, ``"signal"`` (``delta * S``) or ``"snr"``
        (``delta * S / (S + N)``).
    :param line_search_shrinking_factor: Factor applied to the SATR step until the exact KL
        fits the budget.
    :param line_search_max_iter: Maximum number of shrinks before the step is skipped.
    :param max_step_size: Optional cap on SATR's step size along the natural gradient.
    :param kl_reduction: Whether ``target_kl`` bounds the KL summed over connections
        (``"sum"``) or its mean per connection (``"mean"``).
    :param ema_decay: Weight of the newest generation in the ``"ema"`` signal estimator.
    :param learning_rate: Learning rate of the ``"ec"`` and ``"natural"`` updates, a float or
        a schedule of the remaining progress (1 to 0). ``None`` takes 0.15 for ``"ec"`` (EC's
        value) and 1.0 for ``"natural"``. SATR's own update does not use it.
    :param probability_eps: Probabilities are clipped to ``[eps, 1 - eps]``.
    :param max_episode_steps: Episode cap for an environment without a time limit. Only
        applies to an environment id or a ``gym.Env``, which get a ``TimeLimit`` wrapper.
    :param policy_kwargs: Arguments of ``RSNNPolicy`` (network constants such as
        ``n_neurons``, observation normalisation settings).
    :param stats_window_size: Window of episodes for ``rollout/ep_rew_mean``.
    :param tensorboard_log: Folder for tensorboard logs.
    :param verbose: 0 silent, 1 training logs, 2 debug.
    :param seed: Seed of the search, the environments and the policy.
    :param device: Ignored apart from a warning: the spiking network runs on the CPU.
    :param n_workers: Worker processes or Ray actors that evaluate the population; 0 plays
        it in this process on the model's VecEnv.
    :param backend: ``"inprocess"``, ``"processes"`` (local processes started with
        ``forkserver``, or ``spawn`` where it is missing) or ``"ray"``. ``None`` picks
        ``"inprocess"`` for ``n_workers=0`` and ``"processes"`` otherwise. Workers rebuild the
        environment from its spec, start at the first generation and stop at
        ``close_workers()``. Fitness, probabilities and observation statistics do not depend
        on the backend or on ``n_workers``.
    :param envs_per_worker: Environment copies per worker, each playing one episode at a
        time; the worker steps their networks in one batched kernel call.
    :param worker_timeout: Seconds a worker may take over one batch of tasks before
        ``learn()`` stops the workers and raises ``WorkerError``.
    :param ray_address: Address of a running Ray cluster for ``backend="ray"``, such as
        ``"127.0.0.1:6379"``. Without it, SATR uses the Ray instance this process is
        connected to, or starts a local one.
    :param _init_setup_model: Build the policy at construction.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"RSNNPolicy": RSNNPolicy}
    policy: RSNNPolicy

    def __init__(
        self,
        policy_or_env: Union[str, type[BasePolicy], GymEnv, None] = None,
        env: Union[GymEnv, str, None] = None,
        *,
        policy: Union[str, type[RSNNPolicy], None] = None,
        population_size: int = 16,
        n_eval_episodes: int = 1,
        alive_bonus_offset: float = 0.0,
        update: UpdateName = "satr",
        target_kl: float = 0.07,
        signal_estimator: Literal["variance", "split_half", "ema"] = "split_half",
        trust_region_budget: Literal["signal", "snr"] = "signal",
        line_search_shrinking_factor: float = 0.5,
        line_search_max_iter: int = 10,
        max_step_size: Optional[float] = None,
        kl_reduction: Literal["sum", "mean"] = "mean",
        ema_decay: float = 0.1,
        learning_rate: Union[float, Schedule, None] = None,
        probability_eps: float = 1e-3,
        max_episode_steps: Optional[int] = None,
        policy_kwargs: Optional[dict[str, Any]] = None,
        stats_window_size: int = 100,
        tensorboard_log: Optional[str] = None,
        verbose: int = 0,
        seed: Optional[int] = None,
        device: Union[th.device, str] = "auto",
        n_workers: int = 0,
        backend: Optional[BackendName] = None,
        envs_per_worker: int = 1,
        worker_timeout: float = 600.0,
        ray_address: Optional[str] = None,
        _init_setup_model: bool = True,
    ) -> None:
        policy, env = self._resolve_policy_and_env(policy_or_env, env, policy)
        policy_class = self.policy_aliases.get(policy, policy) if isinstance(policy, str) else policy
        if not (isinstance(policy_class, type) and issubclass(policy_class, RSNNPolicy)):
            raise ValueError(
                f"SATR trains RSNNPolicy or a subclass of it, got policy={policy!r}. A model saved by another "
                "algorithm must be loaded with that algorithm's class."
            )
        backend = resolve_backend(n_workers, backend, envs_per_worker, worker_timeout, ray_address)
        _check_int("population_size", population_size, minimum=2)
        _check_int("n_eval_episodes", n_eval_episodes, minimum=1)
        _check_int("line_search_max_iter", line_search_max_iter, minimum=0)
        if update not in ("satr", "ec", "natural"):
            raise ValueError(f"update must be 'satr', 'ec' or 'natural', got {update!r}.")
        if not (isinstance(alive_bonus_offset, (int, float)) and math.isfinite(alive_bonus_offset)):
            raise ValueError(f"alive_bonus_offset must be a finite number, got {alive_bonus_offset!r}.")
        if not 0.0 < probability_eps < 0.5:
            raise ValueError(f"probability_eps must lie in (0, 0.5), got {probability_eps!r}.")
        if max_episode_steps is not None:
            _check_int("max_episode_steps", max_episode_steps, minimum=1)
        if learning_rate is None:
            learning_rate = 1.0 if update == "natural" else 0.15
        if not callable(learning_rate) and not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
            raise ValueError(f"learning_rate must be a positive float or a schedule, got {learning_rate!r}.")
        if str(device) not in ("auto", "cpu"):
            warnings.warn(
                f"SATR runs its spiking network on the CPU; device={device!r} is ignored.",
                UserWarning,
                stacklevel=2,
            )

        env = _apply_time_limit(env, max_episode_steps)

        self.population_size = int(population_size)
        self.n_eval_episodes = int(n_eval_episodes)
        self.alive_bonus_offset = float(alive_bonus_offset)
        self.update = update
        self.target_kl = target_kl
        self.signal_estimator = signal_estimator
        self.trust_region_budget = trust_region_budget
        self.line_search_shrinking_factor = line_search_shrinking_factor
        self.line_search_max_iter = int(line_search_max_iter)
        self.max_step_size = max_step_size
        self.kl_reduction = kl_reduction
        self.ema_decay = ema_decay
        self.probability_eps = float(probability_eps)
        self.max_episode_steps = max_episode_steps
        self.n_workers = int(n_workers)
        self.backend = backend
        self.envs_per_worker = int(envs_per_worker)
        self.worker_timeout = float(worker_timeout)
        self.ray_address = ray_address
        self._workers: Optional[WorkerBackend] = None
        self._workers_env: Optional[VecEnv] = None
        self._search_seed: Optional[int] = None
        self._n_generations = 0
        self._n_failed_members = 0
        self._last_fitness: Optional[np.ndarray] = None
        self._last_diagnostics: dict[str, float] = {}

        super().__init__(
            policy=policy,
            env=env,
            learning_rate=learning_rate,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device="cpu",
            support_multi_env=True,
            monitor_wrapper=True,
            seed=seed,
            supported_action_spaces=(spaces.Box, spaces.Discrete),
        )
        if _init_setup_model:
            self._setup_model()

    @classmethod
    def _resolve_policy_and_env(cls, first: Any, env: Any, policy: Any) -> tuple[Any, Any]:
        def is_policy(value: Any) -> bool:
            if isinstance(value, str):
                return value in cls.policy_aliases
            return isinstance(value, type) and issubclass(value, BasePolicy)

        if first is not None:
            if is_policy(first):
                if policy is not None:
                    raise ValueError(f"The policy was given twice: {first!r} and policy={policy!r}.")
                policy = first
            elif env is None:
                env = first
            elif is_policy(env) and policy is None:
                policy, env = env, first
            else:
                raise ValueError(
                    f"The environment was given twice: {first!r} and env={env!r}. Pass SATR(env) or "
                    "SATR('RSNNPolicy', env)."
                )
        return (policy if policy is not None else "RSNNPolicy"), env

    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfSATR],
        path: Any,
        env: Optional[GymEnv] = None,
        device: Union[th.device, str] = "auto",
        custom_objects: Optional[dict[str, Any]] = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfSATR:
        """Load a model saved by ``SATR.save``; see ``BaseAlgorithm.load`` for the arguments.

        A damaged file, or a file saved by another algorithm, raises ``ValueError``.
        """
        try:
            return super().load(
                path,
                env=env,
                device=device,
                custom_objects=custom_objects,
                print_system_info=print_system_info,
                force_reset=force_reset,
                **kwargs,
            )
        except (zipfile.BadZipFile, EOFError, AssertionError, KeyError, pickle.UnpicklingError) as error:
            raise ValueError(
                f"Cannot load a SATR model from {path!r}: the file is damaged or is not a model saved by "
                f"SATR.save ({type(error).__name__}: {error})."
            ) from error

    def _setup_model(self) -> None:
        # Workers hold a copy of the old policy; the next generation starts new ones.
        self.close_workers()
        # SATR.load(path, n_workers=..., backend=...) sets these after the constructor's checks.
        self.backend = resolve_backend(
            self.n_workers, self.backend, self.envs_per_worker, self.worker_timeout, self.ray_address
        )
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        if self._search_seed is None:
            if self.seed is None:
                self._search_seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> np.uint64(1))
            else:
                self._search_seed = int(self.seed)

        policy_kwargs = dict(self.policy_kwargs)
        if self.env is not None:
            _check_time_limit(self.env)
            if self.backend != "inprocess":
                worker_env_spec(self.env)
            if isinstance(self.env, VecNormalize) and self.env.norm_obs and policy_kwargs.get("normalize_observations", True):
                warnings.warn(
                    "The environment is wrapped in VecNormalize, so SATR turns off the policy's own "
                    "observation normalisation.",
                    UserWarning,
                    stacklevel=3,
                )
                policy_kwargs["normalize_observations"] = False
                self.policy_kwargs = policy_kwargs
        self.policy = self.policy_class(self.observation_space, self.action_space, **policy_kwargs)  # type: ignore[assignment]
        self.policy.seed_sampling(self.seed)

        self.search_update = self._make_update()
        self.update_state = _UpdateState(self.search_update)
        self._episode_seed_warning = False

    def _make_update(self) -> BernoulliUpdate:
        if self.update == "satr":
            return SATRUpdate(
                target_kl=self.target_kl,
                signal_estimator=self.signal_estimator,
                budget=self.trust_region_budget,
                line_search_shrinking_factor=self.line_search_shrinking_factor,
                line_search_max_iter=self.line_search_max_iter,
                max_step_size=self.max_step_size,
                kl_reduction=self.kl_reduction,
                ema_decay=self.ema_decay,
                eps=self.probability_eps,
            )
        learning_rate = float(self.lr_schedule(1.0))
        if self.update == "ec":
            return ECUpdate(learning_rate=learning_rate, eps=self.probability_eps)
        return NaturalGradientUpdate(learning_rate=learning_rate, eps=self.probability_eps)

    def set_random_seed(self, seed: Optional[int] = None) -> None:
        super().set_random_seed(seed)
        if getattr(self, "policy", None) is not None:
            self.policy.seed_sampling(seed)

    def set_env(self, env: GymEnv, force_reset: bool = True) -> None:
        _check_time_limit(env if isinstance(env, VecEnv) else None)
        super().set_env(env, force_reset=force_reset)

    # Saving.

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "update_state"], []

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "search_update", "update_state", "_workers", "_workers_env"]

    def get_parameters(self) -> dict[str, dict]:
        self.update_state.pull(self.search_update)
        return super().get_parameters()

    def set_parameters(self, load_path_or_dict: Any, exact_match: bool = True, device: Union[th.device, str] = "auto") -> None:
        super().set_parameters(load_path_or_dict, exact_match=exact_match, device="cpu")
        self.update_state.push(self.search_update)

    # Training.

    def learn(
        self: SelfSATR,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "SATR",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfSATR:
        """Train for at least ``total_timesteps`` environment steps.

        Training runs whole generations: the last one may run past ``total_timesteps``.
        It stops at once, without updating the distribution, when a callback's
        ``on_step()`` returns ``False``.

        :param total_timesteps: Environment steps to train for (summed over sub-environments).
        :param callback: Called after every ``VecEnv.step``.
        :param log_interval: Write the logs every ``log_interval`` generations.
        :param tb_log_name: Name of the tensorboard run.
        :param reset_num_timesteps: Start the step counter (and the environments) anew.
        :param progress_bar: Show a progress bar (needs tqdm and rich).
        """
        _check_int("log_interval", log_interval, minimum=1)
        if self.env is None:
            raise ValueError("SATR.learn needs an environment: pass one to SATR(...) or call set_env(env) first.")
        total_timesteps, callback = self._setup_learn(
            total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar
        )
        # A continued run may have ended past its old budget; measure progress on the new one.
        self._update_current_progress_remaining(self.num_timesteps, total_timesteps)
        callback.on_training_start(locals(), globals())

        while self.num_timesteps < total_timesteps:
            callback.on_rollout_start()
            continue_training = self._train_generation(callback)
            callback.on_rollout_end()
            if not continue_training:
                break
            if self._n_generations % log_interval == 0:
                self._dump_logs()

        callback.on_training_end()
        return self

    def _generation_seeds(self, generation: int, n_tasks: int) -> tuple[int, np.ndarray]:
        """Seed of the population sample and one environment seed per evaluation task."""
        sequence = np.random.SeedSequence([int(self._search_seed), int(generation)])
        sample_sequence, episode_sequence = sequence.spawn(2)
        sample_seed = int(sample_sequence.generate_state(1, np.uint64)[0] >> np.uint64(1))
        episode_seeds = episode_sequence.generate_state(n_tasks, np.uint32).astype(np.int64)
        return sample_seed, episode_seeds

    def _train_generation(self, callback: BaseCallback) -> bool:
        """Sample, evaluate and update one generation; return ``False`` if a callback stopped it."""
        policy = self.policy
        eps = self.probability_eps
        probabilities = np.clip(policy.probabilities_array, eps, 1.0 - eps)
        n_tasks = self.population_size * self.n_eval_episodes
        sample_seed, episode_seeds = self._generation_seeds(self._n_generations, n_tasks)

        # The learning rate of a generation follows the progress at its start, which lies in (0, 1].
        learning_rate = float(self.lr_schedule(min(max(self._current_progress_remaining, 0.0), 1.0)))
        samples = sample_population(probabilities, self.population_size, sample_seed)
        if self.backend == "inprocess":
            member_masks = policy.layout.pack_flat_words(samples)
            mode_masks = policy.packed_mode_masks()
            masks = PackedMasks(*(np.concatenate([a, b]) for a, b in zip(member_masks, mode_masks)))
            result = self._evaluate_population(masks, episode_seeds, callback)
        else:
            result = self._evaluate_in_workers(probabilities, sample_seed, episode_seeds, callback)
        if result is None:
            return False

        # Failed members rank below every member that finished.
        fitness = result.fitness.copy()
        failed = result.failed
        if np.all(failed):
            fitness[:] = 0.0
        elif np.any(failed):
            fitness[failed] = np.min(fitness[~failed]) - 1.0

        if self.update != "satr":
            self.search_update.learning_rate = learning_rate
        new_probabilities, diagnostics = self.search_update.step(probabilities, samples, fitness)
        policy.set_probabilities_array(new_probabilities)

        if result.statistics is not None:
            statistics = ObservationStatistics(policy.obs_dim)
            statistics.merge(policy.obs_count.item(), policy.obs_mean.numpy(), policy.obs_var.numpy() * policy.obs_count.item())
            members = np.flatnonzero(~failed)
            tasks = (members[:, None] * self.n_eval_episodes + np.arange(self.n_eval_episodes)).reshape(-1)
            result.statistics.merge_into(statistics, tasks)
            policy.set_observation_statistics(statistics.count, statistics.mean, statistics.var)

        self._n_generations += 1
        self._n_failed_members = int(np.sum(failed))
        self._last_fitness = result.fitness[~failed]
        self._last_diagnostics = diagnostics
        if self._n_failed_members:
            warnings.warn(
                f"{self._n_failed_members} of {self.population_size} members met a non-finite observation or "
                f"reward in generation {self._n_generations}; they were ranked last and their observations "
                "were left out of the statistics.",
                RuntimeWarning,
                stacklevel=3,
            )
        return True

    def _reset_sub_env(self, index: int, seed: int) -> Optional[np.ndarray]:
        """Reset sub-environment ``index`` with ``seed`` and return its observation.

        Returns ``None`` for VecEnv wrappers other than VecNormalize, whose per-environment
        reset would bypass them; those members then start from the automatic reset.
        """
        env = self.env
        base = env.venv if isinstance(env, VecNormalize) else env
        if not isinstance(base, (DummyVecEnv, SubprocVecEnv)):
            if not self._episode_seed_warning:
                self._episode_seed_warning = True
                warnings.warn(
                    f"SATR cannot reset single environments through {type(base).__name__}, so member episodes "
                    "start from the automatic resets and fitness depends on the number of environments.",
                    UserWarning,
                    stacklevel=4,
                )
            return None
        observation, _ = base.env_method("reset", seed=int(seed), indices=[index])[0]
        observation = np.asarray(observation)
        if isinstance(env, VecNormalize):
            observation = env.normalize_obs(observation)
        return observation

    def _evaluate_population(
        self, masks: PackedMasks, episode_seeds: np.ndarray, callback: BaseCallback
    ) -> Optional[PopulationResult]:
        """Play every member's episodes on the VecEnv, one batched kernel call per ``VecEnv.step``.

        Members are scheduled over the sub-environments in member order. A sub-environment
        without a member left to play runs the mode network (row ``population_size`` of
        ``masks``) and its episodes are not scored. Returns ``None`` if a callback stopped
        training.
        """
        env = self.env
        policy = self.policy
        network = policy.network
        n_envs = env.num_envs
        n_members = self.population_size
        n_tasks = n_members * self.n_eval_episodes
        filler = n_members

        task_member = np.repeat(np.arange(n_members), self.n_eval_episodes)
        returns = np.zeros(n_tasks, dtype=np.float64)
        lengths = np.zeros(n_tasks, dtype=np.int64)
        failed = np.zeros(n_tasks, dtype=np.bool_)
        statistics = TaskStatistics(n_tasks, policy.obs_dim) if policy.normalize_observations else None
        mean, std = policy.observation_normalizer()

        slot_task = np.full(n_envs, -1, dtype=np.int64)
        network_index = np.full(n_envs, filler, dtype=np.int64)
        reset = np.ones(n_envs, dtype=np.bool_)
        at_start = np.array(self._last_episode_starts, dtype=np.bool_).reshape(n_envs)
        state = network.initial_state(n_envs)
        outputs = np.empty((n_envs, policy.layout.n_outputs), dtype=np.float32)
        network_input = np.empty((n_envs, policy.obs_dim), dtype=np.float32)
        buffers = statistics_buffers(statistics)
        network._check_masks(masks)
        observations = np.array(self._last_obs, dtype=np.float64).reshape(n_envs, -1)
        next_task = 0
        n_finished = 0

        while n_finished < n_tasks:
            for i in range(n_envs):
                if slot_task[i] >= 0 or next_task >= n_tasks:
                    continue
                observation = self._reset_sub_env(i, int(episode_seeds[next_task]))
                if observation is not None:
                    observations[i] = observation.reshape(-1)
                elif not at_start[i]:
                    continue
                slot_task[i] = next_task
                network_index[i] = task_member[next_task]
                reset[i] = True
                next_task += 1

            observe_rows(
                observations,
                slot_task,
                failed,
                *buffers,
                policy.normalize_observations,
                mean,
                std,
                policy.observation_clip,
                network_input,
            )
            # Every array here was built for the kernel by this method, so its checks are skipped.
            network.advance_unchecked(masks, network_input, state, reset, network_index, outputs)
            reset[:] = False
            actions = policy.actions_from_outputs(outputs)

            new_obs, rewards, dones, infos = env.step(actions)
            self.num_timesteps += n_envs
            raw_rewards = env.get_original_reward() if isinstance(env, VecNormalize) else rewards
            add_rewards(slot_task, np.asarray(raw_rewards, dtype=np.float64).reshape(n_envs), returns, lengths, failed)

            self._update_info_buffer(infos, dones)
            self._update_current_progress_remaining(self.num_timesteps, self._total_timesteps)
            self._last_obs = new_obs
            self._last_episode_starts = dones
            observations = np.array(new_obs, dtype=np.float64).reshape(n_envs, -1)
            at_start = np.array(dones, dtype=np.bool_)

            callback.update_locals(locals())
            if not callback.on_step():
                return None

            if not dones.any():
                continue
            for i in np.flatnonzero(dones):
                if slot_task[i] >= 0:
                    n_finished += 1
                    slot_task[i] = -1
                network_index[i] = filler
                reset[i] = True

        fitness, member_failed = member_fitness(returns, lengths, failed, self.n_eval_episodes, self.alive_bonus_offset)
        return PopulationResult(
            fitness=fitness,
            failed=member_failed,
            episode_returns=returns.reshape(n_members, self.n_eval_episodes),
            episode_lengths=lengths.reshape(n_members, self.n_eval_episodes),
            statistics=statistics,
        )

    # Parallel evaluation.

    def close_workers(self) -> None:
        """Stop the worker processes or Ray actors of parallel evaluation, if any are running.

        The next generation starts new ones. Workers also stop when the model is garbage
        collected and at interpreter exit.
        """
        workers = getattr(self, "_workers", None)
        self._workers = None
        self._workers_env = None
        if workers is not None:
            workers.close()

    def _start_workers(self) -> WorkerBackend:
        """Return the running workers, starting new ones if there are none or the env was replaced."""
        if self._workers is not None and self._workers_env is self.env:
            return self._workers
        self.close_workers()
        settings = WorkerSettings(
            env_spec=worker_env_spec(self.env),
            policy_class=type(self.policy),
            policy_kwargs=self.policy._get_constructor_parameters(),
            envs_per_worker=self.envs_per_worker,
            # Workers are the unit of parallelism. A second OpenMP thread per worker only
            # contends with the other workers' env steps (measured in benchmarks/parallel.py).
            numba_threads=1,
        )
        self._workers = make_backend(self.backend, settings, self.n_workers, self.worker_timeout, self.ray_address)
        self._workers_env = self.env
        return self._workers

    def _evaluate_in_workers(
        self, probabilities: np.ndarray, sample_seed: int, episode_seeds: np.ndarray, callback: BaseCallback
    ) -> Optional[PopulationResult]:
        """Play every member's episodes in the workers; return ``None`` if a callback stopped training.

        Callbacks see one ``on_step`` per generation, after all its episodes. By then
        ``num_timesteps`` has grown by the steps the workers took. ``dones`` contains one
        ``True`` per episode, ``infos`` the info dict of each episode's last step (with
        Monitor's ``"episode"``), and ``rewards`` the episode returns.
        """
        workers = self._start_workers()
        mean, std = self.policy.observation_normalizer()
        job = GenerationJob(
            generation=self._n_generations,
            probabilities=probabilities,
            sample_seed=sample_seed,
            population_size=self.population_size,
            obs_mean=mean,
            obs_std=std,
        )
        try:
            results = workers.evaluate(job, episode_seeds, self.n_eval_episodes)
        except BaseException:
            # The backend has stopped its workers; the next generation starts new ones.
            self.close_workers()
            raise

        self.num_timesteps += int(np.sum(results.lengths))
        dones = np.ones(len(results.lengths), dtype=np.bool_)
        infos = results.final_infos
        rewards = results.returns
        self._update_info_buffer(infos, dones)
        self._update_current_progress_remaining(self.num_timesteps, self._total_timesteps)
        self.logger.record("time/evaluation_seconds", results.timing.wall_seconds)
        self.logger.record("time/worker_overhead_seconds", results.timing.overhead_seconds)

        callback.update_locals(locals())
        if not callback.on_step():
            return None

        fitness, failed = member_fitness(
            results.returns, results.lengths, results.failed, self.n_eval_episodes, self.alive_bonus_offset
        )
        return PopulationResult(
            fitness=fitness,
            failed=failed,
            episode_returns=results.returns.reshape(self.population_size, self.n_eval_episodes),
            episode_lengths=results.lengths.reshape(self.population_size, self.n_eval_episodes),
            statistics=results.statistics,
        )

    def _dump_logs(self) -> None:
        time_elapsed = max((time.time_ns() - self.start_time) / 1e9, sys.float_info.epsilon)
        fps = int((self.num_timesteps - self._num_timesteps_at_start) / time_elapsed)
        self.logger.record("time/iterations", self._n_generations, exclude="tensorboard")
        if self.ep_info_buffer is not None and len(self.ep_info_buffer) > 0:
            self.logger.record("rollout/ep_rew_mean", safe_mean([info["r"] for info in self.ep_info_buffer]))
            self.logger.record("rollout/ep_len_mean", safe_mean([info["l"] for info in self.ep_info_buffer]))
        if self._last_fitness is not None and self._last_fitness.size:
            self.logger.record("rollout/fitness_mean", float(np.mean(self._last_fitness)))
            self.logger.record("rollout/fitness_std", float(np.std(self._last_fitness)))
            self.logger.record("rollout/fitness_max", float(np.max(self._last_fitness)))
        self.logger.record("rollout/failed_members", self._n_failed_members)
        for key, value in self._last_diagnostics.items():
            self.logger.record(f"train/{key}", value)
        if self.update != "satr":
            self.logger.record("train/learning_rate", self.search_update.learning_rate)
        self.logger.record("time/fps", fps)
        self.logger.record("time/time_elapsed", int(time_elapsed), exclude="tensorboard")
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.dump(step=self.num_timesteps)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}, got {value!r}.")


def _apply_time_limit(env: Any, max_episode_steps: Optional[int]) -> Any:
    """Make an env id or ``gym.Env`` with the requested episode cap."""
    if max_episode_steps is None:
        return env
    if isinstance(env, str):
        return gym.make(env, max_episode_steps=max_episode_steps)
    if isinstance(env, gym.Env):
        return TimeLimit(env, max_episode_steps=max_episode_steps)
    raise ValueError(
        "max_episode_steps applies to an environment id or a gym.Env; wrap each environment of the "
        "VecEnv in gymnasium.wrappers.TimeLimit instead."
    )


def _check_time_limit(env: Optional[VecEnv]) -> None:
    """Raise unless every sub-environment ends its episodes after a finite number of steps."""
    if env is None:
        return
    wrapped = env.env_is_wrapped(TimeLimit)
    specs = env.get_attr("spec")
    for index, (is_wrapped, spec) in enumerate(zip(wrapped, specs)):
        limit = getattr(spec, "max_episode_steps", None) if spec is not None else None
        if not is_wrapped and limit is None:
            raise ValueError(
                f"Sub-environment {index} has no time limit, so a member's episode might never end. Pass "
                "max_episode_steps=... to SATR or wrap the environment in gymnasium.wrappers.TimeLimit."
            )
