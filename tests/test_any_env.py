"""Any Box/Discrete environment trains without code changes; old-gym-API envs through shimmy."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from seed_rl.envs import EnvError, EnvSpec, env_spec, make_env
from train_helpers import ROOT, read_metrics, train_command

TESTS = ROOT / "tests"


def _train(logdir, *flags, timeout=240) -> subprocess.CompletedProcess:
    """``python -m seed_rl.train`` with tests/ on PYTHONPATH, so ``odd_envs:<id>`` imports."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    return subprocess.run(
        train_command(logdir, *flags), cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env
    )


def _check_run(result, logdir, frames: int) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    metrics = read_metrics(logdir)
    last = metrics[-1]
    assert last["frames"] >= frames
    assert last["train_steps"] > 0
    assert last["episodes"] >= 2
    assert math.isfinite(last["loss/total"])
    assert list((logdir / "checkpoints").glob("ckpt-*.pt"))
    return last


SMALL_IMPALA = ("--agent=impala", "--num_actors=1", "--envs_per_actor=2", "--unroll_length=5", "--batch_size=2")
SMALL_R2D2 = (
    "--agent=r2d2", "--num_actors=1", "--envs_per_actor=2", "--lstm_size=16", "--head_size=16",
    "--unroll_length=4", "--burn_in=2", "--sequence_period=2", "--batch_size=2", "--min_replay_size=2",
    "--replay_capacity=50",
)


# ----------------------------------------------------------------------------
# Odd shapes and action counts, in process: every registered odd env builds,
# is described correctly, and both agents act on its observations.


@pytest.mark.parametrize("env_id", ["OddImage-v0", "OddGrayImage-v0", "OddVector1-v0", "OddVector17-v0",
                                    "OddMatrix-v0", "OddBytes-v0"])
def test_odd_env_spaces_are_described_and_both_agents_act(env_id):
    import odd_envs
    from seed_rl.agents.impala.agent import ImpalaAgent
    from seed_rl.agents.impala.config import ImpalaConfig
    from seed_rl.agents.r2d2.agent import R2D2Agent
    from seed_rl.agents.r2d2.config import R2D2Config
    from seed_rl.core.agent import ActInputs

    shape, dtype, actions = odd_envs.ODD_ENVS[env_id]
    env = make_env(f"odd_envs:{env_id}", seed=0)
    spec = env_spec(env)
    expected_dtype = "uint8" if dtype == np.uint8 else "float32"
    assert spec == EnvSpec(observation_shape=shape, observation_dtype=expected_dtype, num_actions=actions)
    observations = np.stack([env.reset(seed=i)[0] for i in range(3)])
    assert observations.dtype == np.dtype(expected_dtype)
    inputs = ActInputs(
        observation=torch.from_numpy(observations),
        reward=torch.zeros(3),
        done=torch.ones(3, dtype=torch.bool),
        env_index=torch.arange(3),
    )
    device = torch.device("cpu")
    for agent in (
        ImpalaAgent(spec, ImpalaConfig(), device, total_train_steps=10),
        R2D2Agent(spec, R2D2Config(lstm_size=16, head_size=16), device, num_envs=3),
    ):
        result = agent.act(inputs, agent.initial_core_state(3))
        assert result.action.shape == (3,)
        assert int(result.action.min()) >= 0 and int(result.action.max()) < actions
    env.close()


# ----------------------------------------------------------------------------
# Odd shapes and action counts, end to end through python -m seed_rl.train.


@pytest.mark.parametrize(
    "env_id",
    [
        "OddImage-v0",  # uint8 3x50x37 images (IMPALA ResNet), 11 actions
        "OddVector1-v0",  # one float, 2 actions
        "OddVector17-v0",  # 17 float64 values (sent as float32), 11 actions
        "OddMatrix-v0",  # a 4x6 float matrix (flattened by the MLP), 3 actions
    ],
)
def test_impala_trains_on_odd_spaces_without_code_changes(tmp_path, env_id):
    result = _train(tmp_path, f"--env=odd_envs:{env_id}", *SMALL_IMPALA, "--total_environment_frames=200")
    _check_run(result, tmp_path, 200)


@pytest.mark.parametrize("env_id", ["OddImage-v0", "OddVector17-v0"])
def test_r2d2_trains_on_odd_spaces_without_code_changes(tmp_path, env_id):
    result = _train(tmp_path, f"--env=odd_envs:{env_id}", *SMALL_R2D2, "--total_environment_frames=200")
    _check_run(result, tmp_path, 200)
