"""Google Research Football through seed_rl's gymnasium wrapper, and IMPALA training on it.

Tests that need the real engine skip when gfootball is not importable (build it
with tools/setup_football.sh), unless SEED_RL_REQUIRE_FOOTBALL=1, where they
fail instead (CI sets it after installing gfootball).
"""

from __future__ import annotations

import importlib
import os
import sys

import numpy as np
import pytest
import torch

from seed_rl.envs import EnvConfig, EnvError, env_spec, frame_stack, make_env
from seed_rl.learner import checkpoint_loading
from seed_rl.networks.torsos import GFootballTorso, make_torso
from train_helpers import read_metrics, run_train

try:
    importlib.import_module("gfootball.env")
    _MISSING = None
except ImportError as e:  # pragma: no cover - depends on the machine
    _MISSING = f"gfootball is not installed ({e}); run tools/setup_football.sh"


@pytest.fixture
def gfootball():
    """Fails (SEED_RL_REQUIRE_FOOTBALL=1) or skips the test when gfootball is not importable."""
    if _MISSING:
        if os.environ.get("SEED_RL_REQUIRE_FOOTBALL") == "1":
            pytest.fail(f"SEED_RL_REQUIRE_FOOTBALL=1 but {_MISSING}")
        pytest.skip(_MISSING)


SCENARIO = "football:academy_empty_goal_close"
SHOT, RIGHT = 12, 5  # gfootball's default action set: 5 = right, 12 = shot


def _play(env, policy, seed: int = 0, max_steps: int = 1000) -> tuple[float, int, bool]:
    """One episode; returns (return, steps, terminated)."""
    observation, _ = env.reset(seed=seed)
    total, steps = 0.0, 0
    while steps < max_steps:
        observation, reward, terminated, truncated, _ = env.step(policy(steps))
        assert env.observation_space.contains(observation)
        total += reward
        steps += 1
        if terminated or truncated:
            return total, steps, terminated
    return total, steps, False


@pytest.mark.parametrize(
    "representation, shape, dtype",
    [
        ("simple115v2", (115,), "float32"),
        ("extracted", (4, 72, 96), "uint8"),
        ("pixels_gray", (1, 72, 96), "uint8"),
        ("pixels", (3, 72, 96), "uint8"),
    ],
)
def test_each_representation_steps_with_single_channel_first_frames(gfootball, representation, shape, dtype):
    """Actors send one observation per step; the learner stacks ``frame_stack`` of them (test_frame_stacking.py)."""
    config = EnvConfig(football_representation=representation, frame_stack=2)
    env = make_env(SCENARIO, seed=0, config=config)
    try:
        spec = env_spec(env, frame_stack(SCENARIO, config))
        assert spec.observation_shape == shape and spec.frame_stack == 2
        assert spec.model_observation_shape == (2 * shape[0], *shape[1:])
        assert spec.observation_dtype == dtype
        assert spec.num_actions == 19
        first, info = env.reset(seed=1)
        assert first.shape == shape and first.dtype == np.dtype(dtype)
        observation = first
        for _ in range(5):
            observation, reward, terminated, truncated, _ = env.step(RIGHT)
            assert env.observation_space.contains(observation)
            assert isinstance(reward, float) and not truncated
        assert not np.array_equal(observation, first), "5 steps of running right changed nothing"
        if representation == "extracted":
            assert set(np.unique(observation)) <= {0, 255}
            assert (observation > 0).any(axis=(1, 2)).sum() >= 3  # players, ball, active player
    finally:
        env.close()


def test_running_at_the_goal_and_shooting_scores_and_ends_the_episode(gfootball):
    env = make_env(SCENARIO, seed=0, config=EnvConfig(football_representation="simple115v2", football_rewards="scoring"))
    try:
        scored, steps, terminated = _play(env, lambda t: RIGHT if t < 10 else SHOT)
        idle, idle_steps, idle_terminated = _play(env, lambda t: 0)
    finally:
        env.close()
    assert terminated and scored == 1.0, (scored, steps)
    # Standing still never scores; the scenario ends the game itself (400 steps), terminated, never truncated.
    assert idle_terminated and idle == 0.0 and idle_steps > steps


def test_checkpoint_reward_adds_the_uncollected_checkpoints_on_scoring(gfootball):
    env = make_env(
        SCENARIO, seed=0, config=EnvConfig(football_representation="simple115v2", football_rewards="scoring,checkpoints")
    )
    try:
        total, _, terminated = _play(env, lambda t: RIGHT if t < 10 else SHOT)
    finally:
        env.close()
    # scoring gives 1; the checkpoint reward adds up to 10 x 0.1 for the zones nearer the goal.
    assert terminated and 1.0 < total <= 2.0 + 1e-6, total


def test_same_seed_gives_the_same_episode(gfootball):
    config = EnvConfig(football_representation="simple115v2", frame_stack=1)
    runs = []
    for _ in range(2):
        env = make_env(SCENARIO, seed=0, config=config)
        observation, _ = env.reset(seed=5)
        trajectory = [observation]
        for t in range(20):
            observation, _, terminated, _, _ = env.step(RIGHT if t < 8 else SHOT)
            trajectory.append(observation)
            if terminated:
                break
        env.close()
        runs.append(np.stack(trajectory))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_bad_football_names_and_settings_are_one_line_errors(gfootball):
    with pytest.raises(EnvError, match="did you mean 'academy_empty_goal_close'"):
        make_env("football:academy_empty_goal_clse", seed=0)
    with pytest.raises(EnvError, match="football_representation.*simple115v2"):
        make_env(SCENARIO, seed=0, config=EnvConfig(football_representation="smm"))
    with pytest.raises(EnvError, match="football_rewards.*scoring,checkpoints"):
        make_env(SCENARIO, seed=0, config=EnvConfig(football_rewards="checkpoints"))


def test_default_scenario_and_11_vs_11(gfootball):
    config = EnvConfig(football_representation="simple115v2", frame_stack=1)
    for name in ("football:", "football:11_vs_11_easy_stochastic"):
        env = make_env(name, seed=0, config=config)
        observation, _ = env.reset(seed=0)
        assert observation.shape == (115,)
        env.step(0)
        env.close()


def test_missing_gfootball_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gfootball.env", None)  # makes the import fail
    monkeypatch.setitem(sys.modules, "gfootball.scenarios", None)
    from seed_rl.envs import football

    football.scenario_names.cache_clear()
    try:
        with pytest.raises(EnvError, match=r"not installed.*tools/setup_football\.sh"):
            make_env(SCENARIO, seed=0)
    finally:
        football.scenario_names.cache_clear()


def test_auto_torso_uses_seeds_football_network_for_the_mini_map():
    torso = make_torso("auto", (16, 72, 96), "uint8")
    assert isinstance(torso, GFootballTorso)
    # SEED's GFootball network: four (conv, pool, 2 residual blocks) sections of 16, 32, 32, 32 channels.
    convs = [m.out_channels for m in torso.sections if isinstance(m, torch.nn.Conv2d)]
    assert convs == [16, 32, 32, 32]
    features = torso(torch.randint(0, 2, (3, 16, 72, 96), dtype=torch.uint8) * 255)
    assert features.shape == (3, 256)
    # 72x96 halves four times to 5x6.
    assert torso.fc.in_features == 32 * 5 * 6
    assert not isinstance(make_torso("auto", (4, 84, 84), "uint8"), GFootballTorso)
    assert not isinstance(make_torso("auto", (460,), "float32"), GFootballTorso)


@pytest.mark.parametrize("representation", ["simple115v2", "extracted"])
def test_impala_trains_on_football_and_writes_checkpoints(gfootball, tmp_path, representation):
    result = run_train(
        tmp_path,
        f"--env={SCENARIO}",
        f"--football_representation={representation}",
        "--num_actors=1",
        "--envs_per_actor=2",
        "--unroll_length=8",
        "--batch_size=2",
        "--total_environment_frames=160",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read_metrics(tmp_path)
    assert metrics and metrics[-1]["frames"] >= 160
    assert "loss/total" in metrics[-1]
    checkpoints = list((tmp_path / "checkpoints").glob("ckpt-*.pt"))
    assert checkpoints
    state = checkpoint_loading.load_checkpoint(checkpoints[-1])
    assert state["run_config"]["env_config"]["football_representation"] == representation
    model = state["agent"]["model"]
    first_layer = next(v for k, v in model.items() if k.startswith("torso.") and k.endswith("weight"))
    if representation == "extracted":
        assert first_layer.shape[:2] == (16, 16)  # conv: 16 channels over 4 stacked 4-plane mini-maps
    else:
        assert first_layer.shape == (64, 4 * 115)  # MLP over 4 stacked vectors
