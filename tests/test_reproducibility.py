"""Same seed, same result: across runs, numba thread counts and sub-environment counts."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
from stable_baselines3.common.env_util import make_vec_env

from sb3_satr import SATR

SMALL = dict(population_size=6, policy_kwargs=dict(n_neurons=24))

TRAIN_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    import numpy as np
    from stable_baselines3.common.callbacks import BaseCallback
    from sb3_satr import SATR

    class Curve(BaseCallback):
        def __init__(self):
            super().__init__()
            self.fitness = []

        def _on_rollout_end(self):
            if self.model._last_fitness is not None:
                self.fitness.append([float(value) for value in self.model._last_fitness])

        def _on_step(self):
            return True

    model = SATR("Pendulum-v1", population_size=6, policy_kwargs=dict(n_neurons=40), seed=11)
    curve = Curve()
    model.learn(6000, callback=curve)
    model.save("model")
    digest = hashlib.sha256(model.policy.probabilities_array.tobytes()).hexdigest()
    statistics = hashlib.sha256(model.policy.obs_mean.numpy().tobytes() + model.policy.obs_var.numpy().tobytes()).hexdigest()
    print(json.dumps({"probabilities": digest, "statistics": statistics, "curve": curve.fitness}))
    """
)


def run_with_threads(n_threads, folder):
    env = dict(os.environ, NUMBA_NUM_THREADS=str(n_threads))
    completed = subprocess.run(
        [sys.executable, "-c", TRAIN_SCRIPT], cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_same_result_with_one_and_two_numba_threads(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = run_with_threads(1, tmp_path / "one")
    two = run_with_threads(2, tmp_path / "two")
    assert len(one["curve"]) >= 2
    assert one["curve"] == two["curve"]
    assert one["probabilities"] == two["probabilities"]
    assert one["statistics"] == two["statistics"]


def test_same_seed_same_probabilities():
    first = SATR("CartPole-v1", seed=7, **SMALL)
    first.learn(300)
    second = SATR("CartPole-v1", seed=7, **SMALL)
    second.learn(300)
    np.testing.assert_array_equal(first.policy.probabilities_array, second.policy.probabilities_array)
    np.testing.assert_array_equal(first._last_fitness, second._last_fitness)


def test_different_seeds_differ():
    first = SATR("CartPole-v1", seed=7, **SMALL)
    first.learn(300)
    second = SATR("CartPole-v1", seed=8, **SMALL)
    second.learn(300)
    assert not np.array_equal(first.policy.probabilities_array, second.policy.probabilities_array)


def test_same_result_with_different_n_envs():
    results = []
    for n_envs in (1, 4):
        model = SATR(make_vec_env("Pendulum-v1", n_envs=n_envs, seed=n_envs), seed=3, **SMALL)
        for _ in range(2):
            model.learn(1, reset_num_timesteps=False)  # one generation per call
        results.append(model)
    assert results[0]._n_generations == results[1]._n_generations == 2
    np.testing.assert_array_equal(results[0]._last_fitness, results[1]._last_fitness)
    np.testing.assert_array_equal(results[0].policy.probabilities_array, results[1].policy.probabilities_array)
    np.testing.assert_array_equal(results[0].policy.obs_mean.numpy(), results[1].policy.obs_mean.numpy())
