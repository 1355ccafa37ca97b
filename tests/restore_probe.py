"""``python tests/restore_probe.py <train flags>``: builds the learner a train command would resume, without
serving or training, and prints as JSON how its restored state compares with the newest checkpoint on disk.

The comparison walks the agent's whole ``state_dict`` (weights, optimizer moments and step counts, learning-rate
schedule, R2D2's target network), the training data's (R2D2's replay) and the learner's own counters and return
window, so a resume that skipped any of them shows up as a mismatch.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch
from absl import flags

from seed_rl import train  # noqa: F401  (defines the train command's flags)
from seed_rl.config import roles
from seed_rl.learner import checkpoint, checkpoint_loading
from seed_rl.learner.build import build_learner


def mismatches(restored, stored, path: str = "") -> list[str]:
    """Where ``restored`` and ``stored`` differ (tensors and arrays exactly), as readable paths."""
    if isinstance(stored, dict):
        if not isinstance(restored, dict) or restored.keys() != stored.keys():
            return [f"{path}: keys {sorted(map(str, getattr(restored, 'keys', list)()))} != {sorted(map(str, stored))}"]
        return [m for k in stored for m in mismatches(restored[k], stored[k], f"{path}/{k}")]
    if isinstance(stored, (list, tuple)):
        if not isinstance(restored, (list, tuple)) or len(restored) != len(stored):
            return [f"{path}: length {len(restored) if hasattr(restored, '__len__') else '?'} != {len(stored)}"]
        return [m for i, (a, b) in enumerate(zip(restored, stored)) for m in mismatches(a, b, f"{path}[{i}]")]
    if isinstance(stored, torch.Tensor):
        same = isinstance(restored, torch.Tensor) and restored.shape == stored.shape and torch.equal(restored.cpu(), stored.cpu())
        return [] if same else [path]
    if isinstance(stored, np.ndarray):
        return [] if isinstance(restored, np.ndarray) and np.array_equal(restored, stored) else [path]
    return [] if restored == stored else [f"{path}: {restored!r} != {stored!r}"]


def main() -> None:
    values = flags.FLAGS
    roles.parse_flags(sys.argv)
    path = checkpoint.latest_checkpoint(values.logdir)
    stored = checkpoint_loading.load_checkpoint(path)
    built = build_learner(values, serve_shm=False)
    learner = built.learner
    try:
        restored = {
            "agent": learner.agent.state_dict(),
            "data": learner.data.state_dict(),
            "frames": learner.frames,
            "train_steps": learner.train_steps,
            "episodes": learner.episodes.state_dict(),
        }
        found = [m for key in restored for m in mismatches(restored[key], stored[key], key)]
        print(json.dumps({
            "checkpoint": str(path),
            "mismatches": found,
            "agent_keys": sorted(stored["agent"]),
            "learning_rate": learner.agent.optimizer.param_groups[0]["lr"],
            "episodes_in_window": len(stored["episodes"]["returns"]),
        }))
    finally:
        built.endpoints.stop()
        learner.close(save=False)
        built.lock.release()


if __name__ == "__main__":
    main()
