"""Checkpoints a user can trust: damage is found at load and falls back, loading runs no code, old ones still load."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from seed_rl.learner import checkpoint, checkpoint_loading
from seed_rl.learner.checkpoint_digest import with_digests
from seed_rl.learner.checkpoint_loading import (DamagedCheckpoint, NoReadableCheckpoint, UnsafeCheckpoint,
                                                newest_readable)

WEIGHTS = torch.arange(4096, dtype=torch.float32)  # 16 KiB of recognisable bytes


def _state(frames: int) -> dict:
    return {"agent": {"model": {"w": WEIGHTS + frames}}, "frames": frames, "run_config": {"agent": "impala"},
            "data": {"replay": torch.full((4096,), frames, dtype=torch.int32)}}


def _write_two(logdir: Path) -> tuple[Path, Path]:
    older = checkpoint.save_checkpoint(logdir, _state(100), 100)
    newer = checkpoint.save_checkpoint(logdir, _state(200), 200)
    return older, newer


def _offset_of(path: Path, tensor: torch.Tensor) -> int:
    found = path.read_bytes().find(tensor.numpy().tobytes()[:256])
    assert found > 0
    return found


def damage(path: Path, kind: str, tensor: torch.Tensor | None = None) -> None:
    """Damages ``path`` as a failing disk or a copy cut short would."""
    data = bytearray(path.read_bytes())
    if kind == "truncated":
        data = data[: int(len(data) * 0.7)]
    elif kind == "zero-bytes":
        data = bytearray()
    elif kind == "bit-flipped":  # one bit inside the weights' bytes
        data[_offset_of(path, tensor) + 1001] ^= 0x10
    elif kind == "zeroed-range":  # 4 KiB zeroed where tensor data lies
        at = _offset_of(path, tensor)
        data[at : at + 4096] = bytes(4096)
    else:
        raise ValueError(kind)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["truncated", "zero-bytes", "bit-flipped", "zeroed-range"])
def test_a_damaged_newest_checkpoint_is_found_moved_aside_and_the_previous_one_used(tmp_path, kind, caplog):
    older, newer = _write_two(tmp_path)
    damage(newer, kind, WEIGHTS + 200)
    with pytest.raises(DamagedCheckpoint):
        checkpoint_loading.load_checkpoint(newer)
    loaded = newest_readable(tmp_path, move_aside=True)
    assert loaded.path == older and loaded.state["frames"] == 100
    assert torch.equal(loaded.state["agent"]["model"]["w"], WEIGHTS + 100)
    assert not newer.exists() and newer.with_name(newer.name + ".damaged").exists()  # kept, never deleted
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and newer.name in warnings[0] and older.name in warnings[0]


def test_without_move_aside_the_damaged_file_stays_and_the_fallback_is_named(tmp_path, caplog):
    older, newer = _write_two(tmp_path)
    damage(newer, "zeroed-range", WEIGHTS + 200)
    assert newest_readable(tmp_path).path == older
    assert newer.exists() and f"using {older.name} instead" in caplog.text


def test_when_no_checkpoint_can_be_read_one_error_names_them_and_nothing_moves(tmp_path):
    older, newer = _write_two(tmp_path)
    damage(older, "truncated")
    damage(newer, "zero-bytes")
    with pytest.raises(NoReadableCheckpoint) as error:
        newest_readable(tmp_path, move_aside=True)
    message = str(error.value)
    assert "\n" not in message and older.name in message and newer.name in message and "--logdir" in message
    assert older.exists() and newer.exists()


def test_a_damaged_replay_falls_back_or_is_dropped_as_the_user_chose(tmp_path, caplog):
    older, newer = _write_two(tmp_path)
    damage(newer, "zeroed-range", torch.full((4096,), 200, dtype=torch.int32))
    assert newest_readable(tmp_path, "previous").path == older
    loaded = newest_readable(tmp_path, "empty")
    assert loaded.path == newer and loaded.replay_dropped and "data" not in loaded.state
    assert torch.equal(loaded.state["agent"]["model"]["w"], WEIGHTS + 200)  # the weights are never lost
    assert "starting the replay empty" in caplog.text


def test_damaged_weights_fall_back_whatever_the_replay_choice(tmp_path):
    older, newer = _write_two(tmp_path)
    damage(newer, "bit-flipped", WEIGHTS + 200)
    assert newest_readable(tmp_path, "empty").path == older


class RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def write_code_running_checkpoint(logdir: Path, marker: Path, frames: int = 300) -> Path:
    """A file named as a checkpoint whose pickle would create ``marker`` when loaded without restrictions."""
    path = checkpoint.checkpoint_dir(logdir) / f"ckpt-{frames:013d}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**_state(frames), "agent": RunsCode(marker)}, path)
    return path


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    _write_two(tmp_path)
    path = write_code_running_checkpoint(tmp_path, marker)
    with pytest.raises(UnsafeCheckpoint, match="names posix.system") as error:
        newest_readable(tmp_path, move_aside=True)
    assert "\n" not in str(error.value) and path.name in str(error.value)
    assert not marker.exists() and path.exists()  # refused, not mistaken for damage and moved aside


def test_checkpoints_written_before_digests_and_with_numpy_arrays_still_load(tmp_path):
    # What the project wrote before: torch.save of the state as it was, numpy arrays in the replay's sampling state.
    state = {**_state(50), "data": {"replay": {"priorities": np.linspace(0, 1, 8), "rng": {"state": np.arange(4)}}}}
    path = checkpoint.checkpoint_dir(tmp_path) / "ckpt-0000000000050.pt"
    checkpoint.write_atomically(path, lambda f: torch.save(state, f))
    loaded = newest_readable(tmp_path)
    assert loaded.path == path and loaded.state["frames"] == 50
    np.testing.assert_array_equal(loaded.state["data"]["replay"]["priorities"], np.linspace(0, 1, 8))


def test_digests_cover_plain_values_too(tmp_path):
    path = checkpoint.save_checkpoint(tmp_path, _state(100), 100)
    state, damaged = checkpoint_loading.read_checkpoint(path)
    assert damaged == []
    tampered = {**state, "frames": 101, "digests": with_digests(state)["digests"]}
    torch.save(tampered, path)
    assert checkpoint_loading.read_checkpoint(path)[1] == ["frames"]
