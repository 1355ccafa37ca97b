"""The learner: serves inference to actors' streams, assembles unrolls and trains on them.

Threads: the transport endpoints' threads (``serving.py``: gRPC workers, one
per actor stream, and one thread per actor on shared memory) validate requests
and wait on the dynamic batcher; the batcher thread runs inference and unroll assembly; the
caller's thread (:meth:`Learner.run`) trains, logs and checkpoints. Finished
unrolls cross from inference to training, as batched tensors, through a queue
bounded in unrolls, which is also the back-pressure that keeps actors from
running far ahead of training.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass

import torch

from seed_rl.learner import checkpoint
from seed_rl.core.agent import Agent
from seed_rl.core.batcher import DynamicBatcher
from seed_rl.core.training_data import TrainingData
from seed_rl.learner.inference import InferenceEngine
from seed_rl.learner.run_config import RunConfig
from seed_rl.learner.metrics import EpisodeStats, MetricsWriter, console_line
from seed_rl.transport.streams import ActorStreams
from seed_rl.core.unroll import UnrollBatch

log = logging.getLogger(__name__)


class TrainingDiverged(Exception):
    """Too many consecutive updates had a non-finite loss or gradient; the message is the one error line."""


@dataclass
class LearnerSettings:
    logdir: str
    env_name: str
    total_environment_frames: int
    unroll_length: int
    batch_size: int
    unroll_overlap: int = 1  # steps shared by consecutive unrolls (IMPALA 1)
    frames_per_step: int = 1  # environment frames per agent step (Atari frame skip)
    inference_batch_size: int = 64
    inference_timeout_ms: float = 10.0
    unroll_queue_size: int = 0  # 0: 2 training batches
    checkpoint_interval_s: float = 300.0
    log_interval_s: float = 5.0
    max_skipped_updates: int = 100  # consecutive non-finite updates before training stops
    life_loss_ends_episode: bool = False  # the agent trains on lost lives as episode ends (IMPALA on Atari)

    @property
    def frames_per_unroll(self) -> int:
        """New environment frames each unroll brings (its steps not shared with the previous one)."""
        return (self.unroll_length + 1 - self.unroll_overlap) * self.frames_per_step


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


class Learner:
    def __init__(
        self, agent: Agent, data: TrainingData, settings: LearnerSettings, run_config: RunConfig
    ):
        self.agent = agent
        self.data = data
        self.settings = settings
        self.run_config = run_config
        self.frames = 0
        self.train_steps = 0  # updates applied
        self.updates_skipped = 0  # non-finite updates left out, in all
        self._consecutive_skips = 0
        self.params_lock = threading.Lock()
        self.episodes = EpisodeStats()
        self._stop = threading.Event()
        queue_size = settings.unroll_queue_size or 2 * settings.batch_size
        self.unrolls = UnrollQueue(queue_size)
        self.engine = InferenceEngine(
            agent, settings.unroll_length, self._enqueue_unroll, self.params_lock, settings.unroll_overlap,
            life_loss_ends_episode=settings.life_loss_ends_episode,
        )
        self._batch_sizes: list[int] = []
        self.batcher = DynamicBatcher(
            self.engine,
            max_batch_size=settings.inference_batch_size,
            timeout_s=settings.inference_timeout_ms / 1000.0,
            on_batch=self._batch_sizes.append,
        )
        # What the transport endpoints (serving.py) hand each actor's stream to.
        self.streams = ActorStreams(settings.env_name, self.batcher, self.engine, on_episodes=self.episodes.add)
        self.checkpoints = checkpoint.CheckpointWriter(settings.logdir)
        self._restore()  # refuses another run's logdir before anything is written there
        self.metrics = MetricsWriter(settings.logdir)

    def _restore(self) -> None:
        path = checkpoint.latest_checkpoint(self.settings.logdir)
        if path is None:
            return
        state = checkpoint.load_checkpoint(path, self.agent.device)
        self.run_config.check_resumes(state["run_config"], path)
        self.agent.load_state_dict(state["agent"])
        self.data.load_state_dict(state.get("data", {}))
        self.frames = state["frames"]
        self.train_steps = state["train_steps"]
        if "episodes" in state:  # checkpoints from before the return window was kept start it empty
            self.episodes.load_state_dict(state["episodes"])
        log.info("resumed from %s at %d frames", path, self.frames)

    def save_checkpoint(self, wait: bool = False) -> None:
        """Writes a checkpoint in the background from a snapshot; ``wait``: finish it before returning.

        Never from non-finite weights: the newest checkpoint stays the last good one.
        """
        agent_state = checkpoint.detached_copy(self.agent.state_dict())
        bad = checkpoint.nonfinite_tensors(agent_state)
        if bad:
            log.error("not writing a checkpoint at %d frames: non-finite values in %s", self.frames, ", ".join(bad[:3]))
            self.checkpoints.wait()
            return
        state = {
            "agent": agent_state,
            "data": self.data.state_dict(),
            "frames": self.frames,
            "train_steps": self.train_steps,
            "episodes": self.episodes.state_dict(),  # the return window, so a resumed curve has no gap
            "run_config": self.run_config.to_dict(),
        }
        self.checkpoints.save(state, self.frames, wait=wait)

    def _enqueue_unroll(self, unrolls: UnrollBatch) -> None:
        while not self._stop.is_set():
            if self.unrolls.put(unrolls, timeout=0.1):
                return

    def stop(self) -> None:
        """Asks :meth:`run` to return; safe from any thread or a signal handler."""
        self._stop.set()

    def done(self) -> bool:
        return self.frames >= self.settings.total_environment_frames

    def run(self) -> None:
        """Trains until the frame budget is spent or :meth:`stop` is called."""
        s = self.settings
        last_log = last_ckpt = time.monotonic()
        frames_at_log = self.frames
        logs: dict[str, float] = {}
        while not self.done() and not self._stop.is_set():
            if self.data.wants_data():
                unrolls = self.unrolls.get(timeout=0.1)
                if unrolls is not None:
                    self.data.add(unrolls)
                    self.frames += len(unrolls) * s.frames_per_unroll
            else:
                unrolls, extras, handle = self.data.sample()
                batch = unrolls.to(self.agent.device).training_batch()
                batch.update({k: torch.from_numpy(v).to(self.agent.device) for k, v in extras.items()})
                result = self.agent.train_step(batch, self.params_lock)
                logs = result.logs
                self._count_update(result.skipped)
                if not result.skipped:
                    self.data.after_train(handle, result.priorities)
            now = time.monotonic()
            if now - last_log >= s.log_interval_s or self.done():
                self._summarize(logs, (self.frames - frames_at_log) / (now - last_log))
                last_log, frames_at_log = now, self.frames
            if now - last_ckpt >= s.checkpoint_interval_s:
                self.save_checkpoint()
                last_ckpt = now

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
        batch_sizes, self._batch_sizes[:] = list(self._batch_sizes), []
        record = {
            "fps": fps,
            "train_steps": self.train_steps,
            "updates_skipped": self.updates_skipped,
            **self.episodes.summary(),
            **logs,
            "inference_batch_size": sum(batch_sizes) / len(batch_sizes) if batch_sizes else 0.0,
            "unroll_queue": self.unrolls.qsize(),
            "inference_queue": self.batcher.pending_requests(),
            "actors_connected": self.streams.actors,
            "envs_connected": self.engine.num_envs,
        }
        self.metrics.write(self.frames, record)
        log.info(console_line({"frames": self.frames, **record}))

    def close(self, save: bool = True) -> None:
        """Writes the final checkpoint and stops inference; stop the endpoints serving :attr:`streams` first."""
        self._stop.set()
        if save and self.frames > 0:
            self.save_checkpoint(wait=True)
        else:
            self.checkpoints.wait()
        self.batcher.close()
        self.metrics.close()
