"""Optuna search space of SATR for rl-zoo's ``-optimize``.

rl-zoo3 calls the sampler once per trial as ``sampler(trial, n_actions, n_envs,
additional_args)`` and passes its result to the algorithm's constructor, on top of the
entry of the config file. The converter turns the raw parameters that Optuna stores back
into constructor arguments, for ``--storage ... --trial-id``.
"""

from __future__ import annotations

from typing import Any

import optuna

# 2**4 = 16 to 2**8 = 256 members per generation.
POPULATION_SIZE_POW_RANGE = (4, 8)
# The sampled target_kl bounds the mean KL per connection (kl_reduction="mean", which the
# converter sets). It means different things under the two budgets, so each budget has its
# own Optuna parameter and log-uniform range. With trust_region_budget="signal" the bound
# is target_kl * S. In the runs of docs/zoo.md, values from 0.2 to 4 learned CartPole-v1,
# and 0.05 to 1 improved Hopper-v5 within 300,000 steps. With "snr" the bound is
# target_kl * S / (S + N), and S was far below N there: N was about 5 with the "ema"
# estimator, and "variance" gives about d / (12 n) = 94 (Hopper-v5, 64 members). An equal
# bound therefore needs a target_kl 5 to 100 times larger.
TARGET_KL_SIGNAL_RANGE = (0.01, 10.0)
TARGET_KL_SNR_RANGE = (0.05, 1000.0)
SIGNAL_ESTIMATORS = ("variance", "split_half", "ema")
# Hopper-v5, Walker2d-v5 and Ant-v5 pay an alive bonus of 1 per step, and -1 cancels it.
# CartPole-v1 pays only the alive bonus, so -1 makes every fitness 0 there.
ALIVE_BONUS_OFFSETS = (0.0, -0.5, -1.0)
N_NEURONS_CHOICES = (64, 128, 256)


def sample_satr_params(
    trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict[str, Any]
) -> dict[str, Any]:
    """Sample SATR hyperparameters for one trial.

    ``n_actions``, ``n_envs`` and ``additional_args`` are part of rl-zoo's sampler signature
    and are not used.
    """
    population_size_pow = trial.suggest_int("population_size_pow", *POPULATION_SIZE_POW_RANGE)
    alive_bonus_offset = trial.suggest_categorical("alive_bonus_offset", ALIVE_BONUS_OFFSETS)
    signal_estimator = trial.suggest_categorical("signal_estimator", SIGNAL_ESTIMATORS)
    trust_region_budget = trial.suggest_categorical("trust_region_budget", ["signal", "snr"])
    if trust_region_budget == "signal":
        target_kl_name, target_kl_range = "target_kl", TARGET_KL_SIGNAL_RANGE
    else:
        target_kl_name, target_kl_range = "target_kl_snr", TARGET_KL_SNR_RANGE
    target_kl = trial.suggest_float(target_kl_name, *target_kl_range, log=True)
    n_neurons = trial.suggest_categorical("n_neurons", N_NEURONS_CHOICES)

    # Show the constructor values next to the raw parameters in Optuna's report.
    trial.set_user_attr("population_size", 2**population_size_pow)
    trial.set_user_attr("target_kl", target_kl)

    return convert_satr_params(
        {
            "population_size_pow": population_size_pow,
            "alive_bonus_offset": alive_bonus_offset,
            "signal_estimator": signal_estimator,
            "trust_region_budget": trust_region_budget,
            target_kl_name: target_kl,
            "n_neurons": n_neurons,
        }
    )


def convert_satr_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """Turn the parameters that Optuna stores into SATR constructor arguments.

    ``population_size_pow`` becomes ``population_size = 2 ** population_size_pow``,
    ``target_kl_snr`` becomes ``target_kl``, and ``n_neurons`` moves into ``policy_kwargs``.
    A ``target_kl`` comes with ``kl_reduction="mean"``, the reduction its ranges are for.
    The resulting values replace those of the config entry, as with rl-zoo's own samplers.
    """
    hyperparams = dict(sampled_params)

    if "population_size_pow" in hyperparams:
        hyperparams["population_size"] = 2 ** hyperparams.pop("population_size_pow")

    if "target_kl_snr" in hyperparams:
        hyperparams["target_kl"] = hyperparams.pop("target_kl_snr")

    if "target_kl" in hyperparams:
        hyperparams["kl_reduction"] = "mean"

    if "n_neurons" in hyperparams:
        hyperparams["policy_kwargs"] = {"n_neurons": hyperparams.pop("n_neurons")}

    return hyperparams
