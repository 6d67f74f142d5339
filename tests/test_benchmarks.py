"""The comparison benchmark end to end on CartPole-v1, and the definitions of its report.

``benchmarks/compare.py`` runs real rl-zoo models in child processes and
``benchmarks/report.py`` turns their JSON into tables and PNG plots. Both run here as
subprocesses, as a user runs them, with a budget of a few seconds per run.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_report_module():
    spec = importlib.util.spec_from_file_location("benchmark_report", BENCHMARKS / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def evaluations(*returns: float) -> list[dict[str, float]]:
    return [{"return_mean": value, "env_steps": 1 + 1000 * index, "wall_seconds": 10.0 * index} for index, value in enumerate(returns)]


def test_collapse_needs_two_low_evaluations():
    report = load_report_module()
    assert report.collapsed(evaluations(0.0, 100.0, 1000.0, 400.0, 300.0))
    assert not report.collapsed(evaluations(0.0, 100.0, 1000.0, 400.0, 600.0))
    assert not report.collapsed(evaluations(0.0, 100.0, 1000.0, 1200.0, 300.0))


def test_collapse_ignores_the_evaluation_before_training():
    report = load_report_module()
    untrained_then_low = [{"return_mean": 200.0, "env_steps": 1, "wall_seconds": 0.0}] + evaluations(20.0, 30.0, 40.0)[1:]
    untrained_then_low[1]["env_steps"] = 5000
    assert not report.collapsed(untrained_then_low)


def test_first_reaching_threshold():
    report = load_report_module()
    assert report.first_reaching(evaluations(10.0, 999.0, 1000.0, 2000.0), 1000.0) == {"wall_seconds": 20.0, "env_steps": 2001}
    assert report.first_reaching(evaluations(10.0, 999.0), 1000.0) is None


@pytest.fixture(scope="module")
def cartpole_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("compare")
    command = [
        sys.executable, str(BENCHMARKS / "compare.py"), "--study", "curves", "--envs", "CartPole-v1",
        "--algos", "satr", "ars", "--seeds", "0", "--minutes", "0.1", "--eval-interval", "2",
        "--eval-episodes", "2", "--jobs", "2", "--output-dir", str(folder / "results"),
    ]
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return folder


@pytest.mark.parametrize("name", ["CartPole-v1_satr_seed0", "CartPole-v1_ars_seed0"])
def test_compare_writes_one_json_per_run(cartpole_study: Path, name: str):
    run = json.loads((cartpole_study / "results" / "runs" / f"{name}.json").read_text())
    assert run["name"] == name
    assert 5.0 <= run["training_seconds"] <= 30.0
    assert run["env_steps"] > 0
    assert run["evaluations"][-1]["env_steps"] == run["env_steps"]
    assert all(len(record["returns"]) == 2 for record in run["evaluations"])


def test_compare_records_satr_generations(cartpole_study: Path):
    run = json.loads((cartpole_study / "results" / "runs" / "CartPole-v1_satr_seed0.json").read_text())
    assert run["generations"]
    assert all(record["kl_per_connection"] >= 0.0 for record in run["generations"])


def test_compare_writes_a_manifest_with_machine_and_versions(cartpole_study: Path):
    manifest = json.loads((cartpole_study / "results" / "manifest.json").read_text())
    assert manifest["versions"]["stable_baselines3"]
    assert manifest["machine"]["cpus"] >= 1
    assert "compare.py" in manifest["command"]


def test_report_writes_summary_and_plot(cartpole_study: Path):
    images = cartpole_study / "images"
    command = [sys.executable, str(BENCHMARKS / "report.py"), "--input-dir", str(cartpole_study / "results"), "--images-dir", str(images)]
    result = subprocess.run(command, cwd=cartpole_study, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (images / "curves_CartPole-v1.png").stat().st_size > 10_000
    summary = json.loads((cartpole_study / "results.json").read_text())
    assert set(summary["runs"]) == {"CartPole-v1_satr_seed0", "CartPole-v1_ars_seed0"}
    assert "| SATR | 0 |" in result.stdout
