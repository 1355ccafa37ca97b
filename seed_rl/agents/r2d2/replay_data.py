"""R2D2's path from unrolls to batches: prioritized replay at a held replay ratio.

The replay's items are :class:`~seed_rl.replay.chunk_store.SequenceRecord`;
the steps live once, compressed, in a :class:`~seed_rl.replay.chunk_store.ChunkStore`
whose chunks are freed as the replay evicts the last sequence using them.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import numpy as np
import torch

from seed_rl.core.learner_ranks import SINGLE, LearnerRanks
from seed_rl.core.unroll import Unroll, UnrollBatch
from seed_rl.replay.chunk_store import ChunkStore
from seed_rl.replay.prioritized import PrioritizedReplay
from seed_rl.replay.resharding import reshard_replays

log = logging.getLogger(__name__)


def importance_weights(raw: np.ndarray, ranks: LearnerRanks = SINGLE) -> np.ndarray:
    """Importance weights ``(N * P(i))^-beta`` over their maximum in the global batch (every rank's share), float32."""
    largest = ranks.maximum(torch.tensor(float(raw.max()), dtype=torch.float64))
    return (raw / float(largest)).astype(np.float32)


def _split(total: int, shards: int) -> list[int]:
    return [total // shards + (j < total % shards) for j in range(shards)]


def reshard_states(states: list[dict], world_size: int, capacity: int) -> list[dict]:
    """:meth:`ReplayData.state_dict` outputs of a run's ranks (any number) as ``world_size`` states for
    shards whose replays have ``capacity`` (``ceil(replay_capacity / world_size)``).

    As many states of that capacity come back unchanged (an exact resume). Otherwise:

    * the replay contents (:func:`~seed_rl.replay.resharding.reshard_replays`):
      every sequence moves with its priority and its chunks; more sequences than
      ``world_size * capacity`` keep the newest; the kept ones are dealt in
      contiguous runs of (old shard, lineage, index), so each new shard gets an
      equal share (within one). New shard ``j`` keeps old shard ``j``'s sampling
      rng (a new shard gets a generator seeded from an old one's); each
      replay's insertion count restarts at the number of sequences it holds.
    * ``inserted_steps`` and ``trained_steps``: their sums over the old shards,
      split evenly, so every shard holds the run's replay ratio as it stood;
      ``max_priority``: the largest of the old shards'.
    * States without contents (``--nocheckpoint_replay``) move only the
      counters; empty states (``{}``) count as no steps.
    """
    if len(states) == world_size and all(not s or "replay" not in s or s["replay"]["capacity"] == capacity
                                          for s in states):
        return list(states)
    present = [s for s in states if s]
    if not present:
        return [{} for _ in range(world_size)]
    inserted = _split(sum(int(s["inserted_steps"]) for s in present), world_size)
    trained = _split(sum(int(s["trained_steps"]) for s in present), world_size)
    max_priority = max(float(s["max_priority"]) for s in present)
    out = [{"inserted_steps": i, "trained_steps": t, "max_priority": max_priority} for i, t in zip(inserted, trained)]
    replays = [s["replay"] for s in present if "replay" in s]
    if replays:
        for state, replay in zip(out, reshard_replays(replays, capacity, world_size)):
            state["replay"] = replay
    return out


class ReplayData:
    """Inserts every sequence into a prioritized replay and samples training batches.

    The replay ratio is the number of times each inserted step is trained on,
    on average: training waits for data while ``trained steps >= replay_ratio *
    inserted steps``, and the learner stops pulling unrolls (so the actors wait)
    while it is below. New sequences get ``initial_priority(unroll)`` when it
    is given (R2D2's TD-error priority from acting-time Q-values, as SEED RL
    does), else the largest priority seen so far (Schaul et al. 2016).

    ``sequence_overlap``: steps consecutive sequences of an environment share
    (the trajectory store's overlap); they are stored once.
    Checkpoints hold the compressed chunks unless ``checkpoint_contents`` is
    False (``--nocheckpoint_replay``), which also leaves a checkpoint's replay
    contents unread. After loading, sampling gives the stored sequences; new
    sequences start new chunk chains (the resumed run's lineages are new).

    With several learner ranks (``ranks``) this is one shard of the replay,
    fed by the rank's own actors, as Ape-X's replay shards are: each samples
    its share of the batch from its own priorities (``P(i)`` and ``N`` are the
    shard's) and keeps its own replay ratio, but the importance weights are
    divided by their maximum over the whole global batch, as one learner's are.

    ``prefetch``: a worker thread draws and decompresses the next batch while
    the current one trains, so the training thread (a GPU's feeder) never
    waits on sampling. That batch is drawn before the current one's new
    priorities are written: one update stale, as Ape-X's replay serves its
    learner. Priority updates for sequences evicted meanwhile are dropped
    (``PrioritizedReplay.update_priorities``). The importance weights'
    normalisation (a collective with several ranks) stays on the training thread.
    """

    def __init__(
        self,
        replay: PrioritizedReplay,
        batch_size: int,
        replay_ratio: float,
        min_size: int,
        trained_steps_per_sequence: int,
        new_steps_per_sequence: int,
        checkpoint_contents: bool = True,
        initial_priority: Callable[[Unroll], float] | None = None,
        sequence_overlap: int = 0,
        ranks: LearnerRanks = SINGLE,
        prefetch: bool = False,
    ):
        self.replay = replay
        self.store = ChunkStore(sequence_overlap)
        replay.on_evict = self._evicted
        self.batch_size = batch_size
        self.replay_ratio = replay_ratio
        self.min_size = min_size
        self.trained_steps_per_sequence = trained_steps_per_sequence
        self.new_steps_per_sequence = new_steps_per_sequence
        self.checkpoint_contents = checkpoint_contents
        self.initial_priority = initial_priority
        self.ranks = ranks
        self.inserted_steps = 0
        self.trained_steps = 0
        self.max_priority = 1.0
        # The replay and the chunk store are shared by the training thread and the prefetch worker.
        self._lock = threading.Lock()
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="replay-prefetch") if prefetch else None
        self._next: Future | None = None  # the prefetched batch being drawn

    def add(self, unrolls: UnrollBatch) -> None:
        sequences = unrolls.unrolls()
        if self.initial_priority is None:
            priorities = np.full(len(sequences), self.max_priority)
        else:
            priorities = np.array([self.initial_priority(u) for u in sequences])
        with self._lock:
            records = [self.store.add(u) for u in sequences]
            try:
                self.replay.insert(records, priorities)
            except BaseException:
                self.store.release(records)
                raise
        self.inserted_steps += self.new_steps_per_sequence * len(sequences)

    def _evicted(self, records: list) -> None:
        self.store.release(records)

    def wants_data(self) -> bool:
        if len(self.replay) < self.min_size:
            return True
        return self.trained_steps >= self.replay_ratio * self.inserted_steps

    def _draw(self) -> tuple[UnrollBatch, np.ndarray, np.ndarray]:
        """A batch's sequences, their raw importance weights and their ids."""
        with self._lock:
            ids, records, raw_weights = self.replay.sample(self.batch_size, normalized=False)
            store, chunks = self.store, self.store.chunks_of(records)
        # Decompressed outside the lock: the chunks stay readable even if the training thread evicts them meanwhile.
        return store.gather(records, chunks), raw_weights, ids

    def sample(self) -> tuple[UnrollBatch, dict[str, np.ndarray], Any]:
        unrolls, raw_weights, ids = self._next.result() if self._next is not None else self._draw()
        self._next = self._worker.submit(self._draw) if self._worker is not None else None
        weights = importance_weights(raw_weights, self.ranks)
        self.trained_steps += self.batch_size * self.trained_steps_per_sequence
        return unrolls, {"importance_weights": weights}, ids

    def _drop_prefetched(self) -> None:
        if self._next is not None:
            self._next.result()
            self._next = None

    def after_train(self, handle: Any, priorities: np.ndarray | None) -> None:
        if priorities is None:
            raise ValueError("R2D2's train_step must return per-sequence priorities")
        with self._lock:
            self.replay.update_priorities(handle, priorities)
        self.max_priority = max(self.max_priority, float(np.max(priorities)))

    def state_dict(self) -> dict:
        with self._lock:
            return self._state_dict()

    def _state_dict(self) -> dict:
        state = {
            "inserted_steps": self.inserted_steps,
            "trained_steps": self.trained_steps,
            "max_priority": self.max_priority,
        }
        if self.checkpoint_contents:
            # The chunks as a few flat tensors: torch.save streams tensor storages straight
            # into the file, where pickled bytes or arrays are first copied into one in-memory
            # pickle (with full unrolls that copy once exhausted a 24 GB machine).
            replay = self.replay.state_dict()
            replay["sequences"] = self.store.state_dict(replay.pop("items"))
            state["replay"] = replay
        return state

    def reshard(self, states: list[dict], world_size: int) -> list[dict]:
        """A checkpoint's shard states, from any number of ranks, for ``world_size`` shards like this one
        (every rank's has this capacity): :func:`reshard_states`."""
        if not self.checkpoint_contents:  # the contents would not be loaded: move only the counters
            states = [{k: v for k, v in s.items() if k != "replay"} for s in states]
        return reshard_states(states, world_size, self.replay.capacity)

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        self._drop_prefetched()  # drawn from the replay being replaced
        self.inserted_steps = state["inserted_steps"]
        self.trained_steps = state["trained_steps"]
        self.max_priority = state["max_priority"]
        if "replay" not in state:
            log.info("the checkpoint holds no replay contents (--nocheckpoint_replay): refilling from empty")
        elif not self.checkpoint_contents:
            log.info("--nocheckpoint_replay: not loading the checkpoint's replay contents; refilling from empty")
        else:
            replay = dict(state["replay"])
            store = ChunkStore(self.store.overlap)
            replay["items"] = store.load_state_dict(replay.pop("sequences"))
            self.replay.load_state_dict(replay)
            self.store = store
            log.info("replay holds %d sequences from the checkpoint", len(self.replay))
