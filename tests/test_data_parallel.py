"""Data-parallel learner ranks (torch.distributed over gloo): the maths of one update, and whole runs.

- Two ranks, each on half of every batch, hold bit-identical weights after
  every update and match one learner's updates on the whole batch (IMPALA with
  RMSprop's summed loss, with Adam's mean loss and PopArt; R2D2 on a fixed
  sample with importance weights and target-network updates).
- R2D2's importance weights are normalised over the whole global batch.
- ``torchrun --nproc_per_node=2 -m seed_rl.train`` runs: CartPole learns with the
  defaults, and a job whose rank is killed restarts from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import torch

from seed_rl.agents.impala.agent import ImpalaAgent
from seed_rl.agents.impala.config import ImpalaConfig
from seed_rl.agents.r2d2.agent import R2D2Agent
from seed_rl.agents.r2d2.config import R2D2Config
from seed_rl.core.learner_ranks import LearnerRanks
from seed_rl.core.learner_rank_rule import actors_of_rank, rank_of_actor
from seed_rl.launch.learners import learner_addresses
from seed_rl.learner.plan import learner_address
from seed_rl.learner.loop import data_shards, mean_logs
from seed_rl.config.roles import rank_address
from rank_workers import run_ranks, run_single, shard_weights, train_updates, updates_with_rank_1_loss_infinite
from test_replay_resharding import filled, resumed
from test_train_e2e import CARTPOLE_FLAGS
from train_helpers import ROOT, read_metrics, run_train, train_command
from test_update_scaling import VECTOR, _impala_batch, _r2d2_batch

# --------------------------------------------------------------------------
# Pure pieces: addresses, shares, merged logs and checkpoints.
# --------------------------------------------------------------------------


def test_actor_i_connects_to_rank_i_mod_n():
    addresses = "10.0.0.1:8686,10.0.0.1:8687,10.0.0.2:8686"
    assert [rank_address(addresses, i) for i in range(4)] == [
        "10.0.0.1:8686", "10.0.0.1:8687", "10.0.0.2:8686", "10.0.0.1:8686"]
    assert rank_address("127.0.0.1:8686", 5) == "127.0.0.1:8686"
    with pytest.raises(ValueError, match="names no learner"):
        rank_address(" , ", 0)


def test_the_actor_the_launcher_addresses_is_the_one_the_rank_serves():
    """Actors (roles.rank_address), ranks (LearnerRanks.owns_actor) and launchers (learner_addresses) agree."""
    world_size, num_actors = 3, 7
    addresses = learner_addresses("10.0.0.1", 9000, world_size)
    for actor_id in range(num_actors):
        rank = rank_of_actor(actor_id, world_size)
        assert rank_address(addresses, actor_id) == f"10.0.0.1:{9000 + rank}"
        assert LearnerRanks(rank=rank, world_size=world_size).owns_actor(actor_id)
        assert actor_id in actors_of_rank(rank, world_size, num_actors)
        assert learner_address("learner", "10.0.0.1:9000", local_rank=rank) == rank_address(addresses, actor_id)
    assert sorted(sum((actors_of_rank(r, world_size, num_actors) for r in range(world_size)), [])) == list(
        range(num_actors))


def test_each_rank_of_a_machine_listens_on_its_own_port():
    assert learner_address("learner", "0.0.0.0:8686", local_rank=0) == "0.0.0.0:8686"
    assert learner_address("learner", "0.0.0.0:8686", local_rank=3) == "0.0.0.0:8689"
    assert learner_address("local", None, local_rank=1) == "127.0.0.1:0"  # a free port each


def test_ranks_split_batches_and_actors_evenly():
    learner_ranks = LearnerRanks(rank=1, world_size=2)
    assert learner_ranks.shard(32, "--batch_size") == 16
    assert [learner_ranks.owns_actor(i) for i in range(4)] == [False, True, False, True]
    with pytest.raises(ValueError, match="--batch_size=7 does not split evenly over 2"):
        learner_ranks.shard(7, "--batch_size")


def test_logs_are_the_mean_over_ranks():
    assert mean_logs([{"loss": 1.0, "q": 2.0}, {"loss": 3.0, "q": 2.0}]) == {"loss": 2.0, "q": 2.0}


def test_checkpoint_shards_follow_the_rank_count():
    def reshard(shards: list[dict], world_size: int) -> list[dict]:
        return [{"from": shards}] * world_size

    # Every rank's shard (or one learner's "data") goes to the training data, which deals it onto the new ranks.
    assert data_shards({"data_shards": [{"a": 0}, {"a": 1}]}, 3, reshard) == [{"from": [{"a": 0}, {"a": 1}]}] * 3
    assert data_shards({"data": {"a": 0}}, 2, reshard) == [{"from": [{"a": 0}]}] * 2
    # Real replay shards, 2 -> 1 and 1 -> 2: every sequence moves (tests/test_replay_resharding.py has the rest).
    assert [len(data.replay) for data in resumed(filled(2, 5), 1)] == [10]
    assert [len(data.replay) for data in resumed(filled(1, 5), 2)] == [3, 2]


# --------------------------------------------------------------------------
# One update on 2 ranks (half batches each) == one update on the whole batch.
# --------------------------------------------------------------------------


def _impala(config: ImpalaConfig, learner_ranks: LearnerRanks) -> ImpalaAgent:
    return ImpalaAgent(VECTOR, config, torch.device("cpu"), total_train_steps=100, ranks=learner_ranks)


def _r2d2(config: R2D2Config, learner_ranks: LearnerRanks) -> R2D2Agent:
    return R2D2Agent(VECTOR, config, torch.device("cpu"), total_envs=8, ranks=learner_ranks)


def _assert_data_parallel_equals_single(make_agent, batches, tmp_path, tolerance: float):
    job = functools.partial(train_updates, make_agent, batches)
    rank0, rank1 = run_ranks(job, 2, str(tmp_path))
    single = run_single(job)
    # Bit-identical on both ranks after every update (rank 1 started from other weights).
    assert rank0["digests"] == rank1["digests"]
    assert rank0["targets"] == rank1["targets"]
    for step, (ranked, alone) in enumerate(zip(rank0["params"], single["params"])):
        for p_ranks, p_single in zip(ranked, alone):
            np.testing.assert_allclose(p_ranks, p_single, rtol=tolerance, atol=tolerance,
                                       err_msg=f"after update {step + 1}")
    # The updates did something: the test could fail.
    assert single["digests"][0] != single["digests"][-1]
    return single


@pytest.mark.parametrize("config", [
    ImpalaConfig(),  # RMSprop on the loss summed over the batch (IMPALA, Atari)
    ImpalaConfig(optimizer="adam", popart=True, use_lstm=True),  # mean loss, PopArt's statistics, an LSTM
], ids=["rmsprop-summed", "adam-mean-popart-lstm"])
def test_impala_two_ranks_equal_one_learner(config, tmp_path):
    batches = [_impala_batch(T=5, B=8, seed=s) for s in range(3)]
    if config.use_lstm:
        for batch in batches:
            batch["initial_core_state"] = tuple(
                0.1 * torch.randn(8, config.lstm_size, generator=torch.Generator().manual_seed(7)) for _ in range(2))
    _assert_data_parallel_equals_single(functools.partial(_impala, config), batches, tmp_path, tolerance=2e-5)


def test_r2d2_two_ranks_equal_one_learner_on_a_fixed_sample(tmp_path):
    config = dataclasses.replace(R2D2Config(), batch_size=8, target_update_period=2, burn_in=2, unroll_length=6,
                                 sequence_period=3, lstm_size=16, head_size=16)
    batches = [_r2d2_batch(config, seed=s) for s in range(3)]
    single = _assert_data_parallel_equals_single(functools.partial(_r2d2, config), batches, tmp_path, 2e-5)
    assert single["targets"][0] != single["targets"][1]  # the target network was updated at step 2


@pytest.mark.parametrize("agent", ["impala", "r2d2"])
def test_a_loss_that_overflows_on_one_rank_is_skipped_by_every_rank(agent, tmp_path):
    """The skip of a non-finite update is agreed by all ranks: one that steps while another skips would leave
    their weights apart for good (DistributedDataParallel never copies them again)."""
    if agent == "impala":
        make_agent, batches = functools.partial(_impala, ImpalaConfig()), [_impala_batch(T=5, B=8, seed=s) for s in range(3)]
    else:
        config = R2D2Config(batch_size=8, unroll_length=4, burn_in=2, sequence_period=2, target_update_period=1,
                            lstm_size=16, head_size=16)
        make_agent, batches = functools.partial(_r2d2, config), [_r2d2_batch(config, seed=s) for s in range(3)]
    rank0, rank1 = run_ranks(functools.partial(updates_with_rank_1_loss_infinite, make_agent, batches, 1), 2,
                             str(tmp_path))
    assert rank0["skipped"] == rank1["skipped"] == [False, True, False]
    assert rank0["digests"] == rank1["digests"]
    assert rank0["digests"][0] == rank0["digests"][1] != rank0["digests"][2]  # the skip kept the weights


def test_importance_weights_are_normalised_over_the_global_batch(tmp_path):
    (raw0, weights0), (raw1, weights1) = run_ranks(shard_weights, 2, str(tmp_path))
    largest = max(raw0.max(), raw1.max())
    np.testing.assert_allclose(weights0, raw0 / largest, rtol=1e-6)
    np.testing.assert_allclose(weights1, raw1 / largest, rtol=1e-6)
    assert max(weights0.max(), weights1.max()) == pytest.approx(1.0)


# --------------------------------------------------------------------------
# Whole runs: python -m seed_rl.train --learners=2 (torchrun's launcher), gloo on the CPU.
# --------------------------------------------------------------------------


def _ranks_of(launcher_pid: int) -> dict[int, int]:
    """The learner ranks' pids, by RANK, among the processes below ``launcher_pid``."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().split(") ", 1)[1].split()[1])
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if parent == launcher_pid and b"RANK" in environ:
            found[int(environ[b"RANK"])] = int(entry)
    return found


@pytest.mark.slow
def test_two_cpu_ranks_learn_cartpole_with_the_defaults(tmp_path):
    # The single learner's test (test_train_e2e.py): the same budget and bar, and the rank count.
    result = run_train(tmp_path, *CARTPOLE_FLAGS, "--learners=2", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read_metrics(tmp_path)
    returns = [m["episode_return_mean"] for m in metrics if m["episode_return_mean"] is not None]
    assert metrics[-1]["frames"] >= 300_000
    assert {m["learner_ranks"] for m in metrics} == {2}
    assert metrics[-1]["actors_connected"] == 2 and metrics[-1]["envs_connected"] == 16  # both ranks' actors
    assert all(m["ranks_identical"] == 1 for m in metrics), "the ranks' weights differed"
    assert returns[0] < 100
    assert max(returns) >= 400, f"best 100-episode mean return {max(returns):.1f}; curve {returns}"


@pytest.mark.slow
def test_two_cpu_ranks_learn_minatar_breakout_with_the_defaults(tmp_path):
    # test_minatar_learning.py's IMPALA budget and bar, on two ranks.
    result = run_train(tmp_path, "--agent=impala", "--env=minatar:Breakout", "--num_actors=2", "--envs_per_actor=16",
                       "--total_environment_frames=500000", "--learners=2", timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read_metrics(tmp_path)
    returns = [m["episode_return_mean"] for m in metrics if m["episodes"] >= 100]
    assert all(m["ranks_identical"] == 1 for m in metrics), "the ranks' weights differed"
    assert returns[0] < 1.0, returns
    assert max(returns) >= 1.5, f"best 100-episode mean {max(returns):.2f}; curve {returns}"


@pytest.mark.slow
def test_a_killed_rank_restarts_the_job_from_its_checkpoint(tmp_path):
    frames = 80_000
    command = train_command(tmp_path, "--env=CartPole-v1", "--agent=r2d2", f"--total_environment_frames={frames}",
                            "--learners=2", "--learner_max_restarts=1", "--checkpoint_interval_s=2",
                            "--collective_timeout_s=20")
    # A file, not a pipe: a leftover process holding a pipe open would hang the test instead of failing it.
    log_path = tmp_path / "job.log"
    with open(log_path, "w") as log:
        job = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 180
        while not list((tmp_path / "checkpoints").glob("ckpt-*.pt")):
            assert job.poll() is None and time.monotonic() < deadline, "no checkpoint was written"
            time.sleep(0.5)
        ranks = _ranks_of(job.pid)
        assert sorted(ranks) == [0, 1], ranks
        killed_at = read_metrics(tmp_path)[-1]["frames"]
        os.kill(ranks[1], signal.SIGKILL)
        job.wait(timeout=600)
    finally:
        job.kill()
    stderr = log_path.read_text()
    assert job.returncode == 0, stderr[-3000:]
    assert "resumed from" in stderr, stderr[-3000:]
    assert "replay holds" in stderr  # each rank's replay shard came back from the checkpoint
    metrics = read_metrics(tmp_path)
    assert metrics[-1]["frames"] >= frames > killed_at
    assert all(m["ranks_identical"] == 1 for m in metrics)


def test_too_few_actors_for_the_ranks_is_one_clear_error(tmp_path):
    result = run_train(tmp_path, "--env=CartPole-v1", "--learners=2", "--num_actors=1", timeout=180)
    assert result.returncode != 0
    assert "--num_actors=1 leaves some of the 2 learner ranks without actors" in result.stderr
    # Both ranks refuse it (exit 3); whichever torchrun sees first, the other may be stopped (exit -15).
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: learner rank") and "(exit 3)" in last, last
