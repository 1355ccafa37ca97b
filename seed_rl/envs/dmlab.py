"""DeepMind Lab levels as gymnasium environments, with SEED RL's action set.

``make_dmlab('explore_goal_locations_small', seed, config)`` wraps
``deepmind_lab.Lab`` (the engine's Python API, ``docs/users/python_api.md``):

- actions: the 9 discrete actions of IMPALA / SEED RL (``DEFAULT_ACTION_SET``),
  each a 7-int action vector held for ``dmlab_action_repeats`` engine frames
  (``Lab.step(action, num_steps=...)``), rewards summed over them;
- observations: ``RGB_INTERLEAVED`` frames of ``dmlab_height`` x ``dmlab_width``,
  returned channel-first as uint8 ``(3, height, width)`` like every image env here;
- the instruction text (``INSTR``, used by the language levels): the agents take one
  image observation, so it is not part of the observation. Each ``reset``/``step``
  returns it in ``info["instruction"]`` and as ``info["instruction_tokens"]``, a
  fixed-length int32 vector of hashed words (IMPALA's language levels: words
  hashed into 1,000 buckets), ready for a network that reads it;
- episode ends: when ``Lab.is_running()`` turns False the episode is over
  (``terminated``; DeepMind Lab does not say whether a time limit ended it);
- an optional level cache (``level_cache_dir``, see ``level_cache.py``).

The engine is not on PyPI; building it is described in docs/environments.md ("DeepMind
Lab") and in the error raised when it is missing.
"""

from __future__ import annotations

import hashlib
import re

import gymnasium
import numpy as np
from gymnasium import spaces

from seed_rl.envs.dmlab_config import DmLabConfig
from seed_rl.envs.dmlab_levels import resolve_level
from seed_rl.envs.errors import EnvError

BUILD_DOCS = "https://github.com/google-deepmind/lab/blob/master/docs/users/build.md"
PIP_PACKAGE_DOCS = "https://github.com/google-deepmind/lab/tree/master/python/pip_package"
MISSING_ENGINE = (
    "DeepMind Lab levels need the deepmind_lab module, which is not installed{detail}; it is not on PyPI: "
    "build its wheel from source with Bazel (git clone https://github.com/google-deepmind/lab && cd lab && "
    "bazel build -c opt //python/pip_package:build_pip_package && "
    "./bazel-bin/python/pip_package/build_pip_package /tmp/dmlab_pkg) and install it with the "
    "pip of the environment seed_rl runs in (pip install /tmp/dmlab_pkg/deepmind_lab-*.whl); see " + BUILD_DOCS + " and " + PIP_PACKAGE_DOCS
)

# IMPALA's / SEED RL's DMLab action set (SEED RL dmlab/env.py,
# DEFAULT_ACTION_SET; Espeholt et al. 2018, Table D.2). The 7 integers follow
# Lab.action_spec(): LOOK_LEFT_RIGHT_PIXELS_PER_FRAME, LOOK_DOWN_UP_PIXELS_PER_FRAME,
# STRAFE_LEFT_RIGHT, MOVE_BACK_FORWARD, FIRE, JUMP, CROUCH.
DEFAULT_ACTION_SET: tuple[tuple[int, ...], ...] = (
    (0, 0, 0, 1, 0, 0, 0),  # forward
    (0, 0, 0, -1, 0, 0, 0),  # backward
    (0, 0, -1, 0, 0, 0, 0),  # strafe left
    (0, 0, 1, 0, 0, 0, 0),  # strafe right
    (-20, 0, 0, 0, 0, 0, 0),  # look left
    (20, 0, 0, 0, 0, 0, 0),  # look right
    (-20, 0, 0, 1, 0, 0, 0),  # look left + forward
    (20, 0, 0, 1, 0, 0, 0),  # look right + forward
    (0, 0, 0, 0, 1, 0, 0),  # fire
)
ACTION_NAMES = (
    "forward", "backward", "strafe_left", "strafe_right", "look_left", "look_right",
    "look_left_forward", "look_right_forward", "fire",
)
RGB = "RGB_INTERLEAVED"
INSTR = "INSTR"
# Instruction tokens: words hashed into INSTRUCTION_VOCABULARY buckets (IMPALA
# used 1,000), 0 is padding; instructions are cut at INSTRUCTION_LENGTH words.
INSTRUCTION_VOCABULARY = 1000
INSTRUCTION_LENGTH = 16
# SEED RL dmlab/env.py: the mixerSeed of evaluation episodes.
EVAL_MIXER_SEED = 0x600D5EED


def import_deepmind_lab():
    """Imports the engine's module, or raises an EnvError that says how to build it."""
    try:
        import deepmind_lab
    except ImportError as e:
        missing = getattr(e, "name", None) == "deepmind_lab"
        raise EnvError(MISSING_ENGINE.format(detail="" if missing else f" (importing it failed: {e})")) from None
    return deepmind_lab


def instruction_tokens(text: str) -> np.ndarray:
    """Hashes the words of ``text`` into ``[1, INSTRUCTION_VOCABULARY)``; 0 pads to INSTRUCTION_LENGTH.

    The hash is stable across processes and runs (unlike Python's ``hash``).
    """
    tokens = np.zeros(INSTRUCTION_LENGTH, np.int32)
    words = re.findall(r"[a-z0-9]+", text.lower())[:INSTRUCTION_LENGTH]
    for i, word in enumerate(words):
        digest = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")
        tokens[i] = 1 + digest % (INSTRUCTION_VOCABULARY - 1)
    return tokens


def lab_config(config: DmLabConfig) -> dict[str, str]:
    """The ``config`` dict given to ``deepmind_lab.Lab``: every value a string, as the API requires."""
    settings: dict[str, object] = dict(config.level_options())
    # logLevel WARN as in SEED RL dmlab/config.py: the engine's info logs are per-episode noise.
    settings |= {"width": config.dmlab_width, "height": config.dmlab_height, "logLevel": "WARN"}
    if config.dmlab_dataset_path:
        settings["datasetPath"] = config.dmlab_dataset_path
    if config.dmlab_eval:
        settings["allowHoldOutLevels"] = "true"
        settings["mixerSeed"] = EVAL_MIXER_SEED
    return {key: str(value) for key, value in settings.items()}


class DmLabEnv(gymnasium.Env):
    """One DeepMind Lab level with a discrete action set and channel-first RGB observations."""

    metadata = {"render_modes": []}

    def __init__(
        self,
        level: str,
        seed: int,
        config: DmLabConfig = DmLabConfig(),
        action_set: tuple[tuple[int, ...], ...] = DEFAULT_ACTION_SET,
    ):
        self.level = resolve_level(level)  # a misspelt level fails before the engine is imported
        deepmind_lab = import_deepmind_lab()
        if config.dmlab_runfiles_path:
            deepmind_lab.set_runfiles_path(config.dmlab_runfiles_path)
        self._config = config
        self._action_set = np.asarray(action_set, dtype=np.intc)
        self._observation_names = [RGB] + ([INSTR] if config.dmlab_instruction else [])
        cache = None
        if config.level_cache_dir:
            from seed_rl.envs.level_cache import LevelCache

            cache = LevelCache(config.level_cache_dir)
        self.level_cache = cache
        try:
            self._lab = deepmind_lab.Lab(
                self.level,
                self._observation_names,
                config=lab_config(config),
                renderer=config.dmlab_renderer,
                level_cache=cache,
            )
        except (RuntimeError, ValueError) as e:  # the engine's errors for a bad level or setting
            raise EnvError(f"DeepMind Lab could not load level {self.level!r}: {e}") from None
        self.action_space = spaces.Discrete(len(action_set))
        self.observation_space = spaces.Box(
            0, 255, (3, config.dmlab_height, config.dmlab_width), np.uint8
        )
        self.action_space.seed(seed)
        self._episode_seeds = np.random.default_rng(seed)
        self._last_observation = np.zeros(self.observation_space.shape, np.uint8)
        self._instruction = ""
        self._instruction_tokens = instruction_tokens("")

    def _read_observations(self) -> np.ndarray:
        observations = self._lab.observations()
        frame = np.asarray(observations[RGB])
        expected = (self._config.dmlab_height, self._config.dmlab_width, 3)
        if frame.shape != expected:
            raise EnvError(f"DeepMind Lab returned {RGB} frames of shape {frame.shape}, expected {expected}")
        self._last_observation = np.ascontiguousarray(frame.transpose(2, 0, 1), dtype=np.uint8)
        if INSTR in observations:
            text = observations[INSTR]
            text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
            if text != self._instruction:
                self._instruction = text
                self._instruction_tokens = instruction_tokens(text)
        return self._last_observation

    def _info(self) -> dict:
        if not self._config.dmlab_instruction:
            return {}
        return {"instruction": self._instruction, "instruction_tokens": self._instruction_tokens.copy()}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._episode_seeds = np.random.default_rng(seed)
        # Every episode gets its own engine seed, drawn from the env's seed (SEED RL
        # dmlab/env.py draws one per reset in the same way).
        self._lab.reset(seed=int(self._episode_seeds.integers(0, 2**31 - 1)))
        return self._read_observations(), self._info()

    def step(self, action):
        action = int(action)
        if not 0 <= action < len(self._action_set):
            raise ValueError(f"action {action} is outside the {len(self._action_set)} DeepMind Lab actions")
        reward = float(self._lab.step(self._action_set[action], num_steps=self._config.dmlab_action_repeats))
        terminated = not self._lab.is_running()
        # After the episode ends the engine has no observation; the actor resets
        # the env then and never uses this one, so the last frame stands in.
        observation = self._last_observation if terminated else self._read_observations()
        return observation, reward, terminated, False, self._info()

    def close(self) -> None:
        lab = getattr(self, "_lab", None)
        if lab is not None:
            lab.close()
            self._lab = None


def make_dmlab(level: str, seed: int, config: DmLabConfig = DmLabConfig()) -> gymnasium.Env:
    """Builds a DeepMind Lab level (see the module docstring).

    Args:
      level: a DMLab-30 level (``rooms_watermaze``, ``contributed/dmlab30/rooms_watermaze``),
        a classic level (``seekavoid_arena_01``) or another level's path.
      seed: seeds the action space and the engine's per-episode seeds.
      config: sizes, action repeats, renderer, level cache.

    Raises:
      EnvError: the engine is not installed, the level is unknown, or the
        level cache location cannot be used.
    """
    return DmLabEnv(level, seed, config)
