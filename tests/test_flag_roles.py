"""seed_rl.config.roles: the flag groups of the learner and the actors, declared once and used by every launcher."""

from __future__ import annotations

import dataclasses

import pytest
from absl import flags

from seed_rl.config import roles
from seed_rl.launch import ray as ray_launcher
from seed_rl.launch import vertex_task


def test_a_flag_added_to_the_shared_group_reaches_ray_and_vertex_actors(monkeypatch):
    monkeypatch.setattr(roles, "SHARED_FLAGS", roles.SHARED_FLAGS | {"new_env_setting"})
    train_flags = ["--agent=impala", "--new_env_setting=7", "--env=atari:Pong"]
    for split in (ray_launcher.route_flags, vertex_task.split_train_flags):
        learner, actor = split(train_flags)
        assert learner == train_flags
        assert actor == ["--new_env_setting=7", "--env=atari:Pong"]


def test_a_flag_added_to_the_shared_group_reaches_local_actors(monkeypatch):
    """A --role=local run hands its actors roles.shared_flags_argv(); they parse it as seed_rl.actor would."""
    define = roles.define_shared_flags

    def define_with_new_flag(flag_values=flags.FLAGS):
        define(flag_values)
        flags.DEFINE_integer("new_env_setting", 1, "a new shared flag", flag_values=flag_values)

    monkeypatch.setattr(roles, "SHARED_FLAGS", roles.SHARED_FLAGS | {"new_env_setting"})
    monkeypatch.setattr(roles, "define_shared_flags", define_with_new_flag)
    learner_flags = flags.FlagValues()
    roles.define_shared_flags(learner_flags)
    learner_flags(["train", "--new_env_setting=7", "--env=atari:Pong", "--frame_stack=2", "--double_buffer"])

    argv = roles.shared_flags_argv(learner_flags)
    assert "--new_env_setting=7" in argv
    actor_flags = roles.parse_shared_flags(argv)
    assert actor_flags["new_env_setting"].value == 7
    settings = roles.actor_settings(actor_flags, learner_address="127.0.0.1:1", actor_id=2, transport="shm")
    assert (settings.env_name, settings.env_config.frame_stack, settings.double_buffer) == ("atari:Pong", 2, True)
    assert settings.env_config == roles.actor_settings(
        learner_flags, learner_address="127.0.0.1:1", actor_id=2, transport="shm").env_config


def test_an_actor_only_flag_skips_the_learner():
    learner, actor = roles.split_train_flags(["--tls_ca_file=ca.pem", "--nouse_lstm"])
    assert (learner, actor) == (["--nouse_lstm"], ["--tls_ca_file=ca.pem"])


@pytest.mark.parametrize("token", ["--actor_id=3", "--role=local", "--learner_address=h:1"])
def test_launcher_set_flags_are_refused_with_what_to_do(token):
    with pytest.raises(roles.RoleError, match="is set by the launcher: the launcher"):
        roles.split_train_flags([token])


def test_the_old_learner_address_flag_is_refused_with_its_new_name():
    with pytest.raises(roles.RoleError, match=r"^--server_address is now --learner_address and is set by the launcher"):
        roles.split_train_flags(["--server_address=0.0.0.0:8686"])
    with pytest.raises(roles.RoleError, match=r"^--server_address is now --learner_address$"):
        roles.refuse_renamed_flags(["--env=CartPole-v1", "--server_address=0.0.0.0:8686"])
    roles.refuse_renamed_flags(["--learner_address=0.0.0.0:8686"])


def test_the_groups_are_what_train_and_actor_define():
    learner_flags, actor_flags = flags.FlagValues(), flags.FlagValues()
    roles.define_shared_flags(learner_flags)
    roles.define_shared_flags(actor_flags)
    roles.define_actor_flags(actor_flags)
    assert set(learner_flags) == roles.SHARED_FLAGS
    assert set(actor_flags) == roles.SHARED_FLAGS | roles.ACTOR_ONLY_FLAGS | {"learner_address", "actor_id"}
    assert {"learner_address", "actor_id"} <= set(roles.LAUNCHER_SET_FLAGS)


@pytest.mark.parametrize("module, call", [
    ("seed_rl/learner/train_flags.py", "roles.define_shared_flags(flag_values)"),  # seed_rl.train's flags
    ("seed_rl/actor.py", "roles.define_shared_flags()"),
])
def test_entry_points_take_the_shared_flags_from_roles(module, call):
    import re
    from pathlib import Path

    source = (Path(__file__).resolve().parent.parent / module).read_text()
    assert call in source
    defined_here = set(re.findall(r"DEFINE_\w+\(\s*\"(\w+)\"", source))
    assert not defined_here & roles.SHARED_FLAGS, f"{module} defines shared flags itself: {defined_here & roles.SHARED_FLAGS}"


def _train_flags(*argv: str) -> flags.FlagValues:
    values = flags.FlagValues()
    roles.define_shared_flags(values)
    flags.DEFINE_string("agent", "impala", "the agent", flag_values=values)
    values(["train", *argv])
    return values


def test_r2d2_on_atari_plays_all_18_actions_and_its_local_actors_are_told():
    from seed_rl.learner.plan import _env_config

    values = _train_flags("--env=atari:Pong", "--agent=r2d2")
    env_config, preset_values = _env_config(values)
    assert env_config.full_action_space is True  # R2D2's preset (the paper, SEED RL)
    assert values["full_action_space"].value is None  # resolved into the config, not written back into the flags
    argv = roles.shared_flags_argv(values, preset_values)
    assert "--full_action_space" in argv and "--full_action_space" not in roles.shared_flags_argv(values)
    assert roles.actor_settings(roles.parse_shared_flags(argv), learner_address="127.0.0.1:1", actor_id=0,
                                transport="grpc").env_config.full_action_space is True
    # A given flag wins over the preset; IMPALA keeps each game's minimal set.
    given = _train_flags("--env=atari:Pong", "--agent=r2d2", "--nofull_action_space")
    assert _env_config(given) == (dataclasses.replace(env_config, full_action_space=False), {})
    assert _env_config(_train_flags("--env=atari:Pong", "--agent=impala"))[0].full_action_space is False
    assert _env_config(_train_flags("--env=CartPole-v1", "--agent=r2d2"))[0].full_action_space is False


def test_an_actor_given_actions_its_game_lacks_stops_with_the_flag_to_add():
    pytest.importorskip("ale_py")
    import numpy as np

    from seed_rl.acting.env_group import EnvGroup
    from seed_rl.acting.settings import ActorSettings
    from seed_rl.envs import EnvConfig
    from seed_rl.transport.errors import Refused

    group = EnvGroup(ActorSettings("unused", "atari:Pong", EnvConfig(), envs_per_actor=2), range(2))
    group.reset_all()
    group.step(np.array([0, 5]))
    with pytest.raises(Refused, match="learner sent action 17 but 6 actions exist here.*--full_action_space"):
        group.step(np.array([0, 17]))
    group.close()
