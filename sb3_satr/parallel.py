"""Backends that evaluate a population in worker processes or Ray actors.

``SATR(..., n_workers=k)`` hands each generation to a backend instead of playing it on
its own VecEnv. A backend splits the generation's tasks (one episode of one member each)
into batches of consecutive tasks, gives them to whichever worker is free, and puts the
results back in task order. Since every task's result depends only on the task, the
fitness, the updated probabilities and the observation statistics are the same for any
backend and any number of workers.

What travels: once per generation and worker, the connection probabilities (``8 * d``
bytes), the sample seed and the normaliser. With each batch go three ``int64`` per task.
Back come, per task, its return, length, failure flag, observation statistics
(``16 * obs_dim + 8`` bytes) and last info dict. Masks and observations never travel.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import multiprocessing
import pickle
import signal
import time
import traceback
import weakref
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field, replace
from multiprocessing import connection as mp_connection
from typing import Any, Literal, Optional

import numpy as np
from gymnasium.envs.registration import EnvSpec
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecNormalize

from sb3_satr.evaluation import EvaluationWorker, GenerationJob, TaskBatch, TaskBatchResult, WorkerSettings
from sb3_satr.normalization import TaskStatistics

logger = logging.getLogger(__name__)

BackendName = Literal["inprocess", "processes", "ray"]
BACKENDS = ("inprocess", "processes", "ray")

# Time allowed for a worker to start: import torch, Stable-Baselines3 and numba, load the
# compiled kernels and build its environments. worker_timeout does not cover it.
WORKER_START_TIMEOUT = 300.0

# Batches per worker and generation (smaller batches balance uneven episode lengths
# better), and batches queued at each worker, so that it has its next batch before it
# finishes the current one.
BATCHES_PER_WORKER = 4
BATCHES_IN_FLIGHT = 2

_MONITOR_ENTRY_POINT = "stable_baselines3.common.monitor:Monitor"
_PICKLE_PROTOCOL = pickle.HIGHEST_PROTOCOL


class WorkerError(RuntimeError):
    """A worker died, raised an exception or timed out while evaluating a generation.

    :param message: The full message.
    :param worker_index: Index of the worker, from 0.
    :param pid: Process id of the worker, if known.
    :param cause: Short description of what went wrong.
    """

    def __init__(self, message: str, worker_index: int, pid: Optional[int], cause: str) -> None:
        super().__init__(message)
        self.worker_index = worker_index
        self.pid = pid
        self.cause = cause


def resolve_backend(
    n_workers: Any,
    backend: Any,
    envs_per_worker: Any,
    worker_timeout: Any,
    ray_address: Any,
) -> BackendName:
    """Check the parallel-evaluation arguments of ``SATR`` and return the backend name.

    ``backend=None`` means ``"inprocess"`` when ``n_workers == 0`` and ``"processes"``
    otherwise. Raises ``ValueError`` naming the first invalid argument, and ``ImportError``
    for ``backend="ray"`` without Ray installed.
    """
    if isinstance(n_workers, bool) or not isinstance(n_workers, (int, np.integer)) or n_workers < 0:
        raise ValueError(f"n_workers must be an integer of at least 0, got {n_workers!r}.")
    if backend is None:
        backend = "inprocess" if n_workers == 0 else "processes"
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} or None, got {backend!r}.")
    if backend == "inprocess" and n_workers != 0:
        raise ValueError(
            f"backend='inprocess' plays on the model's own VecEnv and takes n_workers=0, got n_workers={n_workers}. "
            "Use backend='processes' or backend='ray' for workers."
        )
    if backend != "inprocess" and n_workers < 1:
        raise ValueError(f"backend={backend!r} needs n_workers of at least 1, got {n_workers}.")
    if isinstance(envs_per_worker, bool) or not isinstance(envs_per_worker, (int, np.integer)) or envs_per_worker < 1:
        raise ValueError(f"envs_per_worker must be an integer of at least 1, got {envs_per_worker!r}.")
    if backend == "inprocess" and envs_per_worker != 1:
        raise ValueError(
            f"envs_per_worker applies to worker backends, but the backend is 'inprocess' (got "
            f"envs_per_worker={envs_per_worker}). Pass a VecEnv with more environments instead."
        )
    if (
        isinstance(worker_timeout, bool)
        or not isinstance(worker_timeout, (int, float))
        or not math.isfinite(worker_timeout)
        or worker_timeout <= 0
    ):
        raise ValueError(f"worker_timeout must be a finite number of seconds above 0, got {worker_timeout!r}.")
    if backend == "ray" and importlib.util.find_spec("ray") is None:
        raise ImportError('backend="ray" needs Ray, which is not installed: pip install "sb3-satr[ray]"')
    if ray_address is not None:
        if not isinstance(ray_address, str) or not ray_address:
            raise ValueError(f"ray_address must be a non-empty string such as '127.0.0.1:6379', got {ray_address!r}.")
        if backend != "ray":
            raise ValueError(f"ray_address applies to backend='ray' only, but the backend is {backend!r}.")
    return backend


def worker_env_spec(env: VecEnv) -> EnvSpec:
    """Return the spec from which workers rebuild the training environment, without ``Monitor``.

    Raises ``ValueError`` for a ``VecNormalize`` or any other VecEnv wrapper, which workers
    cannot reproduce, and for an environment without a spec (one not made by
    ``gymnasium.make``) or with a wrapper that ``gymnasium.make`` cannot rebuild.
    """
    if isinstance(env, VecNormalize):
        raise ValueError(
            "Worker backends do not support VecNormalize: the workers play on their own environment copies. "
            "Drop VecNormalize; the policy normalises observations itself by default."
        )
    if isinstance(env, VecEnvWrapper):
        raise ValueError(
            f"Worker backends cannot reproduce the VecEnv wrapper {type(env).__name__}. Pass the environment "
            "without it, or use backend='inprocess'."
        )
    spec = env.get_attr("spec")[0]
    if spec is None:
        raise ValueError(
            "The environment has no spec (it was not made by gymnasium.make), so workers cannot rebuild it. "
            "Register it with gymnasium.register and pass its id, or use backend='inprocess'."
        )
    wrappers = tuple(wrapper for wrapper in spec.additional_wrappers if wrapper.entry_point != _MONITOR_ENTRY_POINT)
    for wrapper in wrappers:
        if wrapper.kwargs is None:
            raise ValueError(
                f"Workers cannot rebuild the wrapper {wrapper.name} of environment {spec.id!r}, because it does "
                "not record its arguments (gymnasium.utils.RecordConstructorArgs). Register an environment "
                "that includes it, or use backend='inprocess'."
            )
    return replace(spec, additional_wrappers=wrappers)


def plan_batches(
    generation: int,
    episode_seeds: np.ndarray,
    n_eval_episodes: int,
    n_workers: int,
    envs_per_worker: int,
) -> list[TaskBatch]:
    """Split the tasks of a generation into batches of consecutive tasks.

    Task ``t`` is episode ``t % n_eval_episodes`` of member ``t // n_eval_episodes`` and
    resets with ``episode_seeds[t]``. A batch contains at least ``envs_per_worker`` tasks, so
    that every environment copy of a worker has an episode to play.
    """
    n_tasks = len(episode_seeds)
    size = max(envs_per_worker, math.ceil(n_tasks / (BATCHES_PER_WORKER * n_workers)))
    batches = []
    for start in range(0, n_tasks, size):
        tasks = np.arange(start, min(start + size, n_tasks), dtype=np.int64)
        batches.append(
            TaskBatch(
                generation=generation,
                tasks=tasks,
                members=tasks // n_eval_episodes,
                seeds=np.asarray(episode_seeds[tasks], dtype=np.int64),
            )
        )
    return batches


@dataclass
class GenerationTiming:
    """Time spent on one generation, in seconds.

    ``wall_seconds`` runs from the first message to the last result. ``busy_seconds`` is
    per worker, summed over its batches as measured inside the worker. Bytes count the
    pickled messages of the ``"processes"`` backend and are ``None`` for Ray.
    """

    wall_seconds: float
    busy_seconds: np.ndarray
    env_seconds: float
    kernel_seconds: float
    bytes_sent: Optional[int] = None
    bytes_received: Optional[int] = None

    @property
    def overhead_seconds(self) -> float:
        """Wall time not spent inside the busiest worker: messages, waits and uneven batches."""
        return max(self.wall_seconds - float(np.max(self.busy_seconds, initial=0.0)), 0.0)


@dataclass
class GenerationResults:
    """Per-task results of a generation, in task order, and its timing."""

    returns: np.ndarray
    lengths: np.ndarray
    failed: np.ndarray
    statistics: Optional[TaskStatistics]
    final_infos: list[dict[str, Any]]
    timing: GenerationTiming


class _Assembler:
    """Places batch results into per-task arrays and sums the workers' timings."""

    def __init__(self, n_tasks: int, obs_dim: int, normalize: bool, n_workers: int) -> None:
        self.returns = np.zeros(n_tasks, dtype=np.float64)
        self.lengths = np.zeros(n_tasks, dtype=np.int64)
        self.failed = np.zeros(n_tasks, dtype=np.bool_)
        self.statistics = TaskStatistics(n_tasks, obs_dim) if normalize else None
        self.final_infos: list[dict[str, Any]] = [{} for _ in range(n_tasks)]
        self.received = np.zeros(n_tasks, dtype=np.bool_)
        self.busy_seconds = np.zeros(n_workers, dtype=np.float64)
        self.env_seconds = 0.0
        self.kernel_seconds = 0.0

    def add(self, worker_index: int, result: TaskBatchResult) -> None:
        tasks = result.tasks
        if np.any(self.received[tasks]):
            raise RuntimeError(f"Tasks {tasks[self.received[tasks]].tolist()} were returned twice.")
        self.received[tasks] = True
        self.returns[tasks] = result.returns
        self.lengths[tasks] = result.lengths
        self.failed[tasks] = result.failed
        if self.statistics is not None:
            self.statistics.count[tasks] = result.obs_count
            self.statistics.mean[tasks] = result.obs_mean
            self.statistics.m2[tasks] = result.obs_m2
        for task, info in zip(tasks, result.final_infos):
            self.final_infos[task] = info
        self.busy_seconds[worker_index] += result.busy_seconds
        self.env_seconds += result.env_seconds
        self.kernel_seconds += result.kernel_seconds

    def finish(self, wall_seconds: float, bytes_sent: Optional[int], bytes_received: Optional[int]) -> GenerationResults:
        if not np.all(self.received):
            raise RuntimeError(f"Tasks {np.flatnonzero(~self.received).tolist()} were never returned.")
        timing = GenerationTiming(
            wall_seconds=wall_seconds,
            busy_seconds=self.busy_seconds,
            env_seconds=self.env_seconds,
            kernel_seconds=self.kernel_seconds,
            bytes_sent=bytes_sent,
            bytes_received=bytes_received,
        )
        return GenerationResults(self.returns, self.lengths, self.failed, self.statistics, self.final_infos, timing)


class WorkerBackend(ABC):
    """A set of workers that evaluates generations. Subclasses provide the transport.

    :param settings: What each worker needs once.
    :param n_workers: Number of workers.
    :param worker_timeout: Seconds a worker may take over one batch of tasks.
    """

    name: str

    def __init__(self, settings: WorkerSettings, n_workers: int, worker_timeout: float) -> None:
        self.settings = settings
        self.n_workers = int(n_workers)
        self.worker_timeout = float(worker_timeout)
        self.last_timing: Optional[GenerationTiming] = None

    def evaluate(self, job: GenerationJob, episode_seeds: np.ndarray, n_eval_episodes: int) -> GenerationResults:
        """Play every task of the generation and return the results in task order.

        Raises ``WorkerError`` if a worker dies, raises or times out. The workers are then
        stopped, and the next call to ``SATR.learn`` starts new ones.
        """
        policy_kwargs = self.settings.policy_kwargs
        obs_dim = int(np.prod(policy_kwargs["observation_space"].shape))
        normalize = bool(policy_kwargs.get("normalize_observations", True))
        batches = plan_batches(
            job.generation, episode_seeds, n_eval_episodes, self.n_workers, self.settings.envs_per_worker
        )
        assembler = _Assembler(len(episode_seeds), obs_dim, normalize, self.n_workers)
        started = time.perf_counter()
        try:
            bytes_sent, bytes_received = self._run(job, batches, assembler)
        except BaseException:
            self._abort()
            raise
        results = assembler.finish(time.perf_counter() - started, bytes_sent, bytes_received)
        self.last_timing = results.timing
        return results

    @abstractmethod
    def _run(self, job: GenerationJob, batches: list[TaskBatch], assembler: _Assembler) -> tuple[Optional[int], Optional[int]]:
        """Play ``batches``, add each result to ``assembler`` and return the bytes sent and received."""

    @abstractmethod
    def _abort(self) -> None:
        """Stop all workers at once, after a failure or an interrupt."""

    @abstractmethod
    def close(self) -> None:
        """Stop the workers. Calling it again does nothing."""


# Worker processes.


@dataclass
class _ErrorReport:
    """An exception raised in a worker, reduced to strings so that it always unpickles."""

    type_name: str
    message: str
    traceback: str

    @classmethod
    def from_exception(cls, error: BaseException) -> "_ErrorReport":
        return cls(type(error).__name__, str(error), traceback.format_exc())


def _process_worker_main(connection: mp_connection.Connection, settings: WorkerSettings) -> None:
    """Build the worker, then serve jobs and batches until the main process sends ``close`` or exits."""
    # The main process handles Ctrl-C and stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        worker = EvaluationWorker(settings)
    except Exception as error:
        _send_quietly(connection, ("error", _ErrorReport.from_exception(error)))
        return
    try:
        connection.send_bytes(pickle.dumps(("ready", worker.describe()), protocol=_PICKLE_PROTOCOL))
        while True:
            try:
                kind, payload = pickle.loads(connection.recv_bytes())
            except (EOFError, OSError):
                return  # The main process has exited.
            if kind == "close":
                return
            if kind == "job":
                worker.set_job(payload)
                continue
            try:
                result = worker.run(payload)
            except Exception as error:
                _send_quietly(connection, ("error", _ErrorReport.from_exception(error)))
                return
            connection.send_bytes(pickle.dumps(("result", result), protocol=_PICKLE_PROTOCOL))
    except (BrokenPipeError, EOFError):
        return
    finally:
        worker.close()


def _send_quietly(connection: mp_connection.Connection, message: Any) -> None:
    try:
        connection.send_bytes(pickle.dumps(message, protocol=_PICKLE_PROTOCOL))
    except (BrokenPipeError, OSError):
        pass


@dataclass
class _ProcessWorker:
    index: int
    process: Any
    connection: mp_connection.Connection
    pid: Optional[int] = None
    in_flight: deque = field(default_factory=deque)
    busy_since: float = 0.0


def _stop_processes(workers: list[_ProcessWorker], graceful: bool) -> None:
    """Stop worker processes: ask them to exit when ``graceful``, then terminate, then kill."""
    if graceful:
        for worker in workers:
            _send_quietly(worker.connection, ("close", None))
        deadline = time.monotonic() + 5.0
        for worker in workers:
            worker.process.join(timeout=max(deadline - time.monotonic(), 0.0))
    for worker in workers:
        if worker.process.is_alive():
            worker.process.terminate()
    for worker in workers:
        worker.process.join(timeout=2.0)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(timeout=2.0)
    for worker in workers:
        worker.connection.close()
    workers.clear()


def _describe_exit(exitcode: Optional[int]) -> str:
    if exitcode is None:
        return "stopped responding"
    if exitcode < 0:
        try:
            return f"was killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with code {exitcode}"


class ProcessPoolBackend(WorkerBackend):
    """Worker processes on this machine, started with ``forkserver`` (``spawn`` where it is missing).

    The workers start at construction and live until ``close``, when the object is garbage
    collected, or at interpreter exit. ``fork`` is never used: a process forked after a
    parallel numba kernel has run is killed by GNU OpenMP.
    """

    name = "processes"

    def __init__(self, settings: WorkerSettings, n_workers: int, worker_timeout: float) -> None:
        super().__init__(settings, n_workers, worker_timeout)
        methods = multiprocessing.get_all_start_methods()
        self.start_method = "forkserver" if "forkserver" in methods else "spawn"
        context = multiprocessing.get_context(self.start_method)
        self._workers: list[_ProcessWorker] = []
        self._finalizer = weakref.finalize(self, _stop_processes, self._workers, False)
        try:
            for index in range(self.n_workers):
                parent, child = context.Pipe(duplex=True)
                process = context.Process(
                    target=_process_worker_main,
                    args=(child, settings),
                    name=f"sb3_satr-worker-{index}",
                    daemon=True,
                )
                process.start()
                child.close()
                self._workers.append(_ProcessWorker(index=index, process=process, connection=parent, pid=process.pid))
            self._wait_until_ready()
        except BaseException:
            self._abort()
            raise

    @property
    def pids(self) -> list[Optional[int]]:
        """Process ids of the workers, in worker order."""
        return [worker.pid for worker in self._workers]

    def _wait_until_ready(self) -> None:
        waiting = {worker.index for worker in self._workers}
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        while waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                index = min(waiting)
                raise self._error(
                    self._workers[index], f"did not start within {WORKER_START_TIMEOUT:.0f} s", "start timed out"
                )
            handles = [self._workers[index].connection for index in waiting]
            handles += [self._workers[index].process.sentinel for index in waiting]
            for handle in mp_connection.wait(handles, timeout=remaining):
                worker = self._owner(handle)
                if worker.index not in waiting:
                    continue
                kind, payload = self._receive(worker, starting=True)
                if kind != "ready":
                    raise RuntimeError(f"Worker {worker.index} sent {kind!r} instead of 'ready'.")
                worker.pid = payload["pid"]
                waiting.discard(worker.index)

    def _run(self, job: GenerationJob, batches: list[TaskBatch], assembler: _Assembler) -> tuple[int, int]:
        if not self._workers:
            raise RuntimeError("The worker processes were stopped; SATR starts new ones at the next generation.")
        self._bytes_sent = 0
        self._bytes_received = 0
        queue = deque(batches)
        now = time.monotonic()
        job_message = pickle.dumps(("job", job), protocol=_PICKLE_PROTOCOL)
        for worker in self._workers:
            worker.in_flight.clear()
            worker.busy_since = now
            self._send_bytes(worker, job_message, job.generation)
        self._dispatch(queue)

        while any(worker.in_flight for worker in self._workers):
            busy = [worker for worker in self._workers if worker.in_flight]
            deadline = min(worker.busy_since for worker in busy) + self.worker_timeout
            handles = [worker.connection for worker in self._workers]
            handles += [worker.process.sentinel for worker in self._workers]
            ready = mp_connection.wait(handles, timeout=max(deadline - time.monotonic(), 0.0))
            for handle in ready:
                worker = self._owner(handle)
                if handle is worker.connection or worker.connection.poll():
                    self._handle(worker, self._receive(worker), assembler)
                else:  # The sentinel is ready and no message is left: the process has exited.
                    raise self._death_error(worker, job.generation)
            self._dispatch(queue)
            self._check_deadlines(job.generation)
        return self._bytes_sent, self._bytes_received

    def _dispatch(self, queue: deque) -> None:
        for worker in self._workers:
            while queue and len(worker.in_flight) < BATCHES_IN_FLIGHT:
                batch = queue.popleft()
                if not worker.in_flight:
                    worker.busy_since = time.monotonic()
                worker.in_flight.append(batch)
                self._send_bytes(worker, pickle.dumps(("batch", batch), protocol=_PICKLE_PROTOCOL), batch.generation)

    def _handle(self, worker: _ProcessWorker, message: tuple[str, Any], assembler: _Assembler) -> None:
        kind, payload = message
        if kind != "result":
            raise RuntimeError(f"Worker {worker.index} sent an unexpected {kind!r} message.")
        batch = worker.in_flight.popleft()
        if not np.array_equal(payload.tasks, batch.tasks):
            raise RuntimeError(f"Worker {worker.index} returned tasks {payload.tasks} for batch {batch.tasks}.")
        assembler.add(worker.index, payload)
        worker.busy_since = time.monotonic()

    def _check_deadlines(self, generation: int) -> None:
        now = time.monotonic()
        for worker in self._workers:
            if worker.in_flight and now - worker.busy_since > self.worker_timeout:
                n_tasks = len(worker.in_flight[0].tasks)
                raise self._error(
                    worker,
                    f"did not finish a batch of {n_tasks} tasks of generation {generation} within "
                    f"worker_timeout={self.worker_timeout:g} s",
                    "timed out",
                )

    def _send_bytes(self, worker: _ProcessWorker, data: bytes, generation: int) -> None:
        try:
            worker.connection.send_bytes(data)
        except (BrokenPipeError, OSError):
            raise self._death_error(worker, generation) from None
        self._bytes_sent += len(data)

    def _receive(self, worker: _ProcessWorker, starting: bool = False) -> tuple[str, Any]:
        try:
            data = worker.connection.recv_bytes()
        except (EOFError, OSError):
            worker.process.join(timeout=1.0)
            if starting:
                problem = (
                    f"{_describe_exit(worker.process.exitcode)} while starting (its error output is above; a script "
                    "that trains with workers must start training under `if __name__ == \"__main__\":`)"
                )
                raise self._error(worker, problem, "died") from None
            raise self._death_error(worker, None) from None
        if not starting:
            self._bytes_received += len(data)
        message = pickle.loads(data)
        if message[0] == "error":
            report: _ErrorReport = message[1]
            stage = "while starting" if starting else "while evaluating a batch of tasks"
            raise self._error(
                worker,
                f"raised {report.type_name} {stage}: {report.message}\n\nTraceback in the worker:\n{report.traceback}",
                f"{report.type_name}: {report.message}",
            )
        return message

    def _death_error(self, worker: _ProcessWorker, generation: Optional[int]) -> WorkerError:
        worker.process.join(timeout=1.0)
        during = "" if generation is None else f" during generation {generation}"
        return self._error(worker, f"{_describe_exit(worker.process.exitcode)}{during}", "died")

    def _error(self, worker: _ProcessWorker, problem: str, cause: str) -> WorkerError:
        message = (
            f"Worker {worker.index} (pid {worker.pid}) {problem}. All workers were stopped and the model is unchanged; "
            "the next learn() starts new workers."
        )
        return WorkerError(message, worker.index, worker.pid, cause)

    def _owner(self, handle: Any) -> _ProcessWorker:
        for worker in self._workers:
            if handle is worker.connection or handle == worker.process.sentinel:
                return worker
        raise RuntimeError(f"No worker owns handle {handle!r}.")

    def _abort(self) -> None:
        _stop_processes(self._workers, graceful=False)

    def close(self) -> None:
        _stop_processes(self._workers, graceful=True)


# Ray actors.


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as error:
        raise ImportError('backend="ray" needs Ray, which is not installed: pip install "sb3-satr[ray]"') from error
    return ray


class _RayWorker:
    """Body of a Ray actor: an ``EvaluationWorker`` behind Ray's method calls."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.worker = EvaluationWorker(settings)

    def describe(self) -> dict[str, Any]:
        return self.worker.describe()

    def run(self, job: GenerationJob, batch: TaskBatch) -> TaskBatchResult:
        return self.worker.run(batch, job)


def _stop_actors(ray: Any, actors: list) -> None:
    for actor in actors:
        if actor is None:
            continue
        try:
            ray.kill(actor, no_restart=True)
        except Exception:  # Ray may already be shut down at interpreter exit.
            pass
    actors.clear()


class RayBackend(WorkerBackend):
    """Ray actors, one CPU each, on a local Ray instance or a cluster.

    If Ray is not initialised yet, the backend calls ``ray.init(address=ray_address)``:
    with ``ray_address=None`` (and no ``RAY_ADDRESS`` variable) that starts a local Ray
    instance, which stays up until ``ray.shutdown()`` or interpreter exit. A batch whose
    actor is lost (its process or node died) runs once more on a new actor. A second loss
    of that batch, an exception raised in an actor or a timeout raises ``WorkerError``.

    :param ray_address: Address of a running Ray cluster, such as ``"127.0.0.1:6379"``.
    """

    name = "ray"

    def __init__(self, settings: WorkerSettings, n_workers: int, worker_timeout: float, ray_address: Optional[str]) -> None:
        super().__init__(settings, n_workers, worker_timeout)
        ray = _import_ray()
        self._ray = ray
        if not ray.is_initialized():
            ray.init(address=ray_address)
        elif ray_address is not None and ray_address != "auto" and "://" not in ray_address:
            connected = ray.get_runtime_context().gcs_address
            if connected != ray_address:
                raise ValueError(
                    f"Ray is already connected to {connected}, but ray_address={ray_address!r}. Call ray.shutdown() "
                    "first, or leave ray_address unset to use the running instance."
                )
        self._actor_class = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(_RayWorker)
        self._actors: list = [None] * self.n_workers
        self._descriptions: list[dict[str, Any]] = [{} for _ in range(self.n_workers)]
        self._finalizer = weakref.finalize(self, _stop_actors, ray, self._actors)
        try:
            for index in range(self.n_workers):
                self._actors[index] = self._actor_class.remote(settings)
            self._wait_until_ready(list(range(self.n_workers)))
        except BaseException:
            self._abort()
            raise

    @property
    def pids(self) -> list[Optional[int]]:
        """Process ids of the actors, in worker order."""
        return [description.get("pid") for description in self._descriptions]

    def _wait_until_ready(self, indices: list[int]) -> None:
        ray = self._ray
        references = {self._actors[index].describe.remote(): index for index in indices}
        ready, _ = ray.wait(list(references), num_returns=len(references), timeout=WORKER_START_TIMEOUT)
        for reference in ready:
            index = references[reference]
            try:
                self._descriptions[index] = ray.get(reference)
            except ray.exceptions.RayError as error:
                raise self._error(index, f"failed to start: {error}", f"start failed: {type(error).__name__}") from None
        for reference, index in references.items():
            if reference not in ready:
                raise self._error(index, f"did not start within {WORKER_START_TIMEOUT:.0f} s", "start timed out")

    def _run(self, job: GenerationJob, batches: list[TaskBatch], assembler: _Assembler) -> tuple[None, None]:
        ray = self._ray
        if not self._actors:
            raise RuntimeError("The Ray actors were stopped; SATR starts new ones at the next generation.")
        job_reference = ray.put(job)
        queue: deque = deque((batch, 0) for batch in batches)
        pending: dict[Any, tuple[int, TaskBatch, int]] = {}
        busy_since = [time.monotonic()] * self.n_workers

        def dispatch() -> None:
            for index in range(self.n_workers):
                in_flight = sum(1 for owner, _, _ in pending.values() if owner == index)
                while queue and in_flight < BATCHES_IN_FLIGHT:
                    batch, attempt = queue.popleft()
                    if in_flight == 0:
                        busy_since[index] = time.monotonic()
                    pending[self._actors[index].run.remote(job_reference, batch)] = (index, batch, attempt)
                    in_flight += 1

        dispatch()
        while pending:
            busy = {owner for owner, _, _ in pending.values()}
            deadline = min(busy_since[index] for index in busy) + self.worker_timeout
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=max(deadline - time.monotonic(), 0.0))
            for reference in ready:
                index, batch, attempt = pending.pop(reference)
                try:
                    result = ray.get(reference)
                except ray.exceptions.RayTaskError as error:
                    cause = error.cause if error.cause is not None else error
                    raise self._error(
                        index,
                        f"raised {type(cause).__name__} during generation {job.generation}: {cause}\n\n"
                        f"Traceback in the worker:\n{error}",
                        f"{type(cause).__name__}: {cause}",
                    ) from None
                except ray.exceptions.RayError as error:
                    self._replace_lost_actor(index, batch, attempt, error, pending, queue, job.generation)
                    continue
                assembler.add(index, result)
                busy_since[index] = time.monotonic()
            dispatch()
            now = time.monotonic()
            for index in {owner for owner, _, _ in pending.values()}:
                if now - busy_since[index] > self.worker_timeout:
                    raise self._error(
                        index,
                        f"did not finish a batch of generation {job.generation} within "
                        f"worker_timeout={self.worker_timeout:g} s",
                        "timed out",
                    )
        return None, None

    def _replace_lost_actor(
        self,
        index: int,
        batch: TaskBatch,
        attempt: int,
        error: Exception,
        pending: dict,
        queue: deque,
        generation: int,
    ) -> None:
        """Requeue the batches of a lost actor at the front and start a new actor in its place."""
        lost = [(batch, attempt)]
        for reference in [reference for reference, (owner, _, _) in pending.items() if owner == index]:
            _, other, other_attempt = pending.pop(reference)
            lost.append((other, other_attempt))
        if any(lost_attempt >= 1 for _, lost_attempt in lost):
            raise self._error(
                index,
                f"was lost twice running the same tasks during generation {generation}: {type(error).__name__}: {error}",
                f"lost: {type(error).__name__}",
            )
        description = self._descriptions[index]
        logger.warning(
            "Ray worker %d (pid %s on %s) was lost during generation %d (%s: %s); running its %d batches of "
            "tasks on a new actor.",
            index,
            description.get("pid"),
            description.get("host"),
            generation,
            type(error).__name__,
            error,
            len(lost),
        )
        for item in reversed(lost):
            queue.appendleft((item[0], item[1] + 1))
        try:
            self._ray.kill(self._actors[index], no_restart=True)
        except Exception:  # The actor is already gone.
            pass
        self._actors[index] = self._actor_class.remote(self.settings)
        self._descriptions[index] = {}
        self._wait_until_ready([index])

    def _error(self, index: int, problem: str, cause: str) -> WorkerError:
        description = self._descriptions[index] if index < len(self._descriptions) else {}
        pid = description.get("pid")
        where = f"pid {pid} on {description.get('host')}" if pid is not None else "not started"
        message = (
            f"Ray worker {index} ({where}) {problem}. All actors were stopped and the model is unchanged; "
            "the next learn() starts new actors."
        )
        return WorkerError(message, index, pid, cause)

    def _abort(self) -> None:
        _stop_actors(self._ray, self._actors)

    def close(self) -> None:
        _stop_actors(self._ray, self._actors)


def make_backend(
    name: BackendName,
    settings: WorkerSettings,
    n_workers: int,
    worker_timeout: float,
    ray_address: Optional[str],
) -> WorkerBackend:
    """Start the workers of backend ``name`` (``"processes"`` or ``"ray"``)."""
    if name == "processes":
        return ProcessPoolBackend(settings, n_workers, worker_timeout)
    if name == "ray":
        return RayBackend(settings, n_workers, worker_timeout, ray_address)
    raise ValueError(f"Backend {name!r} has no workers; expected 'processes' or 'ray'.")
