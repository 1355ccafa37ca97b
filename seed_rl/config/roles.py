"""Process roles and their flags, declared once.

A training job has a learner and actors. Their flags fall into four groups:

- **shared**: the learner and every actor take them and must agree on them
  (the environment and its settings, the seed, environments per actor, the
  token file);
- **actor-only**: how an actor reaches the learner over TLS;
- **launcher-set**: what a launcher decides for each process (roles, the
  learner's address, actor ids); a user who gives one to a launcher is told
  what to do instead;
- **learner-only**: everything else ``seed_rl.train`` defines (agents,
  optimizers, logdir, ...).

``seed_rl.train`` and ``seed_rl.actor`` define their flags from here, and every
launcher (local processes, Ray, Vertex AI) splits a train command line with
:func:`split_train_flags`. Adding a flag to a group here is the only edit
needed for it to reach every launcher's actors.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from collections.abc import Mapping, Sequence

from absl import flags

from seed_rl import exits
from seed_rl.config.flags import dataclass_from_flags, define_dataclass_flags
from seed_rl.acting.settings import ActorSettings
from seed_rl.core.learner_rank_rule import rank_of_actor
from seed_rl.envs import EnvConfig


class RoleError(ValueError):
    """A flag given to a launcher that the launcher sets itself, or a token that is not a flag."""


def dataclass_flag_names(cls: type) -> frozenset[str]:
    """The flags ``config.flags.define_dataclass_flags`` makes from ``cls`` (nested dataclasses flat)."""
    hints = typing.get_type_hints(cls)
    names: set[str] = set()
    for field in dataclasses.fields(cls):
        nested = hints[field.name]
        names |= dataclass_flag_names(nested) if dataclasses.is_dataclass(nested) else {field.name}
    return frozenset(names)


SHARED_FLAGS = frozenset({"env", "seed", "envs_per_actor", "auth_token_file", "transport", "double_buffer"}) | dataclass_flag_names(EnvConfig)
# The shared flags that are not environment settings: what --help lists beside a program's own flags.
MAIN_SHARED_FLAGS = SHARED_FLAGS - dataclass_flag_names(EnvConfig)
ACTOR_ONLY_FLAGS = frozenset({"tls_ca_file", "tls_server_name"})
# What every launcher sets itself, and what to do instead of giving it.
LAUNCHER_SET_FLAGS: Mapping[str, str] = {
    "role": "the launcher runs the learner with --role=learner",
    "learner_address": "the launcher chooses the learner's address (see its own options)",
    "actor_id": "the launcher numbers the actors",
}
# SEED RL's flag names -> ours, for users who come from it; such a name is refused in one line naming ours.
RENAMED_FLAGS: Mapping[str, str] = {"server_address": "learner_address"}


def define_shared_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """The flags of both roles: ``--env``, ``--seed``, ``--envs_per_actor``, ``--auth_token_file``, ``--transport``
    and EnvConfig's."""
    flags.DEFINE_string(
        "env", "atari:Pong",
        "gymnasium id (e.g. CartPole-v1), atari:<Game>, minatar:<Game>, football:<scenario>, dmlab:<level> "
        "or gym:<old gym id>",
        flag_values=flag_values,
    )
    flags.DEFINE_integer("seed", 0, "random seed (actors derive their environments' seeds from it)",
                         flag_values=flag_values)
    flags.DEFINE_integer("envs_per_actor", 8, "environments stepped by each actor", flag_values=flag_values)
    flags.DEFINE_string(
        "auth_token_file", None,
        "file holding the shared token (the learner requires it, actors send it); default $SEED_RL_AUTH_TOKEN",
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        "transport", "auto", ["auto", "grpc", "shm"],
        "how actors on the learner's machine reach it: shm (shared memory and a Unix socket; Linux), grpc "
        "(loopback), or auto: shm for the actors a --role=local run starts where the platform has it, gRPC for "
        "actors started on their own. Actors on other machines always use gRPC",
        flag_values=flag_values,
    )
    flags.DEFINE_boolean(
        "double_buffer", False,
        "each actor steps its environments as two halves on two streams: one half steps while the other "
        "waits for its actions (Sample Factory's double-buffered sampling); the learner's default inference "
        "batch becomes half the environments",
        flag_values=flag_values,
    )
    define_dataclass_flags(EnvConfig, flag_values)


def define_actor_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """The actor's own flags: where the learner is and how to trust it."""
    flags.DEFINE_string(
        "learner_address", "127.0.0.1:8686",
        "host:port of the learner to connect to; with several learner ranks their comma-separated list in rank "
        "order, of which actor i connects to entry i % N",
        flag_values=flag_values,
    )
    flags.DEFINE_integer("actor_id", 0, "index of this actor (seeds and logging)", flag_values=flag_values)
    flags.DEFINE_string("tls_ca_file", None,
                        "PEM CA (or self-signed certificate) to trust; when set, connect over TLS",
                        flag_values=flag_values)
    flags.DEFINE_string("tls_server_name", None,
                        "name to check in the learner's certificate; default the address's host",
                        flag_values=flag_values)


def rank_address(addresses: str, actor_id: int) -> str:
    """The learner rank that serves actor ``actor_id``: entry ``actor_id % N`` of a comma-separated list."""
    entries = [entry.strip() for entry in addresses.split(",") if entry.strip()]
    if not entries:
        raise ValueError(f"--learner_address={addresses!r} names no learner; give host:port")
    return entries[rank_of_actor(actor_id, len(entries))]


def default_inference_batch(total_envs: int, double_buffer: bool) -> int:
    """Every environment, or with double buffering the half of them that waits for actions at any time."""
    return max(1, total_envs // 2) if double_buffer else total_envs


def shared_flags_argv(flag_values: flags.FlagValues = flags.FLAGS, values: Mapping[str, typing.Any] = {}) -> list[str]:
    """This process's shared flags as a command line: what every actor of the run must be given.

    ``values`` replace those flags' own (e.g. a preset resolved for the run); ``flag_values`` is not changed.
    A flag added to :data:`SHARED_FLAGS` is carried with no other edit; flags without a value
    (the EnvConfig fields that mean "the dataclass default") are left out.
    """
    argv = []
    for name in sorted(SHARED_FLAGS):
        flag = flag_values[name]
        if name in values:
            flag = copy.deepcopy(flag)
            flag.value = values[name]
        if token := flag.serialize():
            argv.append(token)
    return argv


def parse_shared_flags(argv: Sequence[str]) -> flags.FlagValues:
    """The shared flags of ``argv`` (from :func:`shared_flags_argv`) parsed on their own, as an actor sees them."""
    flag_values = flags.FlagValues()
    define_shared_flags(flag_values)
    flag_values(["actor", *argv])
    return flag_values


def actor_settings(
    flag_values: flags.FlagValues,
    *,
    learner_address: str,
    actor_id: int,
    transport: str,
    tls_ca_file: str | None = None,
    tls_server_name: str | None = None,
    auth_token: str | None = None,
) -> ActorSettings:
    """An actor's settings from the shared flags plus what its launcher decides: the one way both
    ``seed_rl.actor`` and the actors of a ``--role=local`` run are configured."""
    return ActorSettings(
        learner_address=rank_address(learner_address, actor_id),
        env_name=flag_values["env"].value,
        env_config=dataclass_from_flags(EnvConfig, flag_values),
        envs_per_actor=flag_values["envs_per_actor"].value,
        actor_id=actor_id,
        seed=flag_values["seed"].value,
        tls_ca_file=tls_ca_file,
        tls_server_name=tls_server_name,
        auth_token=auth_token,
        transport=transport,
        double_buffer=flag_values["double_buffer"].value,
    )


def flag_name(token: str) -> str:
    """``--name=value`` or ``--name`` -> ``name``; anything else is refused."""
    if not token.startswith("--") or token == "--":
        raise RoleError(f"unexpected argument {token!r}; flags are written --name=value")
    return token[2:].split("=", 1)[0]


def refuse_renamed_flags(argv: Sequence[str]) -> None:
    """Raises :class:`RoleError` naming the new flag when ``argv`` uses a renamed one."""
    for token in argv:
        if token.startswith("--"):
            name = token[2:].split("=", 1)[0]
            if name in RENAMED_FLAGS:
                raise RoleError(f"--{name} is now --{RENAMED_FLAGS[name]}")


def parse_flags(argv: list[str]) -> list[str]:
    """``exits.parse_flags`` for ``seed_rl.train`` and ``seed_rl.actor``: a renamed flag is a user error too."""
    try:
        refuse_renamed_flags(argv[1:])
    except RoleError as e:
        exits.fail(e)
    return exits.parse_flags(argv)


def _base_name(token: str, known: frozenset[str]) -> str:
    """The flag a token sets: ``--noX`` (a boolean's negation) sets ``X`` when ``X`` is known."""
    name = flag_name(token)
    if "=" not in token and name.startswith("no") and name[2:] in known:
        return name[2:]
    return name


def split_train_flags(
    train_flags: Sequence[str], launcher_set: Mapping[str, str] = LAUNCHER_SET_FLAGS
) -> tuple[list[str], list[str]]:
    """Splits a train command line into (learner flags, actor flags).

    Shared flags go to both, actor-only flags to actors only, the rest to the
    learner. A flag in ``launcher_set`` (every launcher's own choices, plus any
    a launcher adds) raises :class:`RoleError` with what to do instead, as does
    a renamed flag.
    """
    known = SHARED_FLAGS | ACTOR_ONLY_FLAGS | frozenset(launcher_set)
    learner, actor = [], []
    for token in train_flags:
        name = _base_name(token, known)
        if name in RENAMED_FLAGS:
            new = RENAMED_FLAGS[name]
            instead = f" and is set by the launcher: {launcher_set[new]}" if new in launcher_set else ""
            raise RoleError(f"--{name} is now --{new}{instead}")
        if name in launcher_set:
            raise RoleError(f"--{name} is set by the launcher: {launcher_set[name]}")
        if name in ACTOR_ONLY_FLAGS:
            actor.append(token)
            continue
        learner.append(token)
        if name in SHARED_FLAGS:
            actor.append(token)
    return learner, actor
