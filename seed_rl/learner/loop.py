"""The learner: serves inference to actors' streams, assembles unrolls and trains on them.

Threads: the transport endpoints' threads (``serving.py``: gRPC workers, one
per actor stream, and one thread per actor on shared memory) validate requests
and wait on the dynamic batcher; the batcher thread runs inference and unroll assembly; the
caller's thread (:meth:`Learner.run`) trains, logs and checkpoints. Finished
unrolls cross from inference to training, as batched tensors, through a queue
bounded in unrolls, which is also the back-pressure that keeps actors from
running far ahead of training.

With several learner ranks (torchrun; ``core/learner_ranks.py``) every rank runs
this loop over its own actors and its share of the batch. Each iteration ends
in one small all-reduce, :class:`Agreement`: the ranks train only when every
one has its share ready, stop together when any is asked to (or the global
frame count reaches the budget), and log and checkpoint when rank 0's clock
says so. No rank waits in a collective for longer than the others take to pull
their next unrolls, so a collective that times out means a dead peer.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from seed_rl.learner import checkpoint
from seed_rl.learner.checkpoint_loading import CheckpointReadError, DamagedReplay, newest_readable
from seed_rl.learner import update_stats
from seed_rl.core.agent import Agent
from seed_rl.core.eval_envs import NO_EVAL_ENVS, EvalEnvs
from seed_rl.core.learner_ranks import SINGLE, LearnerRanks, weights_digest
from seed_rl.core.training_data import TrainingData
from seed_rl.learner.inference import InferenceEngine
from seed_rl.learner.serving import InferenceService
from seed_rl.learner.run_config import CheckpointMismatch, RunConfig
from seed_rl.learner.metrics import EpisodeInbox, EpisodeStats, MetricsWriter, console_line
from seed_rl.core.unroll import UnrollBatch, UnrollShape

log = logging.getLogger(__name__)


class TrainingDiverged(Exception):
    """Too many consecutive updates had a non-finite loss or gradient; the message is the one error line."""


@dataclass
class LearnerSettings:
    logdir: str
    env_name: str
    total_environment_frames: int
    unroll: UnrollShape  # the agent builder's
    batch_size: int
    frames_per_step: int = 1  # environment frames per agent step (Atari frame skip)
    inference_batch_size: int = 64
    inference_timeout_ms: float = 10.0
    unroll_queue_size: int = 0  # 0: 2 training batches
    checkpoint_interval_s: float = 300.0
    log_interval_s: float = 5.0
    max_skipped_updates: int = 100  # consecutive non-finite updates before training stops
    eval_envs: EvalEnvs = NO_EVAL_ENVS  # environments acted on but never trained on, logged as eval/...
    damaged_replay: DamagedReplay = "previous"  # a checkpoint whose replay alone is damaged: fall back, or drop it

    @property
    def frames_per_unroll(self) -> int:
        """New environment frames each unroll brings (its steps not shared with the previous one)."""
        return self.unroll.new_steps * self.frames_per_step


class UnrollQueue:
    """A FIFO of :class:`UnrollBatch` bounded by the number of unrolls it holds."""

    def __init__(self, max_unrolls: int):
        self.max_unrolls = max_unrolls
        self._items: collections.deque[UnrollBatch] = collections.deque()
        self._unrolls = 0
        self._changed = threading.Condition()

    def qsize(self) -> int:
        """Unrolls waiting."""
        with self._changed:
            return self._unrolls

    def put(self, item: UnrollBatch, timeout: float) -> bool:
        """Appends ``item`` once fewer than ``max_unrolls`` wait; False if that took longer than ``timeout``."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._unrolls < self.max_unrolls, timeout):
                return False
            self._items.append(item)
            self._unrolls += len(item)
            self._changed.notify_all()
            return True

    def get(self, timeout: float) -> UnrollBatch | None:
        with self._changed:
            if not self._changed.wait_for(lambda: self._items, timeout):
                return None
            item = self._items.popleft()
            self._unrolls -= len(item)
            self._changed.notify_all()
            return item


def mean_logs(per_rank: list[dict[str, float]]) -> dict[str, float]:
    """Each scalar's mean over the ranks that logged it (every rank trains on an equal share of the batch)."""
    keys = {key for logs in per_rank for key in logs}
    return {key: float(np.mean([logs[key] for logs in per_rank if key in logs])) for key in sorted(keys)}


def data_shards(state: dict, world_size: int, reshard: Callable[[list[dict], int], list[dict]]) -> list[dict]:
    """The training data states of a checkpoint (taken out of ``state``), one per rank of a run of ``world_size``.

    ``reshard`` (the training data's ``TrainingData.reshard``) moves the shards of
    a checkpoint written by another number of ranks onto this run's: R2D2's
    replay contents are dealt over the new shards, none refused for a capacity.
    """
    shards = state.pop("data_shards", None) or [state.pop("data", {})]
    state.pop("data", None)
    if len(shards) != world_size:
        log.info("the checkpoint holds %d data shards (replay) for %d learner ranks: moving their contents",
                 len(shards), world_size)
    try:
        return reshard(list(shards), world_size)
    except ValueError as e:  # raised on every rank (_restore), not on rank 0 alone
        raise CheckpointReadError(f"cannot move the checkpoint's {len(shards)} data shards to {world_size}: {e}") from e


@dataclass(frozen=True)
class Agreement:
    """What every learner rank decided together at the end of one loop iteration."""

    new_frames: int  # environment frames all ranks pulled in this iteration
    train: bool  # every rank has its share of a batch: update now
    stop: bool  # some rank was asked to stop
    save: bool  # no rank vetoed the final checkpoint (an actor's user error)
    log: bool  # rank 0's summary interval is up
    checkpoint: bool  # rank 0's checkpoint interval is up

    @staticmethod
    def reached(ranks: LearnerRanks, new_frames: int, ready: bool, stop: bool, veto: bool, log_due: bool,
                checkpoint_due: bool) -> "Agreement":
        """One exchange of each rank's view; ``log_due``/``checkpoint_due`` count from rank 0 only."""
        main = ranks.is_main
        sums = ranks.exchange([new_frames, ready, stop, veto, log_due and main, checkpoint_due and main])
        frames, ready_ranks, stops, vetoes, logs, checkpoints = sums
        return Agreement(int(frames), ready_ranks == ranks.world_size, stops > 0, vetoes == 0, logs > 0,
                         checkpoints > 0)


class Learner:
    def __init__(
        self, agent: Agent, data: TrainingData, settings: LearnerSettings, run_config: RunConfig,
        ranks: LearnerRanks = SINGLE,
    ):
        self.agent = agent
        self.ranks = ranks
        self.data = data
        self.settings = settings
        self.run_config = run_config
        self.frames = 0  # global: every rank's actors' frames
        self.train_steps = 0  # updates applied
        self.updates_skipped = 0  # non-finite updates left out, in all
        self._consecutive_skips = 0
        self.params_lock = threading.Lock()
        self.episodes = EpisodeStats()
        self.eval_episodes = EpisodeStats()  # of the evaluation environments
        self._stop = threading.Event()
        self._veto_save = False  # stop without a final checkpoint (an actor's user error)
        self.final_save = True  # whether the ranks agreed to write a final checkpoint
        queue_size = settings.unroll_queue_size or 2 * settings.batch_size
        self.unrolls = UnrollQueue(queue_size)
        self.engine = InferenceEngine(
            agent, settings.unroll, self._enqueue_unroll, self.params_lock, eval_envs=settings.eval_envs,
        )
        self._batch_sizes: list[int] = []
        # Several ranks: episodes wait in an inbox until rank 0 gathers them at the next summary.
        self._inbox = EpisodeInbox()
        self._eval_inbox = EpisodeInbox()
        self.inference = InferenceService(
            self.engine, settings.env_name,
            max_batch_size=settings.inference_batch_size,
            timeout_s=settings.inference_timeout_ms / 1000.0,
            on_batch=self._batch_sizes.append,
            on_episodes=self._inbox.add if ranks.distributed else self.episodes.add,
            eval_envs=settings.eval_envs,
            on_eval_episodes=self._eval_inbox.add if ranks.distributed else self.eval_episodes.add,
        )
        self.streams = self.inference.streams  # what the transport endpoints (serving.py) hand each actor's stream to
        self.checkpoints = checkpoint.CheckpointWriter(settings.logdir)
        self._restore()  # refuses another run's logdir before anything is written there
        self.metrics = MetricsWriter(settings.logdir) if ranks.is_main else None

    def _restore(self) -> None:
        """Rank 0 reads the newest readable checkpoint; every rank loads the agent from it and its own data shard.

        Newer checkpoints that cannot be read are moved aside (``checkpoint_loading.newest_readable``).
        """
        r = self.ranks
        path = state = shards = error = None
        if r.is_main:
            checkpoint.remove_unfinished_writes(self.settings.logdir)
            try:
                loaded = newest_readable(self.settings.logdir, self.settings.damaged_replay, move_aside=True)
                if loaded is not None:
                    path, state = loaded.path, loaded.state
                    self.run_config.check_resumes(state.get("run_config", {}), path)
                    shards = data_shards(state, r.world_size, self.data.reshard)
            except (CheckpointMismatch, CheckpointReadError) as e:
                error = f"{e}"
        error = r.broadcast_from_main(error)
        if error is not None:
            raise CheckpointMismatch(error)
        path, state = r.broadcast_from_main((path, state))
        if path is None:
            return
        self.agent.load_state_dict(state["agent"])
        self.data.load_state_dict(r.scatter_from_main(shards))
        self.frames = state["frames"]
        self.train_steps = state["train_steps"]
        self.episodes.load_state_dict(state["episodes"])
        if "eval_episodes" in state:
            self.eval_episodes.load_state_dict(state["eval_episodes"])
        log.info("resumed from %s at %d frames", path, self.frames)

    def save_checkpoint(self, wait: bool = False) -> None:
        """Writes a checkpoint in the background from a snapshot; ``wait``: finish it before returning.

        Never from non-finite weights: the newest checkpoint stays the last good one.
        Several ranks: every rank calls this at the same iteration; rank 0 gathers
        their data shards (R2D2's replay) and writes one file.
        """
        shards = self.ranks.gather_to_main(self.data.state_dict())
        if not self.ranks.is_main:
            return
        agent_state = checkpoint.detached_copy(self.agent.state_dict())
        bad = checkpoint.nonfinite_tensors(agent_state)
        if bad:
            log.error("not writing a checkpoint at %d frames: non-finite values in %s", self.frames, ", ".join(bad[:3]))
            self.checkpoints.wait()
            return
        state = {
            "agent": agent_state,
            "frames": self.frames,
            "train_steps": self.train_steps,
            "episodes": self.episodes.state_dict(),  # the return window, so a resumed curve has no gap
            "eval_episodes": self.eval_episodes.state_dict(),
            "run_config": self.run_config.to_dict(),
        }
        if self.ranks.distributed:
            state["data_shards"] = shards
        else:
            state["data"] = shards[0]
        self.checkpoints.save(state, self.frames, wait=wait)

    def _enqueue_unroll(self, unrolls: UnrollBatch) -> None:
        while not self._stop.is_set():
            if self.unrolls.put(unrolls, timeout=0.1):
                return

    def stop(self, save: bool = True) -> None:
        """Asks :meth:`run` to return; ``save=False``: and no rank to write a final checkpoint.

        Safe from any thread or a signal handler.
        """
        if not save:
            self._veto_save = True
        self._stop.set()

    def done(self) -> bool:
        return self.frames >= self.settings.total_environment_frames

    def run(self) -> None:
        """Trains until the frame budget is spent or :meth:`stop` is called (on any rank)."""
        s = self.settings
        last_log = last_ckpt = time.monotonic()
        frames_at_log = self.frames
        logs: dict[str, float] = {}
        while not self.done():
            new_frames = 0
            if self.data.wants_data() and not self._stop.is_set():
                # Everything waiting, up to what training needs: one exchange below for all of it.
                unrolls = self.unrolls.get(timeout=0.1)
                while unrolls is not None:
                    self.data.add(unrolls)
                    new_frames += len(unrolls) * s.frames_per_unroll
                    unrolls = self.unrolls.get(timeout=0) if self.data.wants_data() else None
            now = time.monotonic()
            agreed = Agreement.reached(
                self.ranks, new_frames, ready=not self.data.wants_data(), stop=self._stop.is_set(),
                veto=self._veto_save, log_due=now - last_log >= s.log_interval_s,
                checkpoint_due=now - last_ckpt >= s.checkpoint_interval_s,
            )
            self.frames += agreed.new_frames
            if agreed.stop:
                self.final_save = agreed.save
                self._stop.set()
                return
            if agreed.train and not self.done():
                logs = self._train(measure=agreed.log)
            if agreed.log or self.done():
                self._summarize(logs, (self.frames - frames_at_log) / max(now - last_log, 1e-9))
                last_log, frames_at_log = now, self.frames
            if agreed.checkpoint:
                self.save_checkpoint()
                last_ckpt = now

    def _train(self, measure: bool = False) -> dict[str, float]:
        """One update on a sample of this rank's data; the logs of the agent's ``train_step``.

        ``measure``: add how far the update moved each part of the network (``learner/update_stats.py``),
        for the summary that follows it.
        """
        unrolls, extras, handle = self.data.sample()
        batch = unrolls.to(self.agent.device).training_batch()
        batch.update({k: torch.from_numpy(v).to(self.agent.device) for k, v in extras.items()})
        before = update_stats.snapshot(self.agent.model) if measure else None
        result = self.agent.train_step(batch, self.params_lock)
        self._count_update(result.skipped)
        if result.skipped:
            return result.logs
        self.data.after_train(handle, result.priorities)
        if before is None:
            return result.logs
        return {**result.logs,
                **update_stats.update_stats(self.agent.model, before, getattr(self.agent, "optimizer", None))}

    def _count_update(self, skipped: bool) -> None:
        if not skipped:
            self.train_steps += 1
            self._consecutive_skips = 0
            return
        self.updates_skipped += 1
        self._consecutive_skips += 1
        if self._consecutive_skips == 1:
            log.warning("skipped an update with a non-finite loss or gradient norm (%d skipped in all)",
                        self.updates_skipped)
        if self._consecutive_skips >= self.settings.max_skipped_updates:
            raise TrainingDiverged(
                f"training stopped: {self._consecutive_skips} consecutive updates had a non-finite loss or gradient "
                f"norm at {self.frames} frames; the newest checkpoint holds the last finite weights. Look for "
                f"non-finite or huge rewards or observations from the environment, or lower --learning_rate"
            )

    def _summarize(self, logs: dict[str, float], fps: float) -> None:
        """Writes one summary; several ranks: rank 0 writes what all of them saw (every rank calls this)."""
        batch_sizes, self._batch_sizes[:] = list(self._batch_sizes), []
        local = {
            "logs": logs,
            "episodes": self._inbox.drain(),
            "eval_episodes": self._eval_inbox.drain(),
            "batch_sizes": batch_sizes,
            "unroll_queue": self.unrolls.qsize(),
            "inference_queue": self.inference.batcher.pending_requests(),
            "actors_connected": self.streams.actors,
            "envs_connected": self.engine.num_envs,
        }
        if self.ranks.distributed:  # checks that every rank holds the same weights
            with self.params_lock:
                local["weights"] = weights_digest(self.agent.model)
        per_rank = self.ranks.gather_to_main(local)
        if not self.ranks.is_main:
            return
        for rank in per_rank:
            for key, stats in (("episodes", self.episodes), ("eval_episodes", self.eval_episodes)):
                returns, lengths = rank[key]
                if returns:
                    stats.add(np.asarray(returns), np.asarray(lengths))
        sizes = [size for rank in per_rank for size in rank["batch_sizes"]]
        record = {
            "fps": fps,
            "train_steps": self.train_steps,
            "updates_skipped": self.updates_skipped,
            **self.episodes.summary(),
            **self._eval_summary(),
            **mean_logs([rank["logs"] for rank in per_rank]),
            "inference_batch_size": sum(sizes) / len(sizes) if sizes else 0.0,
            **{key: sum(rank[key] for rank in per_rank)
               for key in ("unroll_queue", "inference_queue", "actors_connected", "envs_connected")},
        }
        if self.ranks.distributed:
            record["learner_ranks"] = self.ranks.world_size
            # 1 while the ranks' weights are bit-identical; data parallelism has gone wrong where it is not.
            record["ranks_identical"] = int(len({rank["weights"] for rank in per_rank}) == 1)
            if not record["ranks_identical"]:
                log.error("the learner ranks' weights differ at %d frames (update %d)", self.frames, self.train_steps)
        self.metrics.write(self.frames, record)
        log.info(console_line({"frames": self.frames, **record}))

    def _eval_summary(self) -> dict:
        """The evaluation environments' 100-episode means as ``eval/...`` (nothing without evaluation environments)."""
        if not self.settings.eval_envs.num_eval_envs:
            return {}
        return {f"eval/{key}": value for key, value in self.eval_episodes.summary().items()}

    def close(self, save: bool = True) -> None:
        """Writes the final checkpoint and stops inference; stop the endpoints serving :attr:`streams` first.

        Raises ``checkpoint.CheckpointWriteError`` (after stopping everything) when the final checkpoint
        could not be written.
        """
        self._stop.set()
        try:
            if save and self.frames > 0:
                self.save_checkpoint(wait=True)
            else:
                self.checkpoints.wait()
        finally:
            self.inference.close()
            if self.metrics is not None:
                self.metrics.close()
