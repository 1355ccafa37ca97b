"""Training summaries: TensorBoard scalars, ``metrics.jsonl`` and a console line."""

from __future__ import annotations

import collections
import json
import math
import time
import threading
from pathlib import Path

import numpy as np


class EpisodeStats:
    """Thread-safe record of finished episodes reported by the actors."""

    def __init__(self, window: int = 100):
        self._lock = threading.Lock()
        self._returns: collections.deque[float] = collections.deque(maxlen=window)
        self._lengths: collections.deque[int] = collections.deque(maxlen=window)
        self.episodes = 0

    def add(self, returns: np.ndarray, lengths: np.ndarray) -> None:
        with self._lock:
            self._returns.extend(float(r) for r in returns)
            self._lengths.extend(int(n) for n in lengths)
            self.episodes += len(returns)

    def state_dict(self) -> dict:
        with self._lock:
            return {"returns": list(self._returns), "lengths": list(self._lengths), "episodes": self.episodes}

    def load_state_dict(self, state: dict) -> None:
        with self._lock:
            self._returns.clear()
            self._lengths.clear()
            self._returns.extend(state["returns"])
            self._lengths.extend(state["lengths"])
            self.episodes = state["episodes"]

    def summary(self) -> dict[str, float | None]:
        """Means over the last ``window`` episodes (None before the first one ends)."""
        with self._lock:
            if not self._returns:
                return {"episode_return_mean": None, "episode_length_mean": None, "episodes": self.episodes}
            return {
                "episode_return_mean": float(np.mean(self._returns)),
                "episode_length_mean": float(np.mean(self._lengths)),
                "episodes": self.episodes,
            }


class EpisodeInbox:
    """Finished episodes waiting to be sent to rank 0's :class:`EpisodeStats` (several learner ranks)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._returns: list[float] = []
        self._lengths: list[int] = []

    def add(self, returns: np.ndarray, lengths: np.ndarray) -> None:
        with self._lock:
            self._returns.extend(float(r) for r in returns)
            self._lengths.extend(int(n) for n in lengths)

    def drain(self) -> tuple[list[float], list[int]]:
        """The episodes added since the last drain."""
        with self._lock:
            taken = self._returns, self._lengths
            self._returns, self._lengths = [], []
            return taken


class MetricsWriter:
    """Writes one summary step to TensorBoard and as one line of ``metrics.jsonl``."""

    def __init__(self, logdir: str | Path):
        from torch.utils.tensorboard import SummaryWriter

        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self._tb = SummaryWriter(str(self.logdir / "tensorboard"))
        self._jsonl = open(self.logdir / "metrics.jsonl", "a", buffering=1)

    def write(self, frames: int, values: dict) -> None:
        # Unix time in the JSON lines only: curves against wall-clock time, across resumes.
        record = {"frames": frames, "time": round(time.time(), 3), **values}
        self._jsonl.write(json.dumps(record) + "\n")
        for key, value in values.items():
            if isinstance(value, (int, float)) and value is not None and math.isfinite(value):
                self._tb.add_scalar(key, value, frames)
        self._tb.flush()

    def close(self) -> None:
        self._tb.close()
        self._jsonl.close()


_CONSOLE_KEYS = (
    ("loss/total", "loss"),
    ("loss/policy", "pg"),
    ("loss/baseline", "v"),
    ("policy_entropy", "ent"),
    ("q_mean", "q"),
    ("td_abs_mean", "|td|"),
)


def console_line(record: dict) -> str:
    """One progress line: frames, frames/s, mean return and whichever losses the agent logs."""

    def fmt(key: str, spec: str) -> str:
        value = record.get(key)
        return "n/a" if value is None else format(value, spec)

    losses = " ".join(f"{label} {record[key]:.3f}" for key, label in _CONSOLE_KEYS if record.get(key) is not None)
    return (
        f"frames {record['frames']:>11,d} | fps {fmt('fps', ',.0f'):>7} | "
        f"return {fmt('episode_return_mean', '.2f'):>8} ({record.get('episodes', 0)} eps) | "
        + (f"eval {fmt('eval/episode_return_mean', '.2f'):>8} ({record['eval/episodes']} eps) | "
           if "eval/episodes" in record else "")
        + losses
    )
