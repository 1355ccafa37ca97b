"""Google Research Football scenarios behind a gymnasium interface.

``make_football('academy_empty_goal_close', seed, config)`` builds a scenario
of the ``gfootball`` engine (not a seed_rl extra: it builds from source with
system libraries, which ``tools/setup_football.sh`` of a seed_rl source checkout
does). gfootball
speaks the old gym API (``reset() -> obs``, ``step() -> (obs, reward, done,
info)``); this module is the only place in seed_rl that sees it: everything
returned is a gymnasium env with channel-first uint8 images or float32 vectors
and a ``Discrete`` action space.

Representations (``EnvConfig.football_representation``):
  - ``extracted``: the super-mini-map (SMM), 4 binary 72x96 planes (left team,
    right team, ball, active player) as uint8 0/255; SEED RL's choice.
  - ``simple115v2``: a 115-float vector (positions, directions, ball, game mode).
  - ``pixels`` / ``pixels_gray``: the rendered frame resized to 72x96, RGB or
    gray. These need the engine's OpenGL renderer.
The learner stacks the last ``EnvConfig.frame_stack`` observations (SEED RL
stacks 4: ``stacked=True`` in its football/env.py): images along the channel
axis, vectors end to end (``seed_rl/agents/frame_stacking.py``); actors send one.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib
import io
import logging
import pkgutil
import typing
import warnings
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from seed_rl.envs.config import EnvConfig
from seed_rl.envs.errors import EnvError

# SEED RL's own default is 11_vs_11_easy_stochastic (football/env.py); the
# academy scenario is the one that learns within minutes on a CPU.
DEFAULT_SCENARIO = "academy_empty_goal_close"
REPRESENTATIONS: tuple[str, ...] = typing.get_args(typing.get_type_hints(EnvConfig)["football_representation"])
# The reward experiments SEED RL offers (football/env.py --reward_experiment).
REWARDS: tuple[str, ...] = typing.get_args(typing.get_type_hints(EnvConfig)["football_rewards"])
# gfootball's default SMM / pixel size, SEED RL's smm_size='default' (width, height).
SMM_WIDTH, SMM_HEIGHT = 96, 72
_INSTALL_HINT = (
    "it builds from source with system libraries (SDL2, Boost.Python, GL): from a seed_rl source checkout run "
    "tools/setup_football.sh, which installs it into .venv (SEED_RL_VENV=/path/to/venv for another environment)"
)


class _DropEpisodeSummaries(logging.Filter):
    """gfootball logs a line per finished episode; seed_rl's learner already reports returns."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Episode reward")


def _import_gfootball():
    try:
        # gym prints a notice that it is unmaintained on import; here it is
        # only gfootball's internal dependency, so the notice is noise.
        with contextlib.redirect_stderr(io.StringIO()):
            module = importlib.import_module("gfootball.env")
    except ImportError as e:
        raise EnvError(
            f"Google Research Football needs the gfootball package, which is not installed ({e}); {_INSTALL_HINT}"
        ) from None
    absl_logger = logging.getLogger("absl")  # gfootball logs through absl.logging
    if not any(isinstance(f, _DropEpisodeSummaries) for f in absl_logger.filters):
        absl_logger.addFilter(_DropEpisodeSummaries())
    return module


@functools.lru_cache(maxsize=1)
def scenario_names() -> tuple[str, ...]:
    """The scenarios gfootball ships, e.g. 'academy_empty_goal_close', '11_vs_11_easy_stochastic'."""
    _import_gfootball()
    scenarios = importlib.import_module("gfootball.scenarios")
    return tuple(sorted(m.name for m in pkgutil.iter_modules(scenarios.__path__) if m.name[0].isalnum()))


def _check_scenario(scenario: str) -> str:
    names = scenario_names()
    if scenario in names:
        return scenario
    close = difflib.get_close_matches(scenario, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    raise EnvError(f"unknown Football scenario {scenario!r}{hint} (gfootball ships: {', '.join(names)})")


def _check_config(config: EnvConfig) -> None:
    if config.football_representation not in REPRESENTATIONS:
        raise EnvError(
            f"unknown --football_representation={config.football_representation!r}; "
            f"choose one of {', '.join(REPRESENTATIONS)}"
        )
    if config.football_rewards not in REWARDS:
        raise EnvError(
            f"unknown --football_rewards={config.football_rewards!r}; choose one of {' or '.join(REWARDS)}"
        )


class GFootballEnv(gymnasium.Env):
    """One gfootball scenario with the gymnasium API and channel-first observations.

    gfootball's ``done`` ends a game (in academy scenarios a goal, the ball
    going out or a lost ball; the final whistle in all), by the scenario's own
    rules, so it is reported as ``terminated``, never ``truncated``.
    """

    metadata = {"render_modes": []}

    def __init__(self, scenario: str, representation: str, rewards: str, seed: int):
        football = _import_gfootball()
        self.scenario = scenario
        self.representation = representation
        with warnings.catch_warnings():
            # gym 0.25 warns that gfootball's wrappers use its old step API, which is the one we expect.
            warnings.simplefilter("ignore", DeprecationWarning)
            self._env = self._create(football, scenario, representation, rewards, seed)
        old_space = self._env.observation_space
        if representation == "simple115v2":
            self.observation_space = spaces.Box(-np.inf, np.inf, old_space.shape, np.float32)
        else:
            height, width, channels = old_space.shape
            self.observation_space = spaces.Box(0, 255, (channels, height, width), np.uint8)
        self.action_space = spaces.Discrete(int(self._env.action_space.n))

    @staticmethod
    def _create(football, scenario: str, representation: str, rewards: str, seed: int):
        return football.create_environment(
            env_name=scenario,
            representation=representation,
            rewards=rewards,
            stacked=False,  # the learner stacks, for every representation
            render=representation.startswith("pixels"),
            channel_dimensions=(SMM_WIDTH, SMM_HEIGHT),
            other_config_options={"game_engine_random_seed": int(seed)},
        )

    def _convert(self, observation) -> np.ndarray:
        obs = np.asarray(observation)
        if self.representation == "simple115v2":
            return obs.astype(np.float32, copy=False)
        return np.ascontiguousarray(obs.transpose(2, 0, 1), dtype=np.uint8)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            # The engine draws each game from its own seed; gymnasium's
            # reset(seed=...) makes that seed (and so the episodes) reproducible.
            self._env.unwrapped._config.set_scenario_value("game_engine_random_seed", int(seed))
        return self._convert(self._env.reset()), {}

    def step(self, action):
        observation, reward, done, info = self._env.step(int(action))
        return self._convert(observation), float(reward), bool(done), False, dict(info)

    def close(self) -> None:
        self._env.close()


def make_football(scenario: str, seed: int, config: EnvConfig = EnvConfig()) -> gymnasium.Env:
    """Builds a Football scenario ('' for the default, academy_empty_goal_close).

    Returns:
      A gymnasium env whose observations are ``(C, 72, 96)`` uint8 images for
      ``extracted`` (C=4), ``pixels`` (C=3) and ``pixels_gray`` (C=1), or
      ``(115,)`` float32 vectors for ``simple115v2``, one frame each (the
      learner stacks them);
      19 discrete actions (gfootball's default action set).

    Raises:
      EnvError: gfootball is not installed, an unknown scenario, representation or reward.
    """
    _check_config(config)
    scenario = _check_scenario(scenario.strip() or DEFAULT_SCENARIO)
    env: gymnasium.Env = GFootballEnv(scenario, config.football_representation, config.football_rewards, seed)
    env.action_space.seed(seed)
    return env
