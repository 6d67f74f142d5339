"""The recurrent spiking network policy of SATR."""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.utils import is_vectorized_observation

from sb3_satr.bits import n_words, unpack_bits
from sb3_satr.network.batch import BitsetRSNN, NetworkState
from sb3_satr.network.masks import MASK_NAMES, NetworkLayout, PackedMasks
from sb3_satr.network.spec import NetworkSpec
from sb3_satr.normalization import normalize_observations
from sb3_satr.rollout import scale_box_actions
from sb3_satr.search import mode_connections, sample_population

# Recurrent state returned by ``RSNNPolicy.predict``. It contains membrane potentials,
# synaptic currents and rate traces (B, N) float32, and packed spikes (B, words) uint64.
# Then come the packed connections of each row's sampled network (B, words) uint64, used
# in stochastic mode only, and a (B,) bool that is true where a row has sampled one.
RSNNState = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class RSNNPolicy(BasePolicy):
    """Recurrent spiking network policy whose connections are independent Bernoulli variables.

    The trainable state is one connection probability per possible connection of the input,
    recurrent and output masks (``probabilities``, float64) and the running observation
    statistics. The deterministic policy is the mode network (``probability > 0.5``); the
    stochastic policy samples a network once per episode.

    :param observation_space: A ``Box`` observation space.
    :param action_space: A ``Box`` with finite bounds or a ``Discrete`` space.
    :param normalize_observations: Normalise observations with the running statistics.
    :param observation_clip: Normalised observations are clipped to ``[-clip, clip]``.
    :param observation_std_floor: Smallest standard deviation used for normalisation, so that
        constant observation entries map to zero instead of blowing up.
    :param initial_probability: Connection probability at initialisation.
    :param network_kwargs: Any ``NetworkSpec`` field (``n_neurons``, ``dt``, ``tau_mem``, ...)
        as a keyword argument.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        normalize_observations: bool = True,
        observation_clip: float = 10.0,
        observation_std_floor: float = 1e-2,
        initial_probability: float = 0.5,
        **network_kwargs: Any,
    ) -> None:
        if not isinstance(observation_space, spaces.Box):
            raise ValueError(
                f"RSNNPolicy needs a Box observation space, got {observation_space}. Flatten other "
                "spaces with a wrapper such as gymnasium.wrappers.FlattenObservation."
            )
        if isinstance(action_space, spaces.Box):
            if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
                raise ValueError(
                    f"RSNNPolicy maps network outputs onto the action bounds, which must be finite; got "
                    f"{action_space}. Rescale the actions, for example with gymnasium.wrappers.RescaleAction."
                )
            n_outputs = int(np.prod(action_space.shape))
        elif isinstance(action_space, spaces.Discrete):
            n_outputs = int(action_space.n)
        else:
            raise ValueError(f"RSNNPolicy supports Box and Discrete action spaces, got {action_space}.")
        if not observation_clip > 0:
            raise ValueError(f"observation_clip must be positive, got {observation_clip}.")
        if not observation_std_floor > 0:
            raise ValueError(f"observation_std_floor must be positive, got {observation_std_floor}.")
        if not 0.0 <= initial_probability <= 1.0:
            raise ValueError(f"initial_probability must lie in [0, 1], got {initial_probability}.")
        unknown = set(network_kwargs) - {field.name for field in NetworkSpec.__dataclass_fields__.values()}
        if unknown:
            raise ValueError(
                f"Unknown RSNNPolicy arguments {sorted(unknown)}. Valid network arguments are "
                f"{sorted(NetworkSpec.__dataclass_fields__)}."
            )

        super().__init__(observation_space, action_space)
        self.normalize_observations = bool(normalize_observations)
        self.observation_clip = float(observation_clip)
        self.observation_std_floor = float(observation_std_floor)
        self.initial_probability = float(initial_probability)
        self.network_kwargs = dict(network_kwargs)

        self.spec = NetworkSpec(**network_kwargs)
        self.obs_dim = int(np.prod(observation_space.shape))
        self.layout = NetworkLayout(self.spec, self.obs_dim, n_outputs)
        self.network = BitsetRSNN(self.layout)

        self.register_buffer(
            "probabilities", th.full((self.layout.n_params,), self.initial_probability, dtype=th.float64)
        )
        self.register_buffer("obs_mean", th.zeros(self.obs_dim, dtype=th.float64))
        self.register_buffer("obs_var", th.ones(self.obs_dim, dtype=th.float64))
        self.register_buffer("obs_count", th.zeros(1, dtype=th.float64))

        self._rng = np.random.default_rng()
        self._mode_masks: Optional[PackedMasks] = None
        self._mode_source: Optional[np.ndarray] = None
        self._sampled_masks: Optional[tuple[np.ndarray, PackedMasks]] = None

    def _get_constructor_parameters(self) -> dict[str, Any]:
        # BasePolicy adds feature-extractor arguments that this policy does not take.
        data = dict(
            observation_space=self.observation_space,
            action_space=self.action_space,
            normalize_observations=self.normalize_observations,
            observation_clip=self.observation_clip,
            observation_std_floor=self.observation_std_floor,
            initial_probability=self.initial_probability,
            **self.network_kwargs,
        )
        return data

    # Parameters as numpy views.

    @property
    def probabilities_array(self) -> np.ndarray:
        """Zero-copy float64 view of the connection probabilities ``(n_params,)``."""
        return self.probabilities.numpy()

    def set_probabilities_array(self, probabilities: np.ndarray) -> None:
        """Overwrite all connection probabilities in the flat layout order."""
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if probabilities.shape != (self.layout.n_params,):
            raise ValueError(
                f"Expected {self.layout.n_params} connection probabilities, got shape {probabilities.shape}."
            )
        if not np.all(np.isfinite(probabilities)) or probabilities.min() < 0 or probabilities.max() > 1:
            raise ValueError("Connection probabilities must be finite and lie in [0, 1].")
        self.probabilities_array[:] = probabilities

    def observation_normalizer(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation applied to observations (identity when normalisation is off)."""
        if not self.normalize_observations or self.obs_count.item() == 0:
            return np.zeros(self.obs_dim), np.ones(self.obs_dim)
        std = np.maximum(np.sqrt(self.obs_var.numpy()), self.observation_std_floor)
        return self.obs_mean.numpy().copy(), std

    def set_observation_statistics(self, count: float, mean: np.ndarray, var: np.ndarray) -> None:
        self.obs_count[0] = float(count)
        self.obs_mean.copy_(th.as_tensor(np.asarray(mean, dtype=np.float64)))
        self.obs_var.copy_(th.as_tensor(np.asarray(var, dtype=np.float64)))

    # Inspection.

    def connection_probabilities(self) -> dict[str, np.ndarray]:
        """Connection probabilities as float32 arrays: ``"input"`` ``(2 * obs_dim, N)``,
        ``"recurrent"`` ``(N, N)`` indexed (pre, post), ``"output"`` ``(N, n_outputs)``."""
        parts = self.layout.split(self.probabilities_array)
        return {name: parts[name].astype(np.float32) for name in MASK_NAMES}

    def set_connection_probabilities(self, probabilities: dict[str, np.ndarray]) -> None:
        """Set the connection probabilities from a dict shaped like ``connection_probabilities()``.

        Values must be finite and lie in [0, 1]. Training clips them to
        ``[probability_eps, 1 - probability_eps]`` before its next update.
        """
        if not isinstance(probabilities, dict):
            raise ValueError(f"Expected a dict with keys {list(MASK_NAMES)}, got {type(probabilities).__name__}.")
        unknown = set(probabilities) - set(MASK_NAMES)
        if unknown:
            raise ValueError(f"Unknown connection keys {sorted(unknown)}; expected {list(MASK_NAMES)}.")
        for name in MASK_NAMES:
            if name not in probabilities:
                raise ValueError(f"Missing connection key {name!r}; expected {list(MASK_NAMES)}.")
            array = np.asarray(probabilities[name], dtype=np.float64)
            if array.shape != self.layout.shapes[name]:
                raise ValueError(
                    f"Connection probabilities {name!r} must have shape {self.layout.shapes[name]}, got {array.shape}."
                )
            if not np.all(np.isfinite(array)) or array.min() < 0.0 or array.max() > 1.0:
                raise ValueError(f"Connection probabilities {name!r} must be finite and lie in [0, 1].")
        flat = self.layout.join({name: np.asarray(probabilities[name], dtype=np.float64) for name in MASK_NAMES})
        self.set_probabilities_array(flat)

    def mode_masks(self) -> dict[str, np.ndarray]:
        """Connections of the mode network (``probability > 0.5``) as bool arrays, keyed like
        ``connection_probabilities()``."""
        return self.layout.split(mode_connections(self.probabilities_array))

    def packed_mode_masks(self) -> PackedMasks:
        """Packed masks of the mode network, cached until the probabilities change."""
        current = self.probabilities_array
        if self._mode_masks is None or self._mode_source is None or not np.array_equal(self._mode_source, current):
            self._mode_masks = self.layout.pack(mode_connections(current))
            self._mode_source = current.copy()
        return self._mode_masks

    # Acting.

    def actions_from_outputs(self, outputs: np.ndarray) -> np.ndarray:
        """Map network outputs ``(B, n_outputs)`` to actions ``(B, *action_shape)`` of the space's dtype."""
        if isinstance(self.action_space, spaces.Discrete):
            return np.argmax(outputs, axis=1).astype(self.action_space.dtype)
        low = self.action_space.low.reshape(-1)
        high = self.action_space.high.reshape(-1)
        if outputs.dtype == np.float32 and low.dtype == np.float32 and self.action_space.dtype == np.float32:
            # One kernel call instead of six ufuncs: this runs once per environment step in training.
            actions = np.empty(outputs.shape, dtype=np.float32)
            scale_box_actions(np.ascontiguousarray(outputs), low, high, actions)
            return actions.reshape((-1, *self.action_space.shape))
        unit = np.minimum(np.maximum(outputs, -1.0), 1.0)
        scaled = low + (unit + 1.0) * (0.5 * (high - low))
        scaled = np.minimum(np.maximum(scaled, low), high)
        return scaled.reshape((-1, *self.action_space.shape)).astype(self.action_space.dtype, copy=False)

    def initial_state(self, batch_size: int) -> RSNNState:
        """Zero recurrent state for ``batch_size`` rows, without sampled networks."""
        zero = self.network.initial_state(batch_size)
        words = np.zeros((batch_size, n_words(self.layout.n_params)), dtype=np.uint64)
        return (zero.v, zero.i_syn, zero.rate, zero.spikes, words, np.zeros(batch_size, dtype=np.bool_))

    def predict(
        self,
        observation: Union[np.ndarray, dict[str, np.ndarray]],
        state: Optional[tuple[np.ndarray, ...]] = None,
        episode_start: Optional[np.ndarray] = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Optional[tuple[np.ndarray, ...]]]:
        """Return the actions and the next recurrent state for one observation or a batch.

        :param observation: One observation or a batch ``(B, *obs_shape)``.
        :param state: The state returned by the previous call, or ``None`` to start fresh.
        :param episode_start: ``(B,)`` flags. Flagged rows restart from the zero state (and
            sample a new network when stochastic).
        :param deterministic: Run the mode network; otherwise run a network sampled from the
            connection probabilities once per episode.
        :return: Actions and the new state. The state arrays are new arrays, never the
            caller's.
        """
        if isinstance(observation, dict):
            raise ValueError("RSNNPolicy supports Box observations only, got a dict observation.")
        observation = np.asarray(observation)
        vectorized = is_vectorized_observation(observation, self.observation_space)
        observations = observation.reshape((-1, self.obs_dim))
        batch = observations.shape[0]
        if not np.all(np.isfinite(observations)):
            raise ValueError(
                "The observation contains NaN or infinite values; the spiking network cannot act on it. "
                "Check the environment or filter the observation before calling predict."
            )

        if state is None:
            state = self.initial_state(batch)
            starts = np.ones(batch, dtype=np.bool_)
        else:
            state = self._copy_state(state, batch)
            if episode_start is None:
                starts = np.zeros(batch, dtype=np.bool_)
            else:
                starts = np.array(episode_start, dtype=np.bool_).reshape(-1)
                if starts.shape != (batch,):
                    raise ValueError(f"episode_start must hold {batch} flags, got shape {np.shape(episode_start)}.")
        v, i_syn, rate, spikes, words, has_network = state

        mean, std = self.observation_normalizer()
        normalized = normalize_observations(observations, mean, std, self.observation_clip)
        network_state = NetworkState(v, i_syn, rate, spikes)
        if deterministic:
            masks = self.packed_mode_masks()
            index = np.zeros(batch, dtype=np.int64)
        else:
            new_network = starts | ~has_network
            if np.any(new_network):
                rows = np.flatnonzero(new_network)
                for row in rows:
                    seed = int(self._rng.integers(0, 2**63 - 1))
                    words[row] = sample_population(self.probabilities_array, 1, seed)[0]
                has_network[rows] = True
            masks = self._packed_sampled_masks(words)
            index = np.arange(batch, dtype=np.int64)
        outputs = self.network.step(masks, normalized, network_state, reset=starts, network_index=index)

        actions = self.actions_from_outputs(outputs)
        if not vectorized:
            actions = actions.squeeze(axis=0)
        return actions, (v, i_syn, rate, spikes, words, has_network)

    def _packed_sampled_masks(self, words: np.ndarray) -> PackedMasks:
        """Packed masks of the sampled networks ``words``, reused while the rows keep their networks."""
        cached = self._sampled_masks
        if cached is None or cached[0].shape != words.shape or not np.array_equal(cached[0], words):
            cached = (words.copy(), self.layout.pack(unpack_bits(words, self.layout.n_params, axis=1)))
            self._sampled_masks = cached
        return cached[1]

    def _copy_state(self, state: tuple[np.ndarray, ...], batch: int) -> RSNNState:
        if not isinstance(state, tuple) or len(state) != 6:
            raise ValueError(
                "state must be the 6-tuple returned by RSNNPolicy.predict (or None at the start), "
                f"got {type(state).__name__}."
            )
        template = self.initial_state(batch)
        copied = []
        for name, provided, expected in zip(("v", "i_syn", "rate", "spikes", "networks", "has_network"), state, template):
            provided = np.asarray(provided)
            if provided.shape != expected.shape or provided.dtype != expected.dtype:
                raise ValueError(
                    f"state[{name}] must be {expected.dtype} of shape {expected.shape} for {batch} observations, "
                    f"got {provided.dtype} {provided.shape}."
                )
            copied.append(provided.copy())
        return tuple(copied)  # type: ignore[return-value]

    def _predict(self, observation: th.Tensor, deterministic: bool = False) -> th.Tensor:
        raise NotImplementedError("RSNNPolicy is recurrent: call predict(observation, state, episode_start).")

    def forward(self, *args: Any, **kwargs: Any) -> th.Tensor:
        raise NotImplementedError("RSNNPolicy is recurrent: call predict(observation, state, episode_start).")

    def set_training_mode(self, mode: bool) -> None:
        self.train(mode)

    def seed_sampling(self, seed: Optional[int]) -> None:
        """Seed the generator that samples stochastic networks in ``predict``."""
        self._rng = np.random.default_rng(seed)

