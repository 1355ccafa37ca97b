"""The train command's plan (seed_rl.learner.plan): resolved from flags without binding a port or taking a lock."""

from __future__ import annotations

import socket

import pytest
import torch
from absl import flags

from seed_rl.config import presets, roles
from seed_rl.core.learner_ranks import SINGLE, LearnerRanks
from seed_rl.learner.plan import LearnerBuildError, plan_run
from seed_rl.learner.train_flags import define_train_flags

CPU = torch.device("cpu")


@pytest.fixture
def train_flags():
    """``train_flags(*argv)``: the train command's flags, on their own FlagValues, parsed from ``argv``."""

    def parse(*argv: str) -> flags.FlagValues:
        values = flags.FlagValues()
        define_train_flags(values)
        values(["train", *argv])
        return values

    return parse


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_plan_resolves_the_presets_into_its_configs_and_touches_neither_port_nor_logdir(train_flags, tmp_path):
    port = _free_port()
    logdir = tmp_path / "run"
    fv = train_flags("--env=CartPole-v1", "--agent=r2d2", "--role=learner", f"--learner_address=127.0.0.1:{port}",
                     f"--logdir={logdir}", "--num_actors=3", "--learning_rate=0.002")
    plan = plan_run(fv, SINGLE, CPU, serve_shm=False)

    # Every preset value the command did not give is in the config; a given flag wins.
    preset_values = {name: s.value for name, s in presets.preset("vector", "r2d2").resolve("cpu").items()}
    assert preset_values, "the vector R2D2 preset is expected to set something"
    for name, value in preset_values.items():
        if name != "learning_rate":
            assert getattr(plan.agent_config, name) == value, name
    assert plan.agent_config.learning_rate == 0.002
    assert plan.spec.num_actions == 2 and plan.run_shape.total_envs == 3 * fv.envs_per_actor
    assert plan.own_actors == (0, 1, 2) and plan.local_actors == ()  # --role=learner: the actors come from elsewhere
    assert plan.serving.address == f"127.0.0.1:{port}" and plan.logdir == str(logdir)

    # Nothing was started: the port is still free and the logdir was not created.
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
    assert not logdir.exists()


def test_environment_presets_reach_the_actors_without_being_written_into_the_flags(train_flags, tmp_path):
    pytest.importorskip("ale_py")
    fv = train_flags("--env=atari:Pong", "--agent=r2d2", f"--logdir={tmp_path}", "--envs_per_actor=4")
    plan = plan_run(fv, SINGLE, CPU, serve_shm=False)
    assert plan.env_config.full_action_space is True and plan.spec.num_actions == 18
    assert fv["full_action_space"].value is None
    actor = roles.actor_settings(roles.parse_shared_flags(plan.actor_argv), learner_address="127.0.0.1:1",
                                 actor_id=1, transport="grpc")
    assert actor.env_config == plan.env_config and actor.envs_per_actor == 4
    assert plan.local_actors == (0, 1) and plan.eval_envs.num_eval_envs == 2  # the Atari preset, capped at a quarter


def test_each_rank_plans_its_own_actors_and_port(train_flags, tmp_path):
    fv = train_flags("--env=CartPole-v1", "--role=learner", "--learner_address=0.0.0.0:9000", "--insecure",
                     "--num_actors=5", f"--logdir={tmp_path}", "--batch_size=4")
    plan = plan_run(fv, LearnerRanks(rank=1, world_size=2, local_rank=1, local_world_size=2), CPU, serve_shm=False)
    assert plan.own_actors == (1, 3) and plan.serving.address == "0.0.0.0:9001"
    assert plan.inference_batch_size == 2 * fv.envs_per_actor


@pytest.mark.parametrize("argv, ranks, error", [
    (("--role=learner", "--learner_address=127.0.0.1:0"), SINGLE, "picks a random port"),
    (("--learner_address=0.0.0.0:9000",), SINGLE, "--insecure"),
    (("--num_eval_envs=16", "--envs_per_actor=8"), SINGLE, "--num_eval_envs=16 must be at least 0 and leave training"),
    (("--num_eval_envs=8", "--envs_per_actor=8"), LearnerRanks(rank=0, world_size=2),
     "leaves learner rank 1 no training environment"),
    (("--burn_in=3",), SINGLE, "--burn_in is a flag of --agent=r2d2"),
    (("--num_actors=1",), LearnerRanks(rank=0, world_size=2), "leaves some of the 2 learner ranks without actors"),
    (("--env=CartPol-v1",), SINGLE, "did you mean 'CartPole-v1'"),
])
def test_a_plan_refuses_a_bad_command_in_one_user_error(train_flags, tmp_path, argv, ranks, error):
    fv = train_flags("--env=CartPole-v1", "--agent=impala", f"--logdir={tmp_path}", *argv)
    with pytest.raises(LearnerBuildError, match=error):
        plan_run(fv, ranks, CPU, serve_shm=False)
    assert not any(tmp_path.iterdir())
