"""Builds environments by ``--env`` name and describes them to the agents.

``make_env(name, seed)`` builds the environment through its family
(``families.py``: ``atari:Pong``, ``minatar:Breakout``, ``dmlab:rooms_watermaze``,
``football:<scenario>``, ``gym:<old gym id>``, or any registered gymnasium id such
as ``'CartPole-v1'``, or ``'my_package.envs:MyEnv-v0'``). ``env_spec(env)`` checks
that an env is one seed_rl's agents can use (a Box observation, a Discrete
action space) and returns its shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium
import numpy as np
from gymnasium import spaces

from seed_rl.envs.config import EnvConfig
from seed_rl.envs.errors import EnvError
from seed_rl.envs.families import parse_env_name


@dataclass(frozen=True)
class EnvSpec:
    """What an agent needs to know about an environment.

    Attributes:
      observation_shape: shape of one observation as the environment gives it
        (and an actor sends it), e.g. (1, 84, 84) for an Atari frame or (4,).
      observation_dtype: numpy dtype name of observations: 'uint8' or 'float32'.
      num_actions: size of the Discrete action space (actions are 0..n-1).
      frame_stack: how many consecutive observations the learner stacks along
        their first axis before the network sees them (1: none); see
        ``seed_rl/agents/frame_stacking.py``.
    """

    observation_shape: tuple[int, ...]
    observation_dtype: str
    num_actions: int
    frame_stack: int = 1

    @property
    def model_observation_shape(self) -> tuple[int, ...]:
        """The shape of what the network sees: ``frame_stack`` observations stacked along their first axis."""
        first, *rest = self.observation_shape
        return (first * self.frame_stack, *rest)

    def for_model(self) -> "EnvSpec":
        """The spec of the stacked observations the network is built for."""
        return EnvSpec(self.model_observation_shape, self.observation_dtype, self.num_actions)


class OneHotObservation(gymnasium.ObservationWrapper):
    """Turns a Discrete observation space into float32 one-hot vectors."""

    def __init__(self, env: gymnasium.Env):
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, spaces.Discrete):
            raise EnvError(
                f"OneHotObservation needs a Discrete observation space, got {space}"
            )
        self._n = int(space.n)
        self._start = int(space.start)
        self.observation_space = spaces.Box(0.0, 1.0, (self._n,), np.float32)

    def observation(self, observation):
        one_hot = np.zeros(self._n, np.float32)
        one_hot[int(observation) - self._start] = 1.0
        return one_hot


def _env_name(env: gymnasium.Env) -> str:
    spec = env.spec
    if spec is not None and spec.id:
        return spec.id
    return type(env.unwrapped).__name__


def make_env(env_name: str, seed: int, config: EnvConfig = EnvConfig()) -> gymnasium.Env:
    """Builds an environment.

    Args:
      env_name: an ``--env`` name: '<family>:<name>' for a family of ``families.py``
        (e.g. 'atari:Pong', 'minatar:Breakout', 'football:11_vs_11_easy_stochastic'),
        or a registered gymnasium id (e.g. 'CartPole-v1', 'my_package.envs:MyEnv-v0').
      seed: seeds the action space; the actor seeds episodes with the first
        ``env.reset(seed=...)``.
      config: the families' settings (Atari preprocessing, Football, DeepMind Lab);
        ignored where they do not apply (MinAtar keeps its own defaults).

    Returns:
      The env. Float, integer (except uint8) and boolean Box observations are
      returned as float32 arrays.

    Raises:
      EnvError: an unknown game or id, a raw ALE id, or a missing dependency.
    """
    family, name = parse_env_name(env_name)
    return family.make(name, seed, config)


def frames_per_step(env_name: str, config: EnvConfig = EnvConfig()) -> int:
    """Environment frames per agent step: Atari's frame skip, DeepMind Lab's action repeats, else 1 (MinAtar too)."""
    family, _ = parse_env_name(env_name)
    return family.frames_per_step(config)


def frame_stack(env_name: str, config: EnvConfig = EnvConfig()) -> int:
    """Observations the learner stacks per step: ``--frame_stack`` for Atari and Football, else 1."""
    family, _ = parse_env_name(env_name)
    return family.frame_stack(config)


def probe_spec(env_name: str, seed: int = 0, config: EnvConfig = EnvConfig()) -> EnvSpec:
    """The spec of ``env_name`` (frame stacking included), from one environment built and closed."""
    env = make_env(env_name, seed, config)
    try:
        return env_spec(env, frame_stack(env_name, config))
    finally:
        env.close()


def env_spec(env: gymnasium.Env, frame_stack: int = 1) -> EnvSpec:
    """Checks that seed_rl's agents can use ``env`` and describes it.

    ``frame_stack``: observations the learner stacks (:func:`frame_stack`); they
    need at least one axis to stack along.

    Supported: a Box observation space (any shape) of dtype uint8 or floating
    (floating observations are float32, see ``make_env``), and a Discrete
    action space whose actions start at 0.

    Raises:
      EnvError: naming the unsupported space and what is supported.
    """
    name = _env_name(env)
    obs_space = env.observation_space
    if isinstance(obs_space, spaces.Discrete):
        raise EnvError(
            f"observation space {obs_space} of {name!r} is not supported: seed_rl's agents "
            "need a Box observation space; wrap the env in "
            "seed_rl.envs.factory.OneHotObservation to get one-hot float32 vectors"
        )
    if not isinstance(obs_space, spaces.Box):
        raise EnvError(
            f"observation space {obs_space} of {name!r} is not supported: seed_rl's agents "
            "need a Box observation space of dtype uint8 or float (flatten Dict/Tuple "
            "spaces with gymnasium.wrappers.FlattenObservation)"
        )
    if obs_space.dtype == np.uint8:
        dtype = "uint8"
    elif np.issubdtype(obs_space.dtype, np.floating):
        dtype = "float32"
    else:
        raise EnvError(
            f"observation space {obs_space} of {name!r} is not supported: seed_rl's agents "
            f"need a Box of dtype uint8 or float, not {obs_space.dtype}; cast the "
            "observations with an ObservationWrapper"
        )

    act_space = env.action_space
    if not isinstance(act_space, spaces.Discrete):
        raise EnvError(
            f"action space {act_space} of {name!r} is not supported: "
            "seed_rl's agents need a Discrete action space"
        )
    if int(act_space.start) != 0:
        raise EnvError(
            f"action space {act_space} of {name!r} is not supported: seed_rl's agents "
            "need a Discrete action space starting at 0; shift the actions with an "
            "ActionWrapper"
        )
    if frame_stack > 1 and not obs_space.shape:
        raise EnvError(f"observations of {name!r} are scalars, which cannot be stacked; use --frame_stack=1")
    return EnvSpec(
        observation_shape=tuple(int(d) for d in obs_space.shape),
        observation_dtype=dtype,
        num_actions=int(act_space.n),
        frame_stack=frame_stack,
    )
