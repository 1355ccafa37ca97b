"""MinAtar games (Young & Tian 2019) as channel-first uint8 images.

``make_minatar('Breakout', seed)`` builds ``MinAtar/Breakout-v1``: the game with
its minimal action set (SEED RL and ALE use minimal action sets too) and
MinAtar's own defaults: sticky actions with probability 0.1 and difficulty
ramping ("MinAtar: An Atari-Inspired Testbed for Thorough and Reproducible
Reinforcement Learning Experiments", Young & Tian 2019). MinAtar's
observations are boolean ``(10, 10, C)`` planes, one per object kind; here they
are ``(C, 10, 10)`` uint8 planes of 0 or 255, so the image torsos, which divide
by 255, see 0/1. One agent step is one game frame.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from seed_rl.envs.errors import EnvError

# The games minatar 1.0.15 ships and registers (minatar.gym.register_envs), by gymnasium id name.
GAMES = ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")
_INSTALL_HINT = "pip install 'seed_rl[minatar]'"


def _key(name: str) -> str:
    """Spelling-insensitive key: 'Space_Invaders', 'spaceinvaders' -> 'spaceinvaders'."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def canonical_game_name(game: str) -> str:
    """Returns MinAtar's gymnasium name for ``game`` (e.g. 'space_invaders' -> 'SpaceInvaders').

    Raises:
      EnvError: no such game.
    """
    games = {_key(name): name for name in GAMES}
    key = _key(game)
    if key in games:
        return games[key]
    close = difflib.get_close_matches(key, list(games), n=1)
    hint = f"; did you mean {games[close[0]]!r}?" if close else ";"
    raise EnvError(f"unknown MinAtar game {game!r}{hint} (MinAtar ships: {', '.join(GAMES)})")


def _register_minatar() -> None:
    """Registers the MinAtar/<Game>-v0/v1 ids, once per process."""
    try:
        import minatar.gym
    except ImportError as e:
        raise EnvError(f"MinAtar games need the minatar package, which is not installed ({e}); {_INSTALL_HINT}") from None
    if f"MinAtar/{GAMES[0]}-v1" not in gymnasium.registry:
        minatar.gym.register_envs()


class MinAtarObservation(gymnasium.ObservationWrapper):
    """Boolean (10, 10, C) MinAtar states -> uint8 (C, 10, 10) planes of 0 or 255.

    The first ``reset()`` without a seed uses the seed given here, so an env
    built with a seed is reproducible even when its caller does not seed it.
    """

    def __init__(self, env: gymnasium.Env, seed: int | None = None):
        super().__init__(env)
        height, width, channels = env.observation_space.shape
        self.observation_space = spaces.Box(0, 255, (channels, height, width), np.uint8)
        self._first_seed = seed

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is None:
            seed = self._first_seed
        self._first_seed = None
        return super().reset(seed=seed, options=options)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        planes = np.ascontiguousarray(np.asarray(observation).transpose(2, 0, 1), dtype=np.uint8)
        return planes * np.uint8(255)


def make_minatar(game: str, seed: int) -> gymnasium.Env:
    """Builds a MinAtar game with its minimal action set.

    Args:
      game: 'Breakout', 'breakout', 'SpaceInvaders', 'space_invaders', ...
        (case and underscores do not matter); one of ``GAMES``.
      seed: seeds the action space, and the game on the first ``reset()``
        (the actor passes its own ``reset(seed=...)``, which takes precedence).

    Returns:
      A gymnasium env with uint8 observations of shape (C, 10, 10), values 0
      or 255, and a Discrete action space.

    Raises:
      EnvError: unknown game, or minatar not installed.
    """
    name = canonical_game_name(game)
    _register_minatar()
    env = MinAtarObservation(gymnasium.make(f"MinAtar/{name}-v1"), seed)
    env.action_space.seed(seed)
    return env
