"""A CartPole that fails on purpose inside worker processes, for tests/test_parallel.py.

Worker processes build environments from their spec and import this module through the
entry point ``"faulty_envs:FaultyCartPole"``, so it lives in its own importable file.
"""

import os
import signal
import time

from gymnasium.envs.classic_control.cartpole import CartPoleEnv


class FaultyCartPole(CartPoleEnv):
    """CartPole that fails at step ``at_step`` of an episode, except in process ``spare_pid``.

    :param failure: ``"raise"`` raises ``RuntimeError``, ``"kill"`` sends SIGKILL to its
        own process, ``"hang"`` sleeps for ``hang_seconds``.
    :param at_step: Step of the episode, from 1, at which it fails.
    :param spare_pid: A process in which it never fails (the test process), so that the
        same environment can also train in-process.
    :param once_marker: If set, only the first failure across all processes happens: it
        creates this file, and later episodes that find the file play normally.
    :param hang_seconds: Length of the ``"hang"`` failure.
    """

    def __init__(
        self,
        failure="raise",
        at_step=3,
        spare_pid=None,
        once_marker=None,
        hang_seconds=60.0,
        render_mode=None,
    ):
        super().__init__(render_mode=render_mode)
        self.failure = failure
        self.at_step = at_step
        self.spare_pid = spare_pid
        self.once_marker = once_marker
        self.hang_seconds = hang_seconds
        self._episode_steps = 0

    def reset(self, *, seed=None, options=None):
        self._episode_steps = 0
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self._episode_steps += 1
        if self._episode_steps == self.at_step and os.getpid() != self.spare_pid and self._claim_failure():
            if self.failure == "raise":
                raise RuntimeError(f"FaultyCartPole failed on purpose at step {self.at_step}")
            if self.failure == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if self.failure == "hang":
                time.sleep(self.hang_seconds)
        return super().step(action)

    def _claim_failure(self):
        if self.once_marker is None:
            return True
        try:
            descriptor = os.open(self.once_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        os.close(descriptor)
        return True
