"""Environments for seed_rl: the families of ``families.py`` (Atari, MinAtar, Football, DeepMind Lab, old gym) and gymnasium ids."""

from seed_rl.envs.config import EnvConfig
from seed_rl.envs.errors import EnvError
from seed_rl.envs.factory import EnvSpec, env_spec, frame_stack, make_env, probe_spec

__all__ = ["EnvConfig", "EnvError", "EnvSpec", "env_spec", "frame_stack", "make_env", "probe_spec"]
