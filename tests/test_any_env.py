"""Any Box/Discrete gymnasium environment trains without code changes, whatever its shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seed_rl.envs import EnvSpec, env_spec, make_env
from any_env_helpers import SMALL_IMPALA, SMALL_R2D2, check_run, train_with_tests_on_path

# ----------------------------------------------------------------------------
# Odd shapes and action counts, in process: every registered odd env builds,
# is described correctly, and both agents act on its observations.


@pytest.mark.parametrize("env_id", ["OddImage-v0", "OddGrayImage-v0", "OddVector1-v0", "OddVector17-v0",
                                    "OddMatrix-v0", "OddBytes-v0", "OddInts-v0"])
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
        R2D2Agent(spec, R2D2Config(lstm_size=16, head_size=16), device, total_envs=3),
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
    result = train_with_tests_on_path(tmp_path, f"--env=odd_envs:{env_id}", *SMALL_IMPALA, "--total_environment_frames=200")
    check_run(result, tmp_path, 200)


@pytest.mark.parametrize("env_id", ["OddImage-v0", "OddVector17-v0"])
def test_r2d2_trains_on_odd_spaces_without_code_changes(tmp_path, env_id):
    result = train_with_tests_on_path(tmp_path, f"--env=odd_envs:{env_id}", *SMALL_R2D2, "--total_environment_frames=200")
    check_run(result, tmp_path, 200)
