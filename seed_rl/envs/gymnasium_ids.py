"""Plain gymnasium ids: ``'CartPole-v1'``, or ``'my_package.envs:MyEnv-v0'`` to import the registering module first.

Also the finishing touch every gymnasium-API environment gets (old-gym ones
too): float32 observations where the agents need them and a seeded action space.
"""

from __future__ import annotations

import difflib
import importlib

import gymnasium
import numpy as np
from gymnasium import spaces

from seed_rl.envs.errors import EnvError


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


def _is_ale_id(env_name: str) -> bool:
    spec = gymnasium.registry.get(env_name)
    if spec is not None and isinstance(spec.entry_point, str):
        return spec.entry_point.startswith("ale_py")
    return env_name.startswith("ALE/") or "NoFrameskip" in env_name


def make_gymnasium(env_name: str, seed: int) -> gymnasium.Env:
    """Builds registered gymnasium id ``env_name`` (``module:id`` imports ``module`` first), finished.

    Raises:
      EnvError: an unknown id (with the closest known one), a module that does not import,
        a raw ALE or MinAtar id (which have families of their own), or a missing dependency.
    """
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
    return finish(env, seed)


def _needs_float32(space: spaces.Box) -> bool:
    """Box dtypes the agents take as float32: all but uint8 (images, kept as they are)."""
    dtype = np.dtype(space.dtype)
    return dtype != np.uint8 and (np.issubdtype(dtype, np.number) or dtype == np.bool_)


def finish(env: gymnasium.Env, seed: int) -> gymnasium.Env:
    """Float, integer (but uint8) and boolean Box observations as float32; a seeded action space."""
    space = env.observation_space
    if isinstance(space, spaces.Box) and _needs_float32(space):
        env = Float32Observation(env)
    env.action_space.seed(seed)
    return env
