"""Tests of the RL Zoo launcher.

Every run is a subprocess of ``python -m sb3_satr.zoo`` in a temporary working folder,
because rl-zoo3 writes ``logs/`` into the working folder and patches gymnasium's
``TimeLimit`` in the process that imports it. Budgets are a few thousand steps, so the runs
check the plumbing, not learning.
"""

from __future__ import annotations

import csv
import inspect
import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import optuna
import pytest
import yaml

from sb3_satr.zoo.configs import shipped_config_path
from sb3_satr.zoo.hyperparams import sample_satr_params

REPOSITORY = Path(__file__).resolve().parents[1]
ZOO_CONFIGS = REPOSITORY / "zoo_configs"
TASKS = (
    "CartPole-v1",
    "Pendulum-v1",
    "Hopper-v5",
    "Walker2d-v5",
    "HalfCheetah-v5",
    "Ant-v5",
    "Swimmer-v5",
    "Humanoid-v5",
    "default",
)
# Hyperparameter keys that rl-zoo3 2.9.2 consumes itself instead of passing them to the model.
RL_ZOO_KEYS = {
    "n_timesteps",
    "n_envs",
    "normalize",
    "env_wrapper",
    "vec_env_wrapper",
    "frame_stack",
    "monitor_kwargs",
    "env_kwargs",
    "callback",
}
# A small network and population so that a CartPole run takes seconds.
SMALL_SATR = ["--hyperparams", "population_size:8", "policy_kwargs:dict(n_neurons=64)"]
RUN_TIMEOUT_S = 240


def run_zoo(cwd: Path, *arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m sb3_satr.zoo ARGUMENTS`` in ``cwd`` and return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "sb3_satr.zoo", *arguments],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )


def output_of(result: subprocess.CompletedProcess[str]) -> str:
    """Return the end of a run's stdout and stderr, for assertion messages."""
    return f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"


def saved_run_folder(result: subprocess.CompletedProcess[str]) -> str:
    """Return the run folder from rl-zoo's ``Saving to FOLDER`` line, or "" if it is missing."""
    match = re.search(r"^Saving to (\S+)$", result.stdout, flags=re.MULTILINE)
    return match.group(1) if match else ""


def saved_num_timesteps(model_zip: Path) -> int:
    """Read ``num_timesteps`` from the JSON ``data`` entry of a Stable-Baselines3 zip."""
    with zipfile.ZipFile(model_zip) as archive:
        return int(json.loads(archive.read("data"))["num_timesteps"])


@pytest.fixture(scope="module")
def satr_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Train SATR on CartPole-v1 for 2,000 steps once and share the logs between tests."""
    folder = tmp_path_factory.mktemp("satr_run")
    result = run_zoo(
        folder,
        "train", "--algo", "satr", "--env", "CartPole-v1", "-n", "2000",
        "--eval-freq", "-1", "--seed", "1", "-f", "logs", *SMALL_SATR,
    )  # fmt: skip
    return folder, result


def test_import_sb3_satr_skips_rl_zoo(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "import sb3_satr\n"
        "print('after sb3_satr:', 'rl_zoo3' in sys.modules)\n"
        "import sb3_satr.zoo\n"
        "print('after sb3_satr.zoo:', 'rl_zoo3' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, output_of(result)
    assert "after sb3_satr: False" in result.stdout
    assert "after sb3_satr.zoo: False" in result.stdout


def test_launcher_rejects_unknown_command(tmp_path: Path) -> None:
    result = run_zoo(tmp_path, "tran", "--algo", "satr")

    assert result.returncode == 2
    assert "unknown command 'tran'" in result.stderr


def test_console_script_prints_usage(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("sb3-satr-zoo")

    result = subprocess.run([str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, output_of(result)
    assert "record_video" in result.stdout


def test_train_satr_saves_zip(satr_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    folder, result = satr_run
    run_folder = folder / "logs" / "satr" / "CartPole-v1_1"

    assert result.returncode == 0, output_of(result)
    assert f"Loading hyperparameters from: {shipped_config_path('satr')}" in result.stdout
    assert (run_folder / "CartPole-v1.zip").is_file()
    assert saved_num_timesteps(run_folder / "CartPole-v1.zip") >= 2000
    config = yaml.unsafe_load((run_folder / "CartPole-v1" / "config.yml").read_text())
    assert dict(config)["population_size"] == 8
    args = yaml.unsafe_load((run_folder / "CartPole-v1" / "args.yml").read_text())
    assert dict(args)["conf_file"] == str(shipped_config_path("satr"))


def test_enjoy_satr_prints_returns(satr_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    folder, train_result = satr_run
    assert train_result.returncode == 0, output_of(train_result)

    result = run_zoo(
        folder,
        "enjoy", "--algo", "satr", "--env", "CartPole-v1", "-f", "logs", "--exp-id", "1",
        "--no-render", "-n", "1200",
    )  # fmt: skip

    assert result.returncode == 0, output_of(result)
    assert "Episode Reward:" in result.stdout
    assert "Mean reward:" in result.stdout


def test_continue_satr_with_i(satr_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    folder, train_result = satr_run
    assert train_result.returncode == 0, output_of(train_result)
    first_zip = folder / "logs" / "satr" / "CartPole-v1_1" / "CartPole-v1.zip"
    first_steps = saved_num_timesteps(first_zip)

    result = run_zoo(
        folder,
        "train", "--algo", "satr", "--env", "CartPole-v1", "-n", "1000", "-i", str(first_zip),
        "--eval-freq", "-1", "--seed", "2", "-f", "logs", "--hyperparams", "population_size:8",
    )  # fmt: skip
    second_zip = folder / saved_run_folder(result) / "CartPole-v1.zip"

    assert result.returncode == 0, output_of(result)
    assert "Loading pretrained agent" in result.stdout
    assert saved_run_folder(result).startswith("logs/satr/CartPole-v1_")
    assert saved_run_folder(result) != "logs/satr/CartPole-v1_1"
    assert second_zip.is_file()
    assert saved_num_timesteps(second_zip) >= first_steps + 1000


def test_continue_satr_with_schedule(satr_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    folder, train_result = satr_run
    assert train_result.returncode == 0, output_of(train_result)
    first_zip = folder / "logs" / "satr" / "CartPole-v1_1" / "CartPole-v1.zip"

    result = run_zoo(
        folder,
        "train", "--algo", "satr", "--env", "CartPole-v1", "-n", "1000", "-i", str(first_zip),
        "--eval-freq", "-1", "--seed", "2", "-f", "logs",
        "--hyperparams", "population_size:8", "update:'ec'", "learning_rate:'lin_0.15'",
    )  # fmt: skip

    assert result.returncode == 0, output_of(result)


def test_optimize_satr_two_trials(tmp_path: Path) -> None:
    result = run_zoo(
        tmp_path,
        "train", "--algo", "satr", "--env", "CartPole-v1", "-optimize", "--n-trials", "2",
        "-n", "1000", "--eval-episodes", "2", "--sampler", "random", "--pruner", "none",
        "--no-optim-plots", "--seed", "3", "-f", "logs",
    )  # fmt: skip
    reports = sorted((tmp_path / "logs" / "satr").glob("report_CartPole-v1_2-trials-1000-random-none_*.csv"))

    assert result.returncode == 0, output_of(result)
    assert "Number of finished trials:  2" in result.stdout
    assert len(reports) == 1
    with reports[0].open(newline="") as handle:
        trials = list(csv.DictReader(handle))
    assert [trial["state"] for trial in trials] == ["COMPLETE", "COMPLETE"]
    assert all(trial["params_population_size_pow"] for trial in trials)
    assert all(trial["params_n_neurons"] for trial in trials)


def test_ppo_lstm_runs_from_shipped_config(tmp_path: Path) -> None:
    train = run_zoo(
        tmp_path,
        "train", "--algo", "ppo_lstm", "--env", "CartPole-v1", "-n", "256",
        "--eval-freq", "-1", "--seed", "4", "-f", "logs",
        # 2 epochs instead of the entry's 20: LSTM updates take seconds each on 2 cores.
        "--hyperparams", "n_epochs:2",
    )  # fmt: skip
    run_folder = tmp_path / "logs" / "ppo_lstm" / "CartPole-v1_1"

    assert train.returncode == 0, output_of(train)
    assert f"Loading hyperparameters from: {shipped_config_path('ppo_lstm')}" in train.stdout
    assert (run_folder / "CartPole-v1.zip").is_file()
    # The CartPole-v1 entry normalizes observations, so enjoy must load the statistics.
    assert (run_folder / "CartPole-v1" / "vecnormalize.pkl").is_file()

    enjoy = run_zoo(
        tmp_path,
        "enjoy", "--algo", "ppo_lstm", "--env", "CartPole-v1", "-f", "logs", "--no-render", "-n", "300",
    )  # fmt: skip

    assert enjoy.returncode == 0, output_of(enjoy)
    assert "Loading running average" in enjoy.stdout
    assert "Mean reward:" in enjoy.stdout


def test_ars_runs_from_shipped_config(tmp_path: Path) -> None:
    result = run_zoo(
        tmp_path,
        "train", "--algo", "ars", "--env", "Pendulum-v1", "-n", "2000",
        "--eval-freq", "-1", "--seed", "5", "-f", "logs",
    )  # fmt: skip
    run_folder = tmp_path / "logs" / "ars" / "Pendulum-v1_1"

    assert result.returncode == 0, output_of(result)
    assert f"Loading hyperparameters from: {shipped_config_path('ars')}" in result.stdout
    assert (run_folder / "Pendulum-v1.zip").is_file()
    assert (run_folder / "Pendulum-v1" / "vecnormalize.pkl").is_file()


def test_record_video_satr_hopper(tmp_path: Path) -> None:
    # Without a display MuJoCo renders off-screen through EGL. CartPole-v1 would need pygame.
    env = {**os.environ, "MUJOCO_GL": "egl"}
    train = run_zoo(
        tmp_path,
        "train", "--algo", "satr", "--env", "Hopper-v5", "-n", "1000",
        "--eval-freq", "-1", "--seed", "6", "-f", "logs", *SMALL_SATR,
        env=env,
    )  # fmt: skip
    assert train.returncode == 0, output_of(train)

    record = run_zoo(
        tmp_path,
        "record_video", "--algo", "satr", "--env", "Hopper-v5", "-f", "logs", "-n", "100", "--no-render",
        env=env,
    )  # fmt: skip
    videos = list((tmp_path / "logs" / "satr" / "Hopper-v5_1" / "videos").glob("*.mp4"))

    assert record.returncode == 0, output_of(record)
    assert len(videos) == 1
    assert videos[0].stat().st_size > 0


def test_sampler_converts_snr_budget() -> None:
    trial = optuna.trial.FixedTrial(
        {
            "population_size_pow": 5,
            "alive_bonus_offset": -1.0,
            "signal_estimator": "split_half",
            "trust_region_budget": "snr",
            "target_kl_snr": 20.0,
            "n_neurons": 128,
        }
    )

    hyperparams = sample_satr_params(trial, n_actions=3, n_envs=1, additional_args={})

    assert hyperparams == {
        "population_size": 32,
        "alive_bonus_offset": -1.0,
        "signal_estimator": "split_half",
        "trust_region_budget": "snr",
        "target_kl": 20.0,
        "kl_reduction": "mean",
        "policy_kwargs": {"n_neurons": 128},
    }


@pytest.mark.parametrize("algo", ["satr", "ars", "ppo_lstm"])
def test_shipped_config_covers_tasks(algo: str) -> None:
    hyperparams = yaml.safe_load((ZOO_CONFIGS / f"{algo}.yml").read_text())

    assert set(TASKS) <= set(hyperparams)
    assert not [key for key in hyperparams if key.endswith("-v4")]


def test_satr_config_keys_match_constructor() -> None:
    from sb3_satr import SATR
    from sb3_satr.network.spec import NetworkSpec
    from sb3_satr.policies import RSNNPolicy

    constructor_keys = set(inspect.signature(SATR.__init__).parameters) - {"self"}
    policy_keys = set(inspect.signature(RSNNPolicy.__init__).parameters) - {"self", "network_kwargs"}
    policy_keys |= {field.name for field in NetworkSpec.__dataclass_fields__.values()}
    hyperparams = yaml.safe_load((ZOO_CONFIGS / "satr.yml").read_text())

    for task, entry in hyperparams.items():
        unknown = set(entry) - constructor_keys - RL_ZOO_KEYS
        assert not unknown, f"{task}: {sorted(unknown)} are not SATR arguments"
        policy_kwargs = eval(entry.get("policy_kwargs", "dict()"))  # rl-zoo evaluates this string too
        unknown_policy = set(policy_kwargs) - policy_keys
        assert not unknown_policy, f"{task}: {sorted(unknown_policy)} are not RSNNPolicy arguments"


def test_pyproject_lists_every_subpackage() -> None:
    """pyproject.toml lists the packages by hand, so a subpackage missing there is missing from wheels."""
    setuptools_config = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools_config["packages"])
    on_disk = {
        ".".join(Path(folder).relative_to(REPOSITORY).parts)
        for folder, _, files in os.walk(REPOSITORY / "sb3_satr")
        if any(name.endswith(".py") for name in files)
    }

    assert on_disk <= listed, f"add {sorted(on_disk - listed)} to [tool.setuptools] packages"
    assert setuptools_config["package-dir"]["sb3_satr.zoo_configs"] == "zoo_configs"
