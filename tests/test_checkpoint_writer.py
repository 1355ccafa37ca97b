"""Checkpoints are written off the training path, from a snapshot training cannot change."""

from __future__ import annotations

import threading

import pytest
import torch

from seed_rl.learner import checkpoint, checkpoint_loading


def test_training_goes_on_while_a_checkpoint_is_written_and_the_file_holds_the_snapshot(tmp_path, monkeypatch):
    release, writing = threading.Event(), threading.Event()
    real_save = torch.save

    def slow_save(obj, f):
        writing.set()
        release.wait(10)  # a large replay being written
        real_save(obj, f)

    monkeypatch.setattr(checkpoint.torch, "save", slow_save)
    weights = {"w": torch.zeros(3)}
    writer = checkpoint.CheckpointWriter(tmp_path)
    assert writer.save({"agent": checkpoint.detached_copy(weights)}, frames=100)
    assert writing.wait(10)
    weights["w"] += 1.0  # training goes on meanwhile
    assert writer.busy()
    assert not writer.save({"agent": checkpoint.detached_copy(weights)}, frames=200)  # one write at a time
    release.set()
    writer.wait()
    state = checkpoint_loading.load_checkpoint(checkpoint.latest_checkpoint(tmp_path))
    assert checkpoint.latest_checkpoint(tmp_path).name == "ckpt-0000000000100.pt"
    assert state["agent"]["w"].tolist() == [0.0, 0.0, 0.0]


def test_waiting_save_finishes_before_returning(tmp_path):
    writer = checkpoint.CheckpointWriter(tmp_path)
    writer.save({"x": torch.ones(2)}, frames=5, wait=True)
    assert not writer.busy()
    assert checkpoint_loading.load_checkpoint(checkpoint.latest_checkpoint(tmp_path))["x"].tolist() == [1.0, 1.0]


def test_a_failed_write_is_one_warning_leaves_no_partial_file_and_the_final_one_raises(tmp_path, monkeypatch, caplog):
    writer = checkpoint.CheckpointWriter(tmp_path)
    writer.save({"x": torch.zeros(2)}, frames=3, wait=True)
    real_save = torch.save

    def failing_save(obj, f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", failing_save)
    writer.save({"x": torch.ones(2)}, frames=7)
    writer.wait()  # a background write's failure is logged, not raised: training goes on
    assert [r.levelname for r in caplog.records if "could not write" in r.message] == ["WARNING"]
    assert "No space left on device" in caplog.text and "ckpt-0000000000003.pt" in caplog.text
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["ckpt-0000000000003.pt"]
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.suffix == ".tmp"]
    with pytest.raises(checkpoint.CheckpointWriteError, match="No space left on device"):
        writer.save({"x": torch.ones(2)}, frames=9, wait=True)  # the final checkpoint: an error for the caller
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    writer.save({"x": torch.ones(2)}, frames=11, wait=True)  # the next interval tries again
    assert checkpoint_loading.load_checkpoint(checkpoint.latest_checkpoint(tmp_path))["x"].tolist() == [1.0, 1.0]


def test_leftovers_of_an_interrupted_write_are_removed(tmp_path):
    writer = checkpoint.CheckpointWriter(tmp_path)
    writer.save({"x": torch.zeros(2)}, frames=3, wait=True)
    leftover = tmp_path / "checkpoints" / ".ckpt-0000000000005.pt.abc123.tmp"
    leftover.write_bytes(b"half a checkpoint")
    assert checkpoint.remove_unfinished_writes(tmp_path) == [leftover]
    assert not leftover.exists() and len(checkpoint.list_checkpoints(tmp_path)) == 1


def test_detached_copy_clones_tensors_in_nested_state():
    state = {"model": {"w": torch.ones(2)}, "optimizer": {"state": [torch.zeros(1)], "lr": 0.1}, "steps": (3,)}
    copy = checkpoint.detached_copy(state)
    state["model"]["w"] += 1
    state["optimizer"]["state"][0] += 1
    assert copy["model"]["w"].tolist() == [1.0, 1.0] and copy["optimizer"]["state"][0].tolist() == [0.0]
    assert copy["optimizer"]["lr"] == 0.1 and copy["steps"] == (3,)
