"""Launcher that runs rl-zoo3's scripts with SATR registered.

rl-zoo3 has no plugin mechanism: ``--algo`` is checked against ``rl_zoo3.utils.ALGOS`` when
the argument parser is built. ``main`` therefore adds ``satr`` to rl-zoo's tables first and
then runs rl-zoo's own script with the remaining arguments::

    sb3-satr-zoo train --algo satr --env Hopper-v5
    python -m sb3_satr.zoo enjoy --algo satr --env Hopper-v5 -f logs --no-render

Importing rl_zoo3 replaces gymnasium's ``TimeLimit`` wrapper in the whole process, so this
package imports it only inside ``register`` and ``main``, and ``import sb3_satr`` never does.
"""

from __future__ import annotations

import importlib
import runpy
import sys
from collections.abc import Sequence
from typing import NamedTuple

PROG = "sb3-satr-zoo"


class Command(NamedTuple):
    """An rl-zoo3 script: a function to call, or a module that only runs as ``__main__``."""

    module: str
    function: str | None
    summary: str


COMMANDS: dict[str, Command] = {
    "train": Command("rl_zoo3.train", "train", "train an agent, continue one (-i) or tune one (-optimize)"),
    "enjoy": Command("rl_zoo3.enjoy", "enjoy", "run a trained agent and print its episode returns"),
    "record_video": Command("rl_zoo3.record_video", None, "record a video of a trained agent"),
}


def register() -> None:
    """Add SATR to rl-zoo3's algorithm, Optuna sampler and converter tables.

    Also makes rl-zoo's ``train`` use :class:`~sb3_satr.zoo.experiment.ZooExperimentManager`,
    which reads the shipped ``zoo_configs/`` when no ``--conf-file`` is given. Calling it
    more than once is harmless.
    """
    import rl_zoo3.train
    from rl_zoo3 import hyperparams_opt, utils

    from sb3_satr import SATR
    from sb3_satr.zoo.experiment import ZooExperimentManager
    from sb3_satr.zoo.hyperparams import convert_satr_params, sample_satr_params

    utils.ALGOS["satr"] = SATR
    hyperparams_opt.HYPERPARAMS_SAMPLER["satr"] = sample_satr_params
    hyperparams_opt.HYPERPARAMS_CONVERTER["satr"] = convert_satr_params
    # train() looks the class up in its module's globals when it runs.
    rl_zoo3.train.ExperimentManager = ZooExperimentManager  # type: ignore[misc]


def usage() -> str:
    """Return the help text of the launcher."""
    width = max(len(name) for name in COMMANDS)
    lines = [
        f"usage: {PROG} COMMAND [ARGUMENTS ...]",
        "",
        "Run an rl-zoo3 script with the SATR algorithm registered as --algo satr.",
        "",
        "commands:",
        *(f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()),
        "",
        f"The arguments are rl-zoo3's: see '{PROG} COMMAND --help'.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the rl-zoo3 script named by the first argument, with SATR registered.

    :param argv: the command and its arguments; ``sys.argv[1:]`` when None.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments:
        print(usage(), file=sys.stderr)
        raise SystemExit(2)
    if arguments[0] in ("-h", "--help"):
        print(usage())
        raise SystemExit(0)

    name, script_arguments = arguments[0], arguments[1:]
    if name not in COMMANDS:
        print(usage(), file=sys.stderr)
        print(f"\n{PROG}: error: unknown command {name!r}, expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        raise SystemExit(2)

    register()

    # rl-zoo's scripts parse sys.argv, and argparse shows its first entry as the program name.
    sys.argv = [f"{PROG} {name}", *script_arguments]
    command = COMMANDS[name]
    if command.function is None:
        runpy.run_module(command.module, run_name="__main__")
    else:
        getattr(importlib.import_module(command.module), command.function)()
