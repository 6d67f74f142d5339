"""Parallel population evaluation: identical results on every backend, worker faults, settings."""

import gc
import importlib.util
import json
import logging
import multiprocessing
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.callbacks import StopTrainingOnMaxEpisodes
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from sb3_satr import SATR
from sb3_satr.parallel import WorkerError

pytestmark = pytest.mark.parallel

TESTS_DIR = Path(__file__).resolve().parent
SMALL = dict(population_size=8, n_eval_episodes=2, policy_kwargs=dict(n_neurons=16))

# Worker processes import the env class through this entry point. Spawned and forkserver
# workers inherit this process's sys.path, which contains the tests folder.
FAULTY_ID = "FaultyCartPole-v0"
if FAULTY_ID not in gym.registry:
    gym.register(FAULTY_ID, entry_point="faulty_envs:FaultyCartPole", max_episode_steps=500)

# Ray 2.60 binds its servers to the machine's address, even for a local instance. With
# this variable set to 0 before ray is imported, it uses 127.0.0.1 only.
RAY_LOOPBACK_VARIABLE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@dataclass
class Outcome:
    """Results that must not depend on the backend, after each of two generations."""

    fitness: list
    probabilities: list
    obs_count: float
    obs_mean: np.ndarray
    obs_var: np.ndarray


def train_two_generations(env="CartPole-v1", **kwargs):
    model = SATR(env, seed=3, **SMALL, **kwargs)
    try:
        fitness, probabilities = [], []
        for _ in range(2):
            model.learn(1, reset_num_timesteps=False)
            fitness.append(model._last_fitness.copy())
            probabilities.append(model.policy.probabilities_array.copy())
        return Outcome(
            fitness=fitness,
            probabilities=probabilities,
            obs_count=model.policy.obs_count.item(),
            obs_mean=model.policy.obs_mean.numpy().copy(),
            obs_var=model.policy.obs_var.numpy().copy(),
        )
    finally:
        model.close_workers()


def assert_same_outcome(result, reference):
    for generation in range(2):
        np.testing.assert_array_equal(result.fitness[generation], reference.fitness[generation])
        np.testing.assert_array_equal(result.probabilities[generation], reference.probabilities[generation])
    assert result.obs_count == reference.obs_count
    np.testing.assert_array_equal(result.obs_mean, reference.obs_mean)
    np.testing.assert_array_equal(result.obs_var, reference.obs_var)


def process_is_gone(pid, wait_seconds=10.0):
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def reference():
    return train_two_generations()


# Settings.


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_workers=-1), "n_workers"),
        (dict(n_workers=1.5), "n_workers"),
        (dict(backend="threads", n_workers=1), "backend"),
        (dict(backend="inprocess", n_workers=2), "n_workers"),
        (dict(backend="processes"), "n_workers"),
        (dict(n_workers=1, envs_per_worker=0), "envs_per_worker"),
        (dict(envs_per_worker=2), "envs_per_worker"),
        (dict(n_workers=1, worker_timeout=0.0), "worker_timeout"),
        (dict(n_workers=1, worker_timeout=float("inf")), "worker_timeout"),
        (dict(n_workers=1, ray_address="127.0.0.1:6379"), "ray_address"),
    ],
)
def test_invalid_parallel_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SATR("CartPole-v1", **SMALL, **kwargs)


def test_backend_defaults_follow_n_workers():
    assert SATR("CartPole-v1", **SMALL).backend == "inprocess"
    assert SATR("CartPole-v1", n_workers=2, **SMALL).backend == "processes"


def test_ray_backend_without_ray_raises(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r'pip install "sb3-satr\[ray\]"'):
        SATR("CartPole-v1", n_workers=1, backend="ray", **SMALL)


def test_vecnormalize_rejected_for_workers():
    env = VecNormalize(make_vec_env("CartPole-v1", n_envs=1))
    with pytest.raises(ValueError, match="VecNormalize"):
        SATR(env, n_workers=1, **SMALL)


def test_env_without_spec_rejected_for_workers():
    cartpole = gym.make("CartPole-v1").unwrapped
    env = DummyVecEnv([lambda: gym.wrappers.TimeLimit(cartpole, 50)])
    env.envs[0].unwrapped.spec = None
    with pytest.raises(ValueError, match="no spec"):
        SATR(env, n_workers=1, **SMALL)


def test_wrapper_without_arguments_rejected_for_workers():
    class Halve(gym.RewardWrapper):
        def reward(self, reward):
            return 0.5 * reward

    with pytest.raises(ValueError, match="cannot rebuild the wrapper Halve"):
        SATR(Halve(gym.make("CartPole-v1")), n_workers=1, **SMALL)


def test_load_restores_settings_without_workers():
    model = SATR("CartPole-v1", n_workers=2, envs_per_worker=3, worker_timeout=30.0, **SMALL)
    model.save("model")
    children = set(multiprocessing.active_children())
    loaded = SATR.load("model", env=make_vec_env("CartPole-v1"))
    assert loaded._workers is None
    assert (loaded.n_workers, loaded.backend, loaded.envs_per_worker, loaded.worker_timeout) == (2, "processes", 3, 30.0)
    assert set(multiprocessing.active_children()) == children


def test_load_overrides_backend():
    SATR("CartPole-v1", **SMALL).save("model")
    loaded = SATR.load("model", env=make_vec_env("CartPole-v1"), n_workers=2, backend="processes")
    assert (loaded.n_workers, loaded.backend) == (2, "processes")
    with pytest.raises(ValueError, match="n_workers"):
        SATR.load("model", env=make_vec_env("CartPole-v1"), n_workers=2)


# Worker processes.


@pytest.mark.parametrize("kwargs", [dict(n_workers=1), dict(n_workers=2, envs_per_worker=3)], ids=["1 worker", "2 workers"])
def test_processes_match_in_process(reference, kwargs):
    assert_same_outcome(train_two_generations(**kwargs), reference)


def test_workers_stop_on_close_and_collection():
    model = SATR("CartPole-v1", seed=0, n_workers=1, **SMALL)
    model.learn(1)
    pid = model._workers.pids[0]
    model.save("while_running")
    model.close_workers()
    assert process_is_gone(pid)

    model.learn(1, reset_num_timesteps=False)
    pid = model._workers.pids[0]
    del model
    gc.collect()
    assert process_is_gone(pid)


def test_stop_callback_with_workers_keeps_model():
    model = SATR("CartPole-v1", seed=0, n_workers=1, **SMALL)
    before = model.policy.probabilities_array.copy()
    model.learn(100_000, callback=StopTrainingOnMaxEpisodes(max_episodes=4))
    model.close_workers()
    assert model._n_generations == 0
    assert len(model.ep_info_buffer) == 16
    np.testing.assert_array_equal(model.policy.probabilities_array, before)


def test_killed_worker_raises_and_keeps_model(reference, tmp_path):
    env = gym.make(FAULTY_ID, failure="kill", spare_pid=os.getpid(), once_marker=str(tmp_path / "killed"))
    model = SATR(env, seed=3, n_workers=2, worker_timeout=60.0, **SMALL)
    before = model.policy.probabilities_array.copy()
    started = time.monotonic()
    with pytest.raises(WorkerError, match=r"Worker [01] \(pid \d+\) was killed by signal SIGKILL") as caught:
        model.learn(1)
    assert time.monotonic() - started < 60.0
    assert caught.value.cause == "died"
    np.testing.assert_array_equal(model.policy.probabilities_array, before)
    assert model.policy.obs_count.item() == 0
    assert model.num_timesteps == 0

    model.save("after_failure")
    np.testing.assert_array_equal(SATR.load("after_failure").policy.probabilities_array, before)

    # The marker is set, so new workers play normally and reach the in-process result.
    model.learn(1)
    model.close_workers()
    np.testing.assert_array_equal(model.policy.probabilities_array, reference.probabilities[0])


def test_env_error_in_worker_names_worker_and_cause():
    env = gym.make(FAULTY_ID, failure="raise", spare_pid=os.getpid())
    model = SATR(env, seed=3, n_workers=1, **SMALL)
    before = model.policy.probabilities_array.copy()
    with pytest.raises(WorkerError, match=r"Worker 0 \(pid \d+\) raised RuntimeError") as caught:
        model.learn(1)
    assert "FaultyCartPole failed on purpose at step 3" in str(caught.value)
    assert caught.value.cause == "RuntimeError: FaultyCartPole failed on purpose at step 3"
    assert caught.value.worker_index == 0
    assert process_is_gone(caught.value.pid)
    np.testing.assert_array_equal(model.policy.probabilities_array, before)
    model.save("after_error")


def test_hanging_worker_times_out():
    env = gym.make(FAULTY_ID, failure="hang", spare_pid=os.getpid(), hang_seconds=300.0)
    model = SATR(env, seed=3, n_workers=1, worker_timeout=2.0, **SMALL)
    started = time.monotonic()
    with pytest.raises(WorkerError, match=r"Worker 0 \(pid \d+\) did not finish .* within worker_timeout=2 s") as caught:
        model.learn(1)
    # Starting the worker takes a few seconds on a busy machine; the hang lasts 300 s.
    assert time.monotonic() - started < 60.0
    assert caught.value.cause == "timed out"
    assert process_is_gone(caught.value.pid)


# Ray.


@pytest.fixture(scope="class")
def local_ray():
    """A local Ray instance with 2 CPUs that listens on 127.0.0.1 only."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed")
    if "ray" in sys.modules and os.environ.get(RAY_LOOPBACK_VARIABLE) != "0":
        pytest.skip(f"ray was imported before {RAY_LOOPBACK_VARIABLE}=0 could keep it on loopback")
    # ray.init sets RAY_AUTH_MODE in this process; it is restored afterwards with the others.
    saved = {name: os.environ.get(name) for name in (RAY_LOOPBACK_VARIABLE, "PYTHONPATH", "RAY_AUTH_MODE")}
    os.environ[RAY_LOOPBACK_VARIABLE] = "0"
    # Ray workers do not inherit sys.path; they need the tests folder for faulty_envs.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), saved["PYTHONPATH"]]))
    import ray

    # address="local" starts a new instance even if a `ray start` cluster is registered on this machine.
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, log_to_driver=False
    )
    try:
        address = ray.get_runtime_context().gcs_address
        assert address.startswith("127.0.0.1:"), f"Ray listens on {address}, not on loopback"
        yield ray
    finally:
        ray.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.mark.usefixtures("local_ray")
class TestRay:
    def test_ray_matches_in_process(self, reference):
        assert_same_outcome(train_two_generations(n_workers=2, backend="ray", envs_per_worker=2), reference)

    def test_killed_actor_is_rerun(self, reference, tmp_path, caplog):
        marker = tmp_path / "killed"
        env = gym.make(FAULTY_ID, failure="kill", spare_pid=os.getpid(), once_marker=str(marker))
        model = SATR(env, seed=3, n_workers=2, backend="ray", worker_timeout=60.0, **SMALL)
        with caplog.at_level(logging.WARNING, logger="sb3_satr.parallel"):
            model.learn(1)
        model.close_workers()
        assert marker.exists()
        assert "was lost during generation 0" in caplog.text
        np.testing.assert_array_equal(model._last_fitness, reference.fitness[0])
        np.testing.assert_array_equal(model.policy.probabilities_array, reference.probabilities[0])

    def test_env_error_in_actor_names_worker_and_cause(self):
        env = gym.make(FAULTY_ID, failure="raise", spare_pid=os.getpid())
        model = SATR(env, seed=3, n_workers=2, backend="ray", **SMALL)
        before = model.policy.probabilities_array.copy()
        with pytest.raises(WorkerError, match=r"Ray worker [01] \(pid \d+ on .+\) raised RuntimeError") as caught:
            model.learn(1)
        assert caught.value.cause == "RuntimeError: FaultyCartPole failed on purpose at step 3"
        np.testing.assert_array_equal(model.policy.probabilities_array, before)


def free_loopback_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port, process, wait_seconds=120.0):
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"ray start exited with code {process.returncode}"
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"The Ray head did not listen on 127.0.0.1:{port} within {wait_seconds:.0f} s")


DRIVER = textwrap.dedent(
    """
    import json
    import sys

    from sb3_satr import SATR

    model = SATR("CartPole-v1", seed=3, population_size=8, n_eval_episodes=2, policy_kwargs=dict(n_neurons=16),
                 n_workers=2, backend="ray", ray_address=sys.argv[1])
    model.learn(1)
    model.close_workers()
    print("fitness", json.dumps(model._last_fitness.tolist()))
    """
)


def test_ray_cluster_recipe_on_loopback(reference, tmp_path):
    """The documented recipe: `ray start --head`, then a driver that connects by address."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed")
    ray_command = Path(sys.executable).with_name("ray")
    port = free_loopback_port()

    # A driver that connects by address uses token authentication only with RAY_AUTH_MODE=token.
    token_file = tmp_path / "ray_auth_token"
    token_file.write_text(secrets.token_hex(32))
    environment = dict(
        os.environ,
        **{RAY_LOOPBACK_VARIABLE: "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file)},
    )

    # A temp dir of its own keeps the head out of /tmp/ray, where `ray start` would leave
    # its address for later ray.init() calls on this machine. It is short because Ray puts
    # Unix sockets in it.
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    # With --block, `ray start` stays in the foreground and stops the head's processes when terminated.
    head = subprocess.Popen(
        [str(ray_command), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
         "--num-cpus", "2", "--include-dashboard", "false", "--object-store-memory", str(200 * 1024**2),
         "--temp-dir", temp_dir],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, head)

        driver = subprocess.run(
            [sys.executable, "-c", DRIVER, f"127.0.0.1:{port}"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert driver.returncode == 0, driver.stderr[-3000:]

        line = next(line for line in driver.stdout.splitlines() if line.startswith("fitness"))
        np.testing.assert_array_equal(np.array(json.loads(line.split(" ", 1)[1])), reference.fitness[0])
    finally:
        head.terminate()
        head.wait(timeout=60)
        shutil.rmtree(temp_dir, ignore_errors=True)
