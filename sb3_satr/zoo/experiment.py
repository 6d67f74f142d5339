"""rl-zoo3's ExperimentManager with the defaults that the sb3_satr launcher changes.

Importing this module imports rl_zoo3, which replaces gymnasium's ``TimeLimit`` wrapper in
the whole process. Only the launcher imports it.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

from rl_zoo3.exp_manager import ExperimentManager
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from sb3_satr.zoo.configs import shipped_config_path


class ZooExperimentManager(ExperimentManager):
    """ExperimentManager that reads the shipped ``zoo_configs/`` and keeps the step count.

    - Without ``--conf-file``, an algorithm that has a file in ``zoo_configs/`` (``satr``,
      ``ars``, ``ppo_lstm``) reads its hyperparameters from there, and the path is recorded
      as ``conf_file`` in the run's ``args.yml``. Other algorithms read rl-zoo's own files.
    - ``--algo satr`` with ``n_workers > 0`` warns that callbacks count generations.
    - After training with ``--algo satr``, the worker processes of parallel evaluation
      (``n_workers > 0``) are stopped.
    - ``-i`` with ``--algo satr`` continues the step count of the loaded agent, so that
      ``-n`` adds steps and learning-rate schedules continue where they stopped. rl-zoo3
      2.9.2 restarts the count at 0 for every algorithm. That behaviour is kept for the
      other algorithms: ARS computes its schedule from the raw ``total_timesteps`` argument,
      so a kept count would drive its learning rate negative.
    """

    def __init__(self, *args: Any, config: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, config=config, **kwargs)
        if config is None:
            shipped = shipped_config_path(self.algo)
            if shipped is not None:
                self.config = str(shipped)
                self.args.conf_file = self.config

    def _preprocess_hyperparams(
        self, hyperparams: dict[str, Any]
    ) -> tuple[dict[str, Any], Callable | None, list[BaseCallback], Callable | None]:
        processed = super()._preprocess_hyperparams(hyperparams)
        n_workers = processed[0].get("n_workers", 0)
        uses_callbacks = self.eval_freq > 0 or self.save_freq > 0 or self.optimize_hyperparameters
        if self.algo == "satr" and n_workers > 0 and uses_callbacks:
            warnings.warn(
                f"SATR with n_workers={n_workers} calls callbacks once per generation, not once per "
                "environment step, so --eval-freq, --save-freq and the evaluations of -optimize count "
                "generations. Set n_workers to 0 for evaluations every N steps.",
                UserWarning,
                stacklevel=2,
            )
        return processed

    def learn(self, model: BaseAlgorithm) -> None:
        if self.algo != "satr":
            super().learn(model)
            return

        if self.continue_training:
            # rl-zoo calls model.learn(n_timesteps, **kwargs) without reset_num_timesteps. An
            # instance attribute shadows the method for that one call.
            model.learn = functools.partial(type(model).learn, model, reset_num_timesteps=False)  # type: ignore[method-assign]
        try:
            super().learn(model)
        finally:
            if self.continue_training:
                del model.learn
            # rl-zoo closes model.env after training but does not know SATR's worker processes
            # (n_workers > 0). Stopping them here avoids multiprocessing's leak warnings at exit.
            model.close_workers()  # type: ignore[attr-defined]
