"""Tables, plots and a summary JSON from the runs of ``benchmarks/compare.py``.

    python benchmarks/report.py                                   # benchmarks/results/compare
    python benchmarks/report.py --input-dir benchmarks/results/compare_quick --images-dir /tmp/plots

Reads ``<input-dir>/runs/*.json`` and ``<input-dir>/manifest.json``; writes
``<input-dir>.json`` (the summary), PNG plots into ``--images-dir`` and Markdown tables to
standard output.

Definitions used in the tables:

- final return: the mean return of the last evaluation, taken when the budget ran out;
- time to a threshold: training wall clock (and env steps) of the first evaluation whose
  mean return reached it;
- collapse: the run's last two evaluations both lie below half of its best evaluation, the
  evaluation before any training left out;
- realised KL: ``KL(new || old)`` of each generation's update, per connection.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from collections import defaultdict
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

THRESHOLDS = {"Hopper-v5": (1000.0, 2000.0), "HalfCheetah-v5": (1000.0, 2000.0), "Walker2d-v5": (1000.0, 2000.0)}
ALGO_LABELS = {"satr": "SATR", "satr_ec": "SATR-EC", "ars": "ARS", "ppo_lstm": "RecurrentPPO"}
ALGO_COLORS = {"satr": "tab:blue", "satr_ec": "tab:orange", "ars": "tab:green", "ppo_lstm": "tab:red"}
PACKAGES = ("sb3_satr", "stable_baselines3", "sb3_contrib", "rl_zoo3", "gymnasium", "mujoco", "numpy", "numba", "torch")


def machine_and_versions() -> dict[str, Any]:
    processor = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    processor = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package.replace("_", "-"))
        except metadata.PackageNotFoundError:
            versions[package] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "machine": {"processor": processor, "cpus": os.cpu_count(), "system": platform.platform()},
        "versions": versions,
        "git_commit": commit,
    }


def first_reaching(evaluations: list[dict[str, Any]], threshold: float) -> dict[str, float] | None:
    for record in evaluations:
        if record["return_mean"] >= threshold:
            return {"wall_seconds": record["wall_seconds"], "env_steps": record["env_steps"]}
    return None


def collapsed(evaluations: list[dict[str, Any]]) -> bool:
    """True if the last two evaluations lie below half of the best one after training began."""
    trained = [record["return_mean"] for record in evaluations if record["env_steps"] > 1]
    if len(trained) < 3:
        return False
    best = max(trained[:-2])
    return best > 0.0 and all(value < 0.5 * best for value in trained[-2:])


def run_population(run: dict[str, Any]) -> int | None:
    """Population of a SATR run, read from the hyperparameters the run was built with."""
    value = run["hyperparameters"].get("population_size")
    return None if value is None else int(value)


def summarize_run(run: dict[str, Any]) -> dict[str, Any]:
    spec = run["spec"]
    evaluations = run["evaluations"]
    final = evaluations[-1]
    kl = [record["kl_per_connection"] for record in run["generations"]]
    summary = {
        "name": run["name"],
        "algo": spec["algo"],
        "env": spec["env"],
        "seed": spec["seed"],
        "population_size": run_population(run),
        "final_return": final["return_mean"],
        "final_return_std": final["return_std"],
        "best_return": max(record["return_mean"] for record in evaluations),
        "training_seconds": run["training_seconds"],
        "env_steps": run["env_steps"],
        "steps_per_second": run["env_steps"] / run["training_seconds"] if run["training_seconds"] > 0 else None,
        "collapsed": collapsed(evaluations),
        "thresholds": {str(int(value)): first_reaching(evaluations, value) for value in THRESHOLDS.get(spec["env"], ())},
        "generations": len(run["generations"]),
    }
    if kl:
        summary["kl_per_connection_median"] = float(np.median(kl))
        summary["kl_per_connection_mean"] = float(np.mean(kl))
        summary["kl_per_connection_max"] = float(np.max(kl))
        summary["fraction_without_step"] = float(np.mean(np.asarray(kl) == 0.0))
    return summary


def group_stats(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    return {"mean": float(array.mean()), "std": float(array.std()), "min": float(array.min()), "max": float(array.max())}


def format_threshold(summaries: list[dict[str, Any]], threshold: str) -> str:
    reached = [s["thresholds"][threshold] for s in summaries if s["thresholds"].get(threshold)]
    if not reached:
        return f"0/{len(summaries)}"
    minutes = np.median([r["wall_seconds"] for r in reached]) / 60.0
    steps = np.median([r["env_steps"] for r in reached])
    return f"{len(reached)}/{len(summaries)}, {minutes:.1f} min, {steps / 1e6:.2f} M"


def curves_table(env: str, by_algo: dict[str, list[dict[str, Any]]]) -> list[str]:
    thresholds = [str(int(value)) for value in THRESHOLDS.get(env, ())]
    header = ["algorithm", "seeds", "final return, mean ± std", "min – max", "env steps/s"]
    header += [f"reached {value}: runs, median time, steps" for value in thresholds]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for algo in ALGO_LABELS:
        summaries = by_algo.get(algo)
        if not summaries:
            continue
        final = group_stats([s["final_return"] for s in summaries])
        rate = np.mean([s["steps_per_second"] for s in summaries])
        row = [
            ALGO_LABELS[algo],
            ", ".join(str(s["seed"]) for s in summaries),
            f"{final['mean']:,.0f} ± {final['std']:,.0f}",
            f"{final['min']:,.0f} – {final['max']:,.0f}",
            f"{rate:,.0f}",
        ]
        row += [format_threshold(summaries, value) for value in thresholds]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def population_table(groups: dict[tuple[str, int], list[dict[str, Any]]]) -> list[str]:
    header = [
        "update",
        "population",
        "seeds",
        "final return, mean ± std",
        "min – max",
        "collapsed",
        "generations",
        "KL per connection, median (max)",
        "generations without a step",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (algo, population), summaries in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1])):
        final = group_stats([s["final_return"] for s in summaries])
        n_collapsed = sum(s["collapsed"] for s in summaries)
        kl_median = np.median([s["kl_per_connection_median"] for s in summaries])
        kl_max = np.max([s["kl_per_connection_max"] for s in summaries])
        row = [
            "SATR" if algo == "satr" else "EC",
            str(population),
            ", ".join(str(s["seed"]) for s in summaries),
            f"{final['mean']:,.0f} ± {final['std']:,.0f}",
            f"{final['min']:,.0f} – {final['max']:,.0f}",
            f"{n_collapsed}/{len(summaries)}",
            f"{np.median([s['generations'] for s in summaries]):.0f}",
            f"{kl_median:.2e} ({kl_max:.2e})",
            f"{np.mean([s['fraction_without_step'] for s in summaries]):.0%}",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def other_runs_table(groups: dict[str, list[dict[str, Any]]]) -> list[str]:
    header = ["runs", "seeds", "final return, mean ± std", "min – max", "collapsed"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group, summaries in sorted(groups.items()):
        final = group_stats([s["final_return"] for s in summaries])
        row = [
            group,
            ", ".join(str(s["seed"]) for s in summaries),
            f"{final['mean']:,.0f} ± {final['std']:,.0f}",
            f"{final['min']:,.0f} – {final['max']:,.0f}",
            f"{sum(s['collapsed'] for s in summaries)}/{len(summaries)}",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def plot_curves(env: str, runs: dict[str, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for algo, algo_runs in runs.items():
        color = ALGO_COLORS[algo]
        horizon = max(run["training_seconds"] for run in algo_runs)
        grid = np.linspace(0.0, horizon, 200)
        shown = []
        for run in algo_runs:
            wall = np.array([record["wall_seconds"] for record in run["evaluations"]])
            steps = np.array([record["env_steps"] for record in run["evaluations"]])
            returns = np.array([record["return_mean"] for record in run["evaluations"]])
            axes[0].plot(wall / 60.0, returns, color=color, alpha=0.3, linewidth=0.8)
            axes[1].plot(np.maximum(steps, 1), returns, color=color, alpha=0.3, linewidth=0.8)
            # The last evaluation at or before each grid time: what the run had to show then.
            # Before the first evaluation the run shows the first one.
            shown.append(returns[np.maximum(np.searchsorted(wall, grid, side="right") - 1, 0)])
        axes[0].plot(grid / 60.0, np.mean(shown, axis=0), color=color, linewidth=2, label=f"{ALGO_LABELS[algo]} ({len(algo_runs)} seeds)")
    axes[0].set_xlabel("training wall clock (min)")
    axes[1].set_xlabel("env steps")
    axes[1].set_xscale("log")
    axes[0].set_ylabel("deterministic evaluation return")
    for threshold in THRESHOLDS.get(env, ()):
        for axis in axes:
            axis.axhline(threshold, color="grey", linestyle=":", linewidth=0.8)
    axes[0].legend(loc="upper left", fontsize=8)
    axes[0].set_title(f"{env}: mean of seeds (thick), each seed (thin)")
    axes[1].set_title(f"{env}: each seed against env steps")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_population(groups: dict[tuple[str, int], list[dict[str, Any]]], runs: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    populations = sorted({population for _, population in groups})
    positions = {population: index for index, population in enumerate(populations)}
    for offset, algo, color in ((-0.15, "satr", "tab:blue"), (0.15, "satr_ec", "tab:orange")):
        label = "SATR" if algo == "satr" else "EC update"
        for population in populations:
            summaries = groups.get((algo, population), [])
            if not summaries:
                continue
            x = positions[population] + offset
            finals = [s["final_return"] for s in summaries]
            axes[0].bar(x, np.mean(finals), width=0.28, color=color, alpha=0.5, label=label if population == populations[0] else None)
            axes[0].scatter([x] * len(finals), finals, color=color, s=14, zorder=3)
            kl = np.concatenate([[g["kl_per_connection"] for g in runs[s["name"]]["generations"]] for s in summaries])
            # Generations without a step (KL 0) are counted in the table, not drawn on the log axis.
            positive = kl[kl > 0.0] if np.any(kl > 0.0) else np.array([np.nan])
            parts = axes[1].boxplot([positive], positions=[x], widths=0.25, patch_artist=True, showfliers=False)
            for patch in parts["boxes"]:
                patch.set_facecolor(color)
                patch.set_alpha(0.5)
    for axis in axes:
        axis.set_xticks(range(len(populations)), [str(p) for p in populations])
        axis.set_xlabel("population size")
    axes[0].set_ylabel("final deterministic return")
    axes[0].set_title("Hopper-v5: final return (bars: mean, dots: seeds)")
    axes[0].legend(fontsize=8)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("KL(new || old) per connection")
    axes[1].set_title("realised KL of the generations that stepped")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-dir", default="benchmarks/results/compare", help="Output folder of compare.py.")
    parser.add_argument("--images-dir", default="docs/images", help="Folder for the PNG plots.")
    args = parser.parse_args()

    input_dir = Path(args.input_dir)
    runs = {}
    for path in sorted((input_dir / "runs").glob("*.json")):
        run = json.loads(path.read_text())
        runs[run["name"]] = run
    if not runs:
        print(f"No runs found in {input_dir / 'runs'}: run benchmarks/compare.py first.", file=sys.stderr)
        return 1
    summaries = {name: summarize_run(run) for name, run in runs.items()}

    curves: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    population: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    others: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for name, run in runs.items():
        spec = run["spec"]
        if spec.get("target_kl") is not None or (spec["env"] != "Hopper-v5" and spec["population_size"] is not None):
            others[name.rsplit("_seed", 1)[0]].append(summaries[name])
            continue
        if spec["population_size"] is None:
            curves[spec["env"]][spec["algo"]].append(name)
        if spec["env"] == "Hopper-v5" and spec["algo"] in ("satr", "satr_ec"):
            population[(spec["algo"], summaries[name]["population_size"])].append(summaries[name])

    images_dir = Path(args.images_dir)
    images_dir.mkdir(parents=True, exist_ok=True)
    tables: dict[str, list[str]] = {}
    for env, by_algo in sorted(curves.items()):
        ordered = {algo: by_algo[algo] for algo in ALGO_LABELS if algo in by_algo}
        tables[env] = curves_table(env, {algo: [summaries[n] for n in names] for algo, names in ordered.items()})
        plot_curves(env, {algo: [runs[n] for n in names] for algo, names in ordered.items()}, images_dir / f"curves_{env}.png")
    if population:
        tables["population"] = population_table(population)
        plot_population(population, runs, images_dir / "population_hopper.png")

    if others:
        tables["other runs"] = other_runs_table(others)

    for title, lines in tables.items():
        print(f"\n{title}\n")
        print("\n".join(lines))

    manifest_path = input_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else None
    report = {
        "command": " ".join([sys.executable, *sys.argv]),
        **machine_and_versions(),
        "study": manifest,
        "runs": summaries,
        "tables": tables,
    }
    output = input_dir.with_suffix(".json")
    output.write_text(json.dumps(report, indent=1))
    print(f"\nWrote {output} and the plots in {images_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
