"""The learner's ranks: one process per learner device, kept in step by ``torch.distributed``.

``torchrun --nproc_per_node=N -m seed_rl.train ...`` starts N learner ranks.
Each serves its own actors and trains on ``batch_size / N`` of every global
batch; PyTorch's ``DistributedDataParallel`` averages the gradients in the
backward pass, so every rank applies the same update to the same parameters
(``DistributedDataParallel`` also copies rank 0's initial parameters to every
rank). What else must be global goes through the few collectives below: the
statistics of PopArt's targets, R2D2's importance-weight normalisation, and the
learner loop's one control exchange per iteration (:meth:`LearnerRanks.exchange`).

A single learner is :data:`SINGLE`: every method is then the identity, with no
process group and no cost.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from seed_rl.core.learner_rank_rule import rank_of_actor

@dataclass(frozen=True)
class LearnerRanks:
    """This process's place among the learner ranks."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # rank on this machine: picks cuda:LOCAL_RANK and the port offset
    local_world_size: int = 1  # ranks on this machine: they share its cores
    # Collectives of CPU tensors and Python objects (the loop's control message, logs, replay shards) go
    # over gloo: the default group where it is gloo, else a gloo group beside NCCL's (set by join()).
    cpu_group: Any = field(default=None, compare=False, repr=False)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the logs and checkpoints."""
        return self.rank == 0

    def shard(self, total: int, name: str) -> int:
        """This rank's equal share of ``total`` (a batch size); refuses an uneven split."""
        if total % self.world_size:
            raise ValueError(
                f"{name}={total} does not split evenly over {self.world_size} learner ranks; "
                f"choose a multiple of {self.world_size}"
            )
        return total // self.world_size

    def owns_actor(self, actor_id: int) -> bool:
        """Whether this rank serves actor ``actor_id`` (``learner_rank_rule``)."""
        return rank_of_actor(actor_id, self.world_size) == self.rank

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` for the training forward pass: gradients averaged over the ranks in ``backward``.

        Inference keeps calling ``model`` itself (the wrapper shares its parameters).
        """
        if not self.distributed:
            return model
        device_ids = [model_device(model)] if model_device(model).type == "cuda" else None
        # Buffers (PopArt's statistics) are kept identical by the agents' own updates.
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean of ``tensor`` over the ranks (each rank's holds an equal share's statistic)."""
        if not self.distributed:
            return tensor
        total = tensor.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=self._group_for(total))
        return total / self.world_size

    def maximum(self, tensor: torch.Tensor) -> torch.Tensor:
        if not self.distributed:
            return tensor
        result = tensor.clone()
        dist.all_reduce(result, op=dist.ReduceOp.MAX, group=self._group_for(result))
        return result

    def all_agree(self, holds: bool) -> bool:
        """Whether ``holds`` is true on every rank: one all-reduce of one number. A decision that changes the
        weights (skipping a non-finite update) must be the same on every rank, or their weights part for good."""
        return self.exchange([0.0 if holds else 1.0])[0] == 0

    def exchange(self, values: list[float]) -> list[float]:
        """The sums of a short list of numbers over the ranks: the learner loop's control message.

        One all-reduce of one float64 tensor; flags are sent as 0/1 (sum > 0: any rank; sum == world_size: all).
        """
        if not self.distributed:
            return list(values)
        sums = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=self.cpu_group)
        return sums.tolist()

    def gather_to_main(self, value: Any) -> list[Any] | None:
        """Every rank's ``value`` on rank 0 (a list in rank order); None on the other ranks."""
        if not self.distributed:
            return [value]
        gathered = [None] * self.world_size if self.is_main else None
        dist.gather_object(value, gathered, dst=0, group=self.cpu_group)
        return gathered

    def scatter_from_main(self, values: list[Any] | None) -> Any:
        """Rank 0's ``values[r]`` on each rank ``r`` (``values`` is ignored elsewhere)."""
        if not self.distributed:
            return values[0]
        received = [None]
        dist.scatter_object_list(received, values if self.is_main else None, src=0, group=self.cpu_group)
        return received[0]

    def broadcast_from_main(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        if not self.distributed:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0, group=self.cpu_group)
        return box[0]

    def _group_for(self, tensor: torch.Tensor):
        """The process group for a collective on ``tensor``: NCCL's default for CUDA tensors, gloo for the CPU's."""
        return None if tensor.is_cuda else self.cpu_group

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier(group=self.cpu_group)


SINGLE = LearnerRanks()


def weights_digest(model: nn.Module) -> str:
    """A hash of every parameter's and buffer's bytes: equal on every rank while the ranks are in step."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def launched_by_torchrun() -> bool:
    """Whether torchrun (torch.distributed.run) started this process: it sets RANK and WORLD_SIZE for every rank."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def join(device_flag: str, timeout_s: float) -> tuple[LearnerRanks, torch.device]:
    """This process's :class:`LearnerRanks` and learner device, joining torchrun's process group if there is one.

    Without torchrun (or with one rank): :data:`SINGLE` and ``device_flag``
    resolved (``auto``: CUDA if present). Under torchrun with several ranks:
    ``cuda:LOCAL_RANK`` with NCCL where CUDA is present (``auto`` or ``cuda``),
    else the CPU with gloo. A collective waiting longer than ``timeout_s`` on a
    peer (a rank that died) raises, so the job ends and torchrun can restart it.
    """
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        if device_flag == "auto":
            return SINGLE, torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return SINGLE, torch.device(device_flag)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device_flag in ("auto", "cuda") and torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device_flag in ("auto", "cpu"):
        device = torch.device("cpu")
    else:
        raise ValueError(
            f"--device={device_flag} names one device, but torchrun started {os.environ['WORLD_SIZE']} learner "
            f"ranks; use --device=auto (cuda:LOCAL_RANK, or the CPU) or --device=cpu"
        )
    ranks = LearnerRanks(
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=local_rank,
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", 1)),
    )
    timeout = datetime.timedelta(seconds=timeout_s)
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            store=_attempt_store(ranks, timeout),
            rank=ranks.rank,
            world_size=ranks.world_size,
            timeout=timeout,
            device_id=device if device.type == "cuda" else None,
        )
    if device.type == "cuda":
        ranks = dataclasses.replace(ranks, cpu_group=dist.new_group(backend="gloo", timeout=timeout))
    return ranks, device


def _attempt_store(ranks: LearnerRanks, timeout: datetime.timedelta) -> dist.Store:
    """torchrun's key-value store, under a prefix of this attempt (``TORCHELASTIC_RESTART_COUNT``).

    After torchrun restarted the ranks, the default ``env://`` store still held the
    first attempt's addresses: a restarted rank connected to its dead peer's port
    and failed (measured with torch 2.13, gloo). Keys of their own per attempt
    let a restarted job meet again.
    """
    agent_hosts_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), ranks.world_size,
        is_master=ranks.is_main and not agent_hosts_store, timeout=timeout,
    )
    return dist.PrefixStore(f"seed_rl/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def leave() -> None:
    """Leaves the process group (at the end of a run), once every rank has come to leave it.

    Without the barrier a rank that tore its group down first could make a slower
    peer's gloo abort the process (seen once in tools/bench_learners.py).
    """
    if dist.is_initialized():
        try:
            dist.barrier()
        except RuntimeError:  # a peer died: there is nothing to wait for
            pass
        dist.destroy_process_group()
