"""Learner ranks for tests/test_data_parallel.py: processes joined over gloo, each training on its share.

Each worker builds an agent on its rank (rank 1 from another seed, so only
DistributedDataParallel's copy of rank 0's weights can make them agree), trains
it on its half of every given global batch, and reports after every update the
digest of its weights (and rank 0 its parameters).
"""

from __future__ import annotations

import datetime
import os
import threading
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from benchlib.train_batches import batch_share
from seed_rl.core.learner_ranks import SINGLE, LearnerRanks, leave, weights_digest

LOCK = threading.Lock()


def train_updates(make_agent: Callable, batches: list[dict], learner_ranks: LearnerRanks) -> dict:
    """Builds the agent for ``learner_ranks`` and applies one update per global batch; what it held after each."""
    agent = make_agent(learner_ranks)
    digests, params, targets = [], [], []
    for batch in batches:
        result = agent.train_step(batch_share(batch, learner_ranks.rank, learner_ranks.world_size), LOCK)
        assert not result.skipped
        digests.append(weights_digest(agent.model))
        params.append([p.detach().numpy().copy() for p in agent.model.parameters()])
        target = getattr(agent, "target_model", None)
        targets.append(weights_digest(target) if target is not None else None)
    return {"digests": digests, "params": params, "targets": targets}


def _worker(rank: int, ranks: int, init_file: str, job: Callable, results) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=ranks,
                            timeout=datetime.timedelta(seconds=60))
    try:
        torch.manual_seed(1000 * rank)  # rank 1's own initial weights differ from rank 0's
        results.put((rank, job(LearnerRanks(rank=rank, world_size=ranks, local_world_size=ranks))))
    except BaseException as e:
        results.put((rank, RuntimeError(f"rank {rank}: {e!r}")))  # fail the test now, not at the queue's timeout
        raise
    finally:
        leave()


def run_ranks(job: Callable, ranks: int, tmp_dir: str) -> list:
    """``job(learner_ranks)`` on ``ranks`` processes of one gloo group; their results in rank order."""
    context = mp.get_context("spawn")
    results = context.Queue()
    init_file = os.path.join(tmp_dir, "gloo-init")
    processes = [context.Process(target=_worker, args=(r, ranks, init_file, job, results)) for r in range(ranks)]
    for p in processes:
        p.start()
    gathered = {}
    for _ in range(ranks):
        rank, result = results.get(timeout=120)
        if isinstance(result, BaseException):
            for p in processes:
                p.kill()
            raise result
        gathered[rank] = result
    for p in processes:
        p.join(timeout=30)
        assert p.exitcode == 0, f"rank process exited with {p.exitcode}"
    return [gathered[r] for r in range(ranks)]


def run_single(job: Callable) -> dict:
    """``job`` as one learner, from rank 0's seed."""
    torch.manual_seed(0)
    return job(SINGLE)


def shard_weights(learner_ranks: LearnerRanks) -> tuple[np.ndarray, np.ndarray]:
    """Raw importance weights of one shard's sample (rank 1's ten times rank 0's) and R2D2's normalisation."""
    from seed_rl.agents.r2d2.replay_data import importance_weights

    raw = np.array([1.0, 2.0, 4.0]) * (1 + 9 * learner_ranks.rank)
    return raw, importance_weights(raw, learner_ranks)


def updates_with_rank_1_loss_infinite(make_agent: Callable, batches: list[dict], poisoned: int,
                                      learner_ranks: LearnerRanks) -> dict:
    """:func:`train_updates`, but at update ``poisoned`` rank 1's loss is +inf while the gradients (averaged
    over the ranks) stay finite: a loss that overflows on one rank only. Whether each update was skipped,
    and the weights' digest after it."""
    agent = make_agent(learner_ranks)
    compute_loss, update = agent.compute_loss, [0]

    def overflowing_on_rank_1(batch):
        loss, *rest = compute_loss(batch)
        if learner_ranks.rank == 1 and update[0] == poisoned:
            loss = loss + float("inf")  # a constant: the gradients stay as they were
        return (loss, *rest)

    agent.compute_loss = overflowing_on_rank_1
    skipped, digests = [], []
    for update[0], batch in enumerate(batches):
        skipped.append(agent.train_step(batch_share(batch, learner_ranks.rank, learner_ranks.world_size), LOCK).skipped)
        digests.append(weights_digest(agent.model))
    return {"skipped": skipped, "digests": digests}
