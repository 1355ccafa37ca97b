"""A non-finite update is skipped, never applied; a run of them stops training, and no checkpoint holds NaN."""

from __future__ import annotations

import copy
import os
import threading
from pathlib import Path

import torch

from benchlib.train_batches import build_agent, preset_config, training_batch
from seed_rl.envs import EnvSpec
from seed_rl.learner import checkpoint, checkpoint_loading
from train_helpers import read_metrics, run_train

VECTOR = EnvSpec(observation_shape=(4,), observation_dtype="float32", num_actions=2)
CPU = torch.device("cpu")


def _agent(name: str, **overrides):
    return build_agent(name, preset_config(name, "CartPole-v1", VECTOR, **overrides), VECTOR, CPU)


def _poisoned(agent) -> dict:
    batch = training_batch(agent, VECTOR)
    batch["observation"][2, 0, 0] = float("nan")  # one value in one step, as a buggy environment sends it
    return batch


def _assert_unchanged(before: dict, after: dict) -> None:
    assert checkpoint.nonfinite_tensors(after) == []
    flat_before, flat_after = checkpoint.detached_copy(before), checkpoint.detached_copy(after)
    torch.testing.assert_close(flat_after, flat_before, rtol=0, atol=0)


def test_impala_skips_a_nonfinite_update_and_applies_the_next_one():
    agent = _agent("impala")  # the vector preset: PopArt on, so its statistics must stay as well
    before = copy.deepcopy(agent.state_dict())
    result = agent.train_step(_poisoned(agent), threading.Lock())
    assert result.skipped
    _assert_unchanged(before, agent.state_dict())
    assert not agent.train_step(training_batch(agent, VECTOR), threading.Lock()).skipped
    moved = [not torch.equal(a, b) for a, b in zip(before["model"].values(), agent.state_dict()["model"].values())]
    assert any(moved)


def test_r2d2_skips_a_nonfinite_update_without_priorities_or_a_target_step():
    agent = _agent("r2d2", batch_size=2, unroll_length=4, burn_in=2, sequence_period=2, target_update_period=1)
    before = copy.deepcopy(agent.state_dict())
    result = agent.train_step(_poisoned(agent), threading.Lock())
    assert result.skipped and result.priorities is None
    _assert_unchanged(before, agent.state_dict())
    assert agent.train_steps == 0


def test_nonfinite_tensors_names_them():
    state = {"model": {"w": torch.tensor([1.0, float("nan")]), "steps": torch.tensor([3])},
             "optimizer": {"state": {0: {"v": torch.tensor([float("inf")])}}}, "lr": 0.1}
    assert checkpoint.nonfinite_tensors(state) == ["model.w", "optimizer.state.0.v"]
    assert checkpoint.nonfinite_tensors({"model": {"w": torch.ones(2)}}) == []


def test_a_run_of_nonfinite_updates_stops_training_with_one_line_and_no_bad_checkpoint(tmp_path, monkeypatch):
    tests = Path(__file__).parent  # scaled_envs registers the huge-reward CartPole
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tests), os.environ.get("PYTHONPATH", "")]))
    result = run_train(tmp_path, "--env=scaled_envs:CartPoleRewardX1e30-v1", "--num_actors=1", "--envs_per_actor=4",
                       "--total_environment_frames=200000", "--max_skipped_updates=3",
                       "--max_abs_reward=1e31", timeout=240)  # let the rewards through, so the guard must act
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "3 consecutive updates had a non-finite loss" in errors[0], result.stderr[-2000:]
    assert "non-finite or huge rewards" in errors[0]
    for path in checkpoint.list_checkpoints(tmp_path):
        assert checkpoint.nonfinite_tensors(checkpoint_loading.load_checkpoint(path)["agent"]) == []
    assert all(m["train_steps"] == 0 for m in read_metrics(tmp_path))
