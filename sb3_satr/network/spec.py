"""Constants of the recurrent spiking network and the values derived from them."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """Every constant of the recurrent spiking network (RSNN) policy.

    The network follows "Evolving Connectivity for Recurrent Spiking Neural Networks"
    (Wang et al., NeurIPS 2023, arXiv:2305.17650): leaky integrate-and-fire neurons with
    exponential synapses, binary input, recurrent and output connections, and signed spike
    rate traces read out as actions. Times are in milliseconds.

    :param n_neurons: Number of hidden neurons ``N``. The first ``n_excitatory`` are
        excitatory (their spikes count +1), the rest inhibitory (-1).
    :param excitatory_ratio: Fraction of excitatory neurons, in [0, 1]. ``n_excitatory`` is
        ``floor(n_neurons * excitatory_ratio + 0.5)``.
    :param dt: Integration time step in ms.
    :param n_substeps: Network substeps per environment step (33 substeps of 0.5 ms cover
        the 16.6 ms control period that the EC paper assumes).
    :param tau_syn: Synaptic current time constant in ms.
    :param tau_mem: Membrane time constant in ms.
    :param tau_out: Time constant of the output rate trace in ms.
    :param v_threshold: Membrane threshold. A neuron spikes when ``v > v_threshold``.
    :param v_reset: Membrane value after a spike (hard reset, no refractory period).
    :param input_gain: Gain ``K_in`` of the input resistance.
    :param recurrent_gain: Gain ``K_h`` of the recurrent resistance.
    :param output_gain: Gain ``K_out`` of the output resistance.
    :param connection_density: Expected connection density ``p_s`` used only to scale the
        resistances so that currents keep unit-scale variance.
    """

    n_neurons: int = 256
    excitatory_ratio: float = 0.5
    dt: float = 0.5
    n_substeps: int = 33
    tau_syn: float = 5.0
    tau_mem: float = 10.0
    tau_out: float = 10.0
    v_threshold: float = 1.0
    v_reset: float = 0.0
    input_gain: float = 0.1
    recurrent_gain: float = 1.0
    output_gain: float = 5.0
    connection_density: float = 0.5

    def __post_init__(self) -> None:
        for name in ("n_neurons", "n_substeps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"NetworkSpec.{name} must be a positive integer, got {value!r}.")
            object.__setattr__(self, name, int(value))

        for name in ("dt", "tau_syn", "tau_mem", "tau_out"):
            value = _as_float(name, getattr(self, name))
            if not value > 0.0:
                raise ValueError(f"NetworkSpec.{name} must be a positive time in ms, got {value!r}.")
            object.__setattr__(self, name, value)

        ratio = _as_float("excitatory_ratio", self.excitatory_ratio)
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"NetworkSpec.excitatory_ratio must lie in [0, 1], got {ratio!r}.")
        object.__setattr__(self, "excitatory_ratio", ratio)

        density = _as_float("connection_density", self.connection_density)
        if not 0.0 < density <= 1.0:
            raise ValueError(f"NetworkSpec.connection_density must lie in (0, 1], got {density!r}.")
        object.__setattr__(self, "connection_density", density)

        for name in ("v_threshold", "v_reset", "input_gain", "recurrent_gain", "output_gain"):
            object.__setattr__(self, name, _as_float(name, getattr(self, name)))
        if not self.v_reset < self.v_threshold:
            raise ValueError(
                f"NetworkSpec.v_reset ({self.v_reset}) must be below v_threshold ({self.v_threshold}), "
                "otherwise a neuron that spiked would spike again at once."
            )

    # Population sizes.

    @property
    def n_excitatory(self) -> int:
        """Number of excitatory neurons (indices ``0 .. n_excitatory - 1``)."""
        return int(math.floor(self.n_neurons * self.excitatory_ratio + 0.5))

    @property
    def n_inhibitory(self) -> int:
        """Number of inhibitory neurons (the remaining indices)."""
        return self.n_neurons - self.n_excitatory

    # Decay factors a = exp(-dt / tau).

    @property
    def decay_syn(self) -> float:
        return math.exp(-self.dt / self.tau_syn)

    @property
    def decay_mem(self) -> float:
        return math.exp(-self.dt / self.tau_mem)

    @property
    def decay_out(self) -> float:
        return math.exp(-self.dt / self.tau_out)

    # Resistances that keep the currents at unit-scale variance.

    def input_resistance(self, obs_dim: int) -> float:
        """``R_in = K_in * V_th * tau_m * sqrt(2 / (p_s * obs_dim))`` for the raw observation size."""
        if obs_dim < 1:
            raise ValueError(f"obs_dim must be a positive integer, got {obs_dim!r}.")
        scale = math.sqrt(2.0 / (self.connection_density * obs_dim))
        return self.input_gain * self.v_threshold * self.tau_mem * scale

    @property
    def recurrent_resistance(self) -> float:
        """``R_h = K_h * V_th * (tau_m / tau_syn) * sqrt(2 / (p_s * N))``."""
        scale = math.sqrt(2.0 / (self.connection_density * self.n_neurons))
        return self.recurrent_gain * self.v_threshold * (self.tau_mem / self.tau_syn) * scale

    @property
    def output_resistance(self) -> float:
        """``R_out = K_out * sqrt(1 / (p_s * N))``."""
        return self.output_gain * math.sqrt(1.0 / (self.connection_density * self.n_neurons))

    def kernel_constants(self, obs_dim: int) -> np.ndarray:
        """Pack the float32 constants that the kernels read, in the order of ``CONSTANT_NAMES``."""
        values = {
            "input_resistance": self.input_resistance(obs_dim),
            "recurrent_resistance": self.recurrent_resistance,
            "output_resistance": self.output_resistance,
            "decay_syn": self.decay_syn,
            "decay_mem": self.decay_mem,
            "leak_mem": 1.0 - self.decay_mem,
            "decay_out": self.decay_out,
            "rate_scale": (1.0 - self.decay_out) / self.dt,
            "v_threshold": self.v_threshold,
            "v_reset": self.v_reset,
        }
        return np.array([values[name] for name in CONSTANT_NAMES], dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


CONSTANT_NAMES = (
    "input_resistance",
    "recurrent_resistance",
    "output_resistance",
    "decay_syn",
    "decay_mem",
    "leak_mem",
    "decay_out",
    "rate_scale",
    "v_threshold",
    "v_reset",
)


def _as_float(name: str, value: Any) -> float:
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"NetworkSpec.{name} must be a real number, got {value!r}.") from None
    if not math.isfinite(result):
        raise ValueError(f"NetworkSpec.{name} must be finite, got {value!r}.")
    return result
