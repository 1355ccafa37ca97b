"""The environment families, each selected by the prefix of an ``--env`` name.

``atari:<Game>`` (SEED RL's Atari preprocessing, ``atari.py``),
``minatar:<Game>`` (``minatar.py``), ``football:<scenario>`` (``football.py``),
``dmlab:<level>`` (``dmlab.py``), ``gym:<id>`` (old-gym-API environments through
shimmy, ``old_gym.py``); any other name is a plain gymnasium id, or
``module:id`` (``gymnasium_ids.py``). :func:`parse_env_name` is the one place an
``--env`` name is split into its family and the rest; whatever depends on the
family (building the env, frames per step, the preset, how an evaluation draws
observations) asks the family object.
"""

from __future__ import annotations

import gymnasium

from seed_rl.envs.atari import make_atari
from seed_rl.envs.config import EnvConfig
from seed_rl.envs.football import make_football
from seed_rl.envs.gymnasium_ids import finish, make_gymnasium
from seed_rl.envs.minatar import make_minatar
from seed_rl.envs.old_gym import make_old_gym


class EnvFamily:
    """One family of environments; subclasses override what differs from a plain gymnasium id."""

    name: str  # the family's preset name (seed_rl/config/presets.py); "" for plain gymnasium ids
    prefix: str  # how its --env names start; "" for plain gymnasium ids

    def make(self, name: str, seed: int, config: EnvConfig) -> gymnasium.Env:
        """Builds environment ``name`` (the ``--env`` name without the prefix)."""
        raise NotImplementedError

    def frames_per_step(self, config: EnvConfig) -> int:
        """Environment frames per agent step (frame skip, action repeats)."""
        return 1

    def frame_stack(self, config: EnvConfig) -> int:
        """Consecutive observations the learner stacks for the network (1: none)."""
        return 1

    def preset_family(self, observation_shape: tuple[int, ...]) -> str:
        """The family name the presets are chosen by."""
        return self.name

    def observation_layout(self, config: EnvConfig) -> str | None:
        """How image observations are laid out for a video: "rgb", "gray", "planes"; None: guess from them."""
        return None


class AtariFamily(EnvFamily):
    name, prefix = "atari", "atari:"

    def make(self, name: str, seed: int, config: EnvConfig) -> gymnasium.Env:
        return make_atari(name, seed, config)

    def frames_per_step(self, config: EnvConfig) -> int:
        return config.frame_skip

    def frame_stack(self, config: EnvConfig) -> int:
        return config.frame_stack

    def observation_layout(self, config: EnvConfig) -> str | None:
        return "gray" if config.grayscale else "rgb"


class MinAtarFamily(EnvFamily):
    name, prefix = "minatar", "minatar:"

    def make(self, name: str, seed: int, config: EnvConfig) -> gymnasium.Env:
        return make_minatar(name, seed)  # MinAtar keeps its own defaults

    def observation_layout(self, config: EnvConfig) -> str | None:
        return "planes"


class FootballFamily(EnvFamily):
    name, prefix = "football", "football:"

    def make(self, name: str, seed: int, config: EnvConfig) -> gymnasium.Env:
        return make_football(name, seed, config)

    def frame_stack(self, config: EnvConfig) -> int:
        return config.frame_stack

    def observation_layout(self, config: EnvConfig) -> str | None:
        if not config.football_representation.startswith("pixels"):
            return None
        return "gray" if config.football_representation == "pixels_gray" else "rgb"


class DmLabFamily(EnvFamily):
    name, prefix = "dmlab", "dmlab:"

    def make(self, name: str, seed: int, config: EnvConfig) -> gymnasium.Env:
        from seed_rl.envs.dmlab import make_dmlab  # imported only when a DeepMind Lab level is asked for

        return make_dmlab(name, seed, config.dmlab)

    def frames_per_step(self, config: EnvConfig) -> int:
        return config.dmlab.dmlab_action_repeats

    def observation_layout(self, config: EnvConfig) -> str | None:
        return "rgb"


class GymnasiumFamily(EnvFamily):
    """Registered gymnasium ids, ``module:id`` ones included; presets by the observation's rank."""

    name, prefix = "", ""

    def make(self, name: str, seed: int, config: EnvConfig) -> gymnasium.Env:
        return make_gymnasium(name, seed)

    def preset_family(self, observation_shape: tuple[int, ...]) -> str:
        return "vector" if len(observation_shape) == 1 else "other"


class OldGymFamily(GymnasiumFamily):
    """Old-gym-API ids through shimmy; otherwise as plain gymnasium ids."""

    name, prefix = "gym", "gym:"

    def make(self, name: str, seed: int, config: EnvConfig) -> gymnasium.Env:
        return finish(make_old_gym(name), seed)


PREFIXED: tuple[EnvFamily, ...] = (AtariFamily(), MinAtarFamily(), FootballFamily(), DmLabFamily(), OldGymFamily())
GYMNASIUM = GymnasiumFamily()


def parse_env_name(env_name: str) -> tuple[EnvFamily, str]:
    """(the family of ``env_name``, the name without the family's prefix)."""
    for family in PREFIXED:
        if env_name.startswith(family.prefix):
            return family, env_name[len(family.prefix):]
    return GYMNASIUM, env_name
