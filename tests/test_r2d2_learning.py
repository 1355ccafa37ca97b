"""R2D2 learning runs through ``python -m seed_rl.train`` with real actor processes."""

from __future__ import annotations

import os

import pytest

from train_helpers import ROOT, read_metrics, run_train

# A small, fast configuration for runs that check plumbing, not learning.
SMALL_R2D2 = (
    "--agent=r2d2",
    "--lstm_size=64",
    "--head_size=64",
    "--unroll_length=20",
    "--burn_in=10",
    "--sequence_period=10",
    "--seed=1",
)


def _returns(logdir, min_episodes: int = 100) -> list[float]:
    """100-episode mean returns, from the first summary that has 100 episodes behind it."""
    return [m["episode_return_mean"] for m in read_metrics(logdir) if m["episodes"] >= min_episodes]


@pytest.mark.slow
def test_r2d2_solves_the_memory_task(tmp_path, monkeypatch):
    # The cue is visible only at the first step, the question 7 steps later; a
    # memoryless policy scores 0 in expectation (+1/-1 at chance). Over 100
    # episodes chance gives a mean within about +-0.3 (3 standard deviations).
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    # The vector-family preset (seed_rl/config/presets.py), nothing but the budget.
    result = run_train(tmp_path, "--agent=r2d2", "--env=memory_env:MemoryCue-v0",
                       "--total_environment_frames=100000", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    returns = _returns(tmp_path)
    assert abs(returns[0]) < 0.5, returns
    assert max(returns) >= 0.8, f"best 100-episode mean {max(returns):.2f}; curve {returns}"


@pytest.mark.slow
def test_r2d2_learns_cartpole(tmp_path):
    # Nothing but the budget: the vector-family preset that every user gets
    # (seed_rl/config/presets.py). On 2 CPU cores it passed 400 at ~270k frames.
    result = run_train(tmp_path, "--agent=r2d2", "--env=CartPole-v1",
                       "--total_environment_frames=400000", timeout=1100)
    assert result.returncode == 0, result.stderr[-3000:]
    returns = _returns(tmp_path)
    assert returns[0] < 100
    assert max(returns) >= 400, f"best 100-episode mean {max(returns):.1f}; curve {returns}"


def test_r2d2_checkpoint_holds_the_replay_and_resume_restores_it(tmp_path):
    from seed_rl.learner import checkpoint, checkpoint_loading

    flags = (*SMALL_R2D2, "--env=CartPole-v1", "--min_replay_size=10", "--batch_size=4", "--num_actors=1",
             "--envs_per_actor=4")
    first = run_train(tmp_path, *flags, "--total_environment_frames=3000", timeout=180)
    assert first.returncode == 0, first.stderr[-3000:]
    state = checkpoint_loading.load_checkpoint(checkpoint.latest_checkpoint(tmp_path))
    stored = len(state["data"]["replay"]["sequences"]["record_offsets"])
    assert stored >= 10
    second = run_train(tmp_path, *flags, "--total_environment_frames=4000", timeout=180)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"replay holds {stored} sequences" in second.stderr
