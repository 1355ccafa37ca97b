"""Atari 2600 games with SEED RL's preprocessing, built on ale-py + gymnasium.

The pipeline matches SEED RL's ``atari/env.py``: the raw game without frame
skipping (``frameskip=1``), then gymnasium's ``AtariPreprocessing`` (random
no-op starts, action repeat with a max over the last two frames, resize to
84x84, grayscale). Observations are single uint8 frames, channel-first:
``(1, 84, 84)`` for grayscale, ``(3, 84, 84)`` for RGB. The learner stacks the
last ``frame_stack`` of them, as SEED RL's network does
(``seed_rl/agents/frame_stacking.py``), so each frame crosses the wire once.
"""

from __future__ import annotations

import difflib
import functools
import re

import gymnasium
import numpy as np
from gymnasium import spaces

from seed_rl.envs.config import EnvConfig
from seed_rl.envs.errors import EnvError

_INSTALL_HINT = "pip install 'seed_rl[atari]'"


def _import_ale():
    try:
        import ale_py
    except ImportError as e:
        raise EnvError(
            f"Atari games need ale-py, which is not installed ({e}); run {_INSTALL_HINT}"
        ) from None
    try:
        import cv2  # noqa: F401  (AtariPreprocessing resizes with OpenCV)
    except ImportError as e:
        raise EnvError(
            f"Atari preprocessing needs OpenCV, which is not installed ({e}); run {_INSTALL_HINT}"
        ) from None
    gymnasium.register_envs(ale_py)
    return ale_py


def _key(name: str) -> str:
    """Spelling-insensitive key: 'Space_Invaders', 'spaceinvaders' -> 'spaceinvaders'."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


@functools.lru_cache(maxsize=1)
def _known_games() -> dict[str, str]:
    """Maps _key(game) -> canonical game name, for the games ale-py registers."""
    _import_ale()
    games = {}
    for env_id in gymnasium.registry:
        match = re.fullmatch(r"ALE/([A-Za-z0-9]+)-v5", env_id)
        if match:
            games[_key(match.group(1))] = match.group(1)
    return games


def _strip_decorations(game: str) -> str:
    """'atari:Pong', 'ALE/Pong-v5', 'PongNoFrameskip-v4', 'Pong-v0' -> 'Pong'."""
    name = game.strip()
    for prefix in ("atari:", "ALE/", "ale/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    name = re.sub(r"-v\d+$", "", name)
    name = re.sub(r"(NoFrameskip|Deterministic)$", "", name)
    return name


def canonical_game_name(game: str) -> str:
    """Returns ale-py's name for ``game`` (e.g. 'space_invaders' -> 'SpaceInvaders').

    Raises:
      EnvError: ale-py is missing, or it has no such game.
    """
    games = _known_games()
    key = _key(_strip_decorations(game))
    if key in games:
        return games[key]
    close = difflib.get_close_matches(key, list(games), n=3)
    hint = f" (did you mean {' or '.join(repr(games[c]) for c in close)}?)" if close else ""
    raise EnvError(
        f"unknown Atari game {game!r}{hint}; ale-py ships {len(games)} games: "
        f"python -m seed_rl.envs.atari lists them"
    )


def main() -> None:
    """``python -m seed_rl.envs.atari``: the games ``--env=atari:<Game>`` accepts, one a line."""
    try:
        print("\n".join(sorted(_known_games().values())))
    except EnvError as e:
        raise SystemExit(f"error: {e}") from None


class _ChannelFirstFrames(gymnasium.ObservationWrapper):
    """(H, W, C) frames -> channel-first (C, H, W)."""

    def __init__(self, env: gymnasium.Env):
        super().__init__(env)
        height, width, channels = env.observation_space.shape
        self.observation_space = spaces.Box(0, 255, (channels, height, width), np.uint8)

    def observation(self, observation):
        return np.ascontiguousarray(np.asarray(observation).transpose(2, 0, 1))


def make_atari(game: str, seed: int, config: EnvConfig = EnvConfig()) -> gymnasium.Env:
    """Builds an Atari game with SEED RL's preprocessing.

    Args:
      game: the game, in any common spelling: 'Pong', 'pong', 'atari:Pong',
        'PongNoFrameskip-v4', 'ALE/Pong-v5', 'space_invaders'.
      seed: seeds the action space. Episodes (no-op starts, sticky actions)
        are seeded by the first ``env.reset(seed=...)``, done by the actor.
      config: preprocessing settings.

    Returns:
      A gymnasium env with single uint8 frames of shape (1, S, S) for
      grayscale or (3, S, S) for RGB (S = screen_size), and a Discrete action
      space. ``info["lives"]`` counts the lives left.

    Raises:
      EnvError: unknown game, or ale-py / OpenCV not installed.
    """
    name = canonical_game_name(game)
    env = gymnasium.make(
        f"ALE/{name}-v5",
        frameskip=1,  # AtariPreprocessing repeats actions itself.
        repeat_action_probability=config.sticky_action_prob,
        full_action_space=config.full_action_space,
        max_num_frames_per_episode=config.max_episode_frames,
        # AtariPreprocessing reads the screen from ALE itself; a grayscale
        # base observation avoids an unused RGB copy on every emulator frame.
        obs_type="grayscale" if config.grayscale else "rgb",
    )
    env = gymnasium.wrappers.AtariPreprocessing(
        env,
        noop_max=config.noop_max,
        frame_skip=config.frame_skip,
        screen_size=config.screen_size,
        terminal_on_life_loss=config.terminal_on_life_loss,
        grayscale_obs=config.grayscale,
        grayscale_newaxis=True,  # (S, S, 1): every frame has a channel axis to stack along
        scale_obs=False,
    )
    env = _ChannelFirstFrames(env)
    env.action_space.seed(seed)
    return env


if __name__ == "__main__":
    main()
