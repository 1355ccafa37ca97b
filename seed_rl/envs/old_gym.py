"""Environments written for the old ``gym`` API, converted to gymnasium by shimmy.

``--env=gym:<id>`` (or ``gym:<module>:<id>`` to import the module that
registers the id first) builds ``gym.make(id)`` and wraps it in shimmy's
compatibility layer:

- gym < 0.26 (``reset() -> obs``, ``step() -> (obs, reward, done, info)``):
  ``shimmy.GymV21CompatibilityV0``, which splits ``done`` into terminated and
  truncated using gym's ``info["TimeLimit.truncated"]``;
- gym 0.26 (already the five-value step API): ``shimmy.GymV26CompatibilityV0``.

gym's passive environment checker is turned off: in gym 0.24-0.26 it calls
``np.bool8``, which numpy 2 removed, so it fails on the first step. Nothing
else in seed_rl imports gym; it is needed only for this path
(``pip install 'seed_rl[shimmy]'``).
"""

from __future__ import annotations

import difflib
import importlib
import inspect

import gymnasium
from gymnasium.envs.registration import EnvSpec

from seed_rl.envs.errors import EnvError

_INSTALL_HINT = "pip install 'seed_rl[shimmy]'"


def _gym_version(gym) -> tuple[int, int]:
    major, minor = (int(part) for part in gym.__version__.split(".")[:2])
    return major, minor


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise EnvError(
            f"--env=gym:... runs old-gym-API environments through shimmy and needs {name}, "
            f"which could not be imported ({e}); run {_INSTALL_HINT}"
        ) from None


def _takes_seed(reset) -> bool:
    try:
        parameters = inspect.signature(reset).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "seed" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def wrap_old_gym_env(gym_env) -> gymnasium.Env:
    """Converts an instance of a gym (pre-gymnasium) environment to a gymnasium one.

    Under gym < 0.26 every environment has the old step API (gym 0.22-0.25 only
    switch with ``new_step_api=True``, which seed_rl never asks for). Under gym
    0.26, an env whose ``reset`` takes no ``seed`` is an old-API class used
    directly; the others have gym 0.26's own API.
    """
    gym = _import("gym")
    shimmy = _import("shimmy")
    if _gym_version(gym) >= (0, 26) and _takes_seed(gym_env.reset):
        env = shimmy.GymV26CompatibilityV0(env=gym_env)
    else:
        env = shimmy.GymV21CompatibilityV0(env=gym_env)
    # shimmy keeps gym's own EnvSpec, which gymnasium's wrappers cannot copy;
    # describe the env with a gymnasium one instead.
    gym_spec = getattr(gym_env, "spec", None)
    if gym_spec is not None:
        env.spec = EnvSpec(
            id=f"gym:{gym_spec.id}",
            entry_point=None,
            reward_threshold=gym_spec.reward_threshold,
            max_episode_steps=gym_spec.max_episode_steps,
        )
    return env


def make_old_gym(env_name: str) -> gymnasium.Env:
    """Builds ``<id>`` or ``<module>:<id>`` (without the ``gym:`` prefix) with gym, as a gymnasium env.

    Raises:
      EnvError: gym or shimmy is missing, the module cannot be imported, or gym
        has no such id.
    """
    gym = _import("gym")
    _import("shimmy")
    module, _, env_id = env_name.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise EnvError(
                f"could not import {module!r} to register gym id {env_id!r}: {e}; is the package "
                "installed and on PYTHONPATH?"
            ) from None
    registry = gym.envs.registry
    registered = registry if isinstance(registry, dict) else registry.env_specs  # gym 0.21: an EnvRegistry
    if env_id not in registered:
        close = difflib.get_close_matches(env_id, list(registered), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ";"
        raise EnvError(
            f"unknown gym id {env_id!r}{hint} gym:<id> builds ids registered with the old gym "
            "package (gymnasium ids are written without the gym: prefix)"
        )
    kwargs = {"disable_env_checker": True} if _gym_version(gym) >= (0, 24) else {}
    try:
        gym_env = gym.make(env_id, **kwargs)
    except gym.error.Error as e:
        raise EnvError(f"gym could not build {env_id!r}: {e}") from None
    return wrap_old_gym_env(gym_env)
