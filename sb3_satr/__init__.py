"""SATR: gradient-free training of binary recurrent spiking network policies for Stable-Baselines3."""

from sb3_satr.network.spec import NetworkSpec
from sb3_satr.parallel import WorkerError
from sb3_satr.policies import RSNNPolicy
from sb3_satr.satr import SATR

__version__ = "0.1.0"

__all__ = ["SATR", "RSNNPolicy", "NetworkSpec", "WorkerError", "__version__"]
