"""Builds environments by name and describes them to the agents.

``make_env('atari:Pong', seed)`` builds an Atari game with SEED RL's
preprocessing, ``make_env('minatar:Breakout', seed)`` a MinAtar game as
channel-first 0/255 uint8 planes (``minatar.py``),
``make_env('dmlab:rooms_watermaze', seed)`` a DeepMind Lab level
(``dmlab.py``), ``make_env('gym:<id>', seed)`` an old-gym-API environment through
shimmy (``old_gym.py``); any other name is a registered gymnasium id such as
``'CartPole-v1'``, or ``'my_package.envs:MyEnv-v0'`` to import the module that
registers the id first (gymnasium's own ``module:id`` convention). ``env_spec(env)`` checks that an env is one seed_rl's
agents can use (a Box observation, a Discrete action space) and returns its
shapes.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass

import gymnasium
import numpy as np
from gymnasium import spaces

from seed_rl.envs.atari import make_atari
from seed_rl.envs.config import EnvConfig
from seed_rl.envs.errors import EnvError
from seed_rl.envs.old_gym import GYM_PREFIX, make_old_gym
from seed_rl.envs.football import FOOTBALL_PREFIX, make_football
from seed_rl.envs.minatar import MINATAR_PREFIX, make_minatar

ATARI_PREFIX = "atari:"
DMLAB_PREFIX = "dmlab:"
# The families whose --env names carry a prefix (presets are chosen per family).
PREFIXED_FAMILIES = {"atari": ATARI_PREFIX, "minatar": MINATAR_PREFIX, "football": FOOTBALL_PREFIX, "dmlab": DMLAB_PREFIX}


def prefixed_family(env_name: str) -> str | None:
    """'atari' for 'atari:Pong', ...; None for a plain gymnasium id (or 'gym:<old gym id>')."""
    return next((family for family, prefix in PREFIXED_FAMILIES.items() if env_name.startswith(prefix)), None)


@dataclass(frozen=True)
class EnvSpec:
    """What an agent needs to know about an environment.

    Attributes:
      observation_shape: shape of one observation, e.g. (4, 84, 84) or (4,).
      observation_dtype: numpy dtype name of observations: 'uint8' or 'float32'.
      num_actions: size of the Discrete action space (actions are 0..n-1).
    """

    observation_shape: tuple[int, ...]
    observation_dtype: str
    num_actions: int


class Float32Observation(gymnasium.ObservationWrapper):
    """Returns floating, integer or boolean Box observations as float32 numpy arrays."""

    def __init__(self, env: gymnasium.Env):
        super().__init__(env)
        space = env.observation_space
        if not (isinstance(space, spaces.Box) and _needs_float32(space)):
            raise EnvError(
                f"Float32Observation needs a Box observation space of floats, integers other than "
                f"uint8, or booleans, got {space}; uint8 images are used as they are"
            )
        with np.errstate(over="ignore"):  # float64 bounds past float32's range become inf
            low = space.low.astype(np.float32)
            high = space.high.astype(np.float32)
        self.observation_space = spaces.Box(low, high, space.shape, np.float32)

    def observation(self, observation):
        return np.asarray(observation, dtype=np.float32)


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


def _is_ale_id(env_name: str) -> bool:
    spec = gymnasium.registry.get(env_name)
    if spec is not None and isinstance(spec.entry_point, str):
        return spec.entry_point.startswith("ale_py")
    return env_name.startswith("ALE/") or "NoFrameskip" in env_name


def make_env(env_name: str, seed: int, config: EnvConfig = EnvConfig()) -> gymnasium.Env:
    """Builds an environment.

    Args:
      env_name: 'atari:<Game>' (e.g. 'atari:Pong', 'atari:space_invaders') for
        an Atari game with SEED RL's preprocessing (see ``make_atari``),
        'minatar:<Game>' (e.g. 'minatar:Breakout', 'minatar:space_invaders')
        for a MinAtar game (see ``make_minatar``),
        'football:<scenario>' for Google Research Football (see ``make_football``), or
        any registered gymnasium id (e.g. 'CartPole-v1').
      seed: seeds the action space; the actor seeds episodes with the first
        ``env.reset(seed=...)``.
      config: Atari preprocessing settings; ignored by other environments
        (MinAtar keeps its own defaults).

    Returns:
      The env. Float, integer (except uint8) and boolean Box observations are
      returned as float32 arrays.

    Raises:
      EnvError: an unknown game or id, a raw ALE id, or a missing dependency.
    """
    if env_name.startswith(ATARI_PREFIX):
        return make_atari(env_name[len(ATARI_PREFIX):], seed, config)
    if env_name.startswith(MINATAR_PREFIX):
        return make_minatar(env_name[len(MINATAR_PREFIX):], seed)
    if env_name.startswith(DMLAB_PREFIX):
        from seed_rl.envs.dmlab import make_dmlab

        return make_dmlab(env_name[len(DMLAB_PREFIX):], seed, config.dmlab)
    if env_name.startswith(GYM_PREFIX):
        return _finish(make_old_gym(env_name[len(GYM_PREFIX):]), seed)
    if env_name.startswith(FOOTBALL_PREFIX):
        return make_football(env_name[len(FOOTBALL_PREFIX):], seed, config)

    if ":" in env_name:
        module, _, env_name = env_name.partition(":")
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise EnvError(
                f"could not import {module!r} to register {env_name!r}: {e}; is the package installed "
                "and on PYTHONPATH?"
            ) from None

    if env_name.startswith("MinAtar/"):
        game = env_name.split("/")[-1].split("-v")[0]
        raise EnvError(f"{env_name!r} is a MinAtar id; write it as minatar:{game} (minimal action set, uint8 planes)")

    if _is_ale_id(env_name):
        game = env_name.split("/")[-1].split("-v")[0]
        for suffix in ("NoFrameskip", "Deterministic"):
            game = game.removesuffix(suffix)
        raise EnvError(
            f"{env_name!r} is a raw ALE id without SEED RL's preprocessing; "
            f"write it as atari:{game} (frame skip, 84x84 grayscale, frame stack "
            "and sticky actions come from EnvConfig)"
        )

    if env_name not in gymnasium.registry:
        candidates = [name for name in gymnasium.registry if not _is_ale_id(name)]
        close = difflib.get_close_matches(env_name, candidates, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ";"
        raise EnvError(
            f"unknown environment id {env_name!r}{hint} "
            "Atari games are written atari:<Game>, e.g. atari:Pong"
        )

    try:
        env = gymnasium.make(env_name)
    except gymnasium.error.DependencyNotInstalled as e:
        raise EnvError(
            f"environment {env_name!r} needs a package that is not installed: {e}"
        ) from None
    return _finish(env, seed)


def _needs_float32(space: spaces.Box) -> bool:
    """Box dtypes the agents take as float32: all but uint8 (images, kept as they are)."""
    dtype = np.dtype(space.dtype)
    return dtype != np.uint8 and (np.issubdtype(dtype, np.number) or dtype == np.bool_)


def _finish(env: gymnasium.Env, seed: int) -> gymnasium.Env:
    """Float, integer (but uint8) and boolean Box observations as float32; a seeded action space."""
    space = env.observation_space
    if isinstance(space, spaces.Box) and _needs_float32(space):
        env = Float32Observation(env)
    env.action_space.seed(seed)
    return env


def frames_per_step(env_name: str, config: EnvConfig = EnvConfig()) -> int:
    """Environment frames per agent step: Atari's frame skip, DeepMind Lab's action repeats, else 1 (MinAtar too)."""
    if env_name.startswith(ATARI_PREFIX):
        return config.frame_skip
    if env_name.startswith(DMLAB_PREFIX):
        return config.dmlab.dmlab_action_repeats
    return 1


def env_spec(env: gymnasium.Env) -> EnvSpec:
    """Checks that seed_rl's agents can use ``env`` and describes it.

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
    return EnvSpec(
        observation_shape=tuple(int(d) for d in obs_space.shape),
        observation_dtype=dtype,
        num_actions=int(act_space.n),
    )
