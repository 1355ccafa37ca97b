"""``python -m seed_rl.evaluate`` on real checkpoints written by ``python -m seed_rl.train``."""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from any_env_helpers import TESTS, train_with_tests_on_path
from train_helpers import ROOT, run_train
from seed_rl.evaluation import loading
from seed_rl.evaluation.video import observation_frame, video_frame
from seed_rl.evaluation.play import play
from seed_rl.learner import checkpoint, checkpoint_loading
from seed_rl.core.agent import ActInputs, ActResult
from seed_rl.envs import make_env

IMPALA_FLAGS = ("--env=CartPole-v1", "--agent=impala", "--num_actors=1", "--envs_per_actor=2",
                "--unroll_length=5", "--batch_size=2", "--total_environment_frames=2000")
R2D2_FLAGS = ("--env=CartPole-v1", "--agent=r2d2", "--num_actors=1", "--envs_per_actor=4", "--lstm_size=64",
              "--head_size=64", "--unroll_length=20", "--burn_in=10", "--sequence_period=10",
              "--min_replay_size=10", "--batch_size=4", "--total_environment_frames=3000")


def run_evaluate(*flags: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "seed_rl.evaluate", *flags], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=env)


def trained(logdir: Path, *flags: str, on_tests_path: bool = False) -> Path:
    result = (train_with_tests_on_path if on_tests_path else run_train)(logdir, *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    assert checkpoint.latest_checkpoint(logdir) is not None
    return logdir


@pytest.fixture(scope="module")
def impala_run(tmp_path_factory) -> Path:
    return trained(tmp_path_factory.mktemp("impala"), *IMPALA_FLAGS)


@pytest.fixture(scope="module")
def r2d2_run(tmp_path_factory) -> Path:
    return trained(tmp_path_factory.mktemp("r2d2"), *R2D2_FLAGS)


def check_summary(result: subprocess.CompletedProcess, path: Path, episodes: int) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    summary = json.loads(path.read_text())
    returns = summary["returns"]
    assert summary["episodes"] == len(returns) == episodes
    assert summary["mean_return"] == pytest.approx(statistics.fmean(returns))
    assert summary["median_return"] == pytest.approx(statistics.median(returns))
    assert (summary["min_return"], summary["max_return"]) == (min(returns), max(returns))
    assert summary["frames"] == sum(summary["lengths"])  # CartPole: one frame per step
    assert len([line for line in result.stdout.splitlines() if line.startswith("episode ")]) == episodes
    return summary


def test_impala_checkpoint_is_evaluated(impala_run):
    result = run_evaluate(f"--logdir={impala_run}", "--episodes=4", "--seed=1")
    summary = check_summary(result, impala_run / "evaluation.json", 4)
    assert all(8 <= r <= 500 for r in summary["returns"]), summary["returns"]
    assert summary["returns"] == [float(n) for n in summary["lengths"]]  # CartPole: +1 per step
    assert summary["checkpoint_frames"] == 2000
    assert summary["checkpoint"] == str(checkpoint.latest_checkpoint(impala_run))
    assert (summary["agent"], summary["env"], summary["epsilon"]) == ("impala", "CartPole-v1", None)


def test_r2d2_greedy_evaluation_repeats_exactly(r2d2_run, tmp_path):
    runs = []
    for i in range(2):
        output = tmp_path / f"eval{i}.json"
        result = run_evaluate(f"--logdir={r2d2_run}", "--episodes=3", "--epsilon=0", "--seed=5", f"--output={output}")
        runs.append(check_summary(result, output, 3))
    assert runs[0]["returns"] == runs[1]["returns"]
    assert all(8 <= r <= 500 for r in runs[0]["returns"]), runs[0]["returns"]
    assert runs[0]["epsilon"] == 0.0 and runs[0]["checkpoint_frames"] == 3000
    assert not (r2d2_run / "evaluation.json").exists()


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_missing_logdir_is_one_error_line(tmp_path):
    line = _one_error_line(run_evaluate(f"--logdir={tmp_path / 'nowhere'}"))
    assert "no such logdir" in line


def test_bad_command_line_is_one_error_line():
    assert "--logdir" in _one_error_line(run_evaluate())
    assert "--episodes" in _one_error_line(run_evaluate("--logdir=x", "--episodes=ten"))


def test_empty_logdir_is_one_error_line(tmp_path):
    line = _one_error_line(run_evaluate(f"--logdir={tmp_path}"))
    assert f"no checkpoint in {tmp_path / 'checkpoints'}" in line
    assert f"python -m seed_rl.train --logdir={tmp_path}" in line


@pytest.mark.parametrize("content", ["foreign_dict", "garbage"])
def test_foreign_file_is_one_error_line(tmp_path, content):
    path = tmp_path / "checkpoints" / "ckpt-0000000000001.pt"
    path.parent.mkdir()
    if content == "foreign_dict":
        torch.save({"model": {"weight": torch.zeros(3)}, "epoch": 4}, path)
    else:
        path.write_bytes(b"not a pickle at all")
    line = _one_error_line(run_evaluate(f"--logdir={tmp_path}"))
    assert ("not a seed_rl checkpoint" if content == "foreign_dict" else "is damaged or not a checkpoint") in line


def _rewritten(source: Path, logdir: Path, edit) -> Path:
    """Copies the newest checkpoint of ``source`` into ``logdir`` after ``edit(state)``."""
    state = checkpoint_loading.load_checkpoint(checkpoint.latest_checkpoint(source))
    edit(state)
    checkpoint.save_checkpoint(logdir, state, state["frames"])
    return logdir


def test_unknown_agent_and_unbuildable_env_are_one_error_line(impala_run, tmp_path):
    unknown_agent = _rewritten(impala_run, tmp_path / "a", lambda s: s["run_config"].update(agent="dqn"))
    assert "'dqn'" in _one_error_line(run_evaluate(f"--logdir={unknown_agent}"))
    bad_env = _rewritten(impala_run, tmp_path / "e", lambda s: s["run_config"].update(env="CartPoel-v1"))
    assert "unknown environment id 'CartPoel-v1'" in _one_error_line(run_evaluate(f"--logdir={bad_env}"))


def _fixed_action_returns(action: int, episodes: int, seed: int) -> list[float]:
    """CartPole returns of always pushing ``action``, with the evaluator's seeding."""
    env = make_env("CartPole-v1", seed)
    env.reset(seed=seed)
    returns = []
    for _ in range(episodes):
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(action)
            total, done = total + reward, terminated or truncated
        returns.append(total)
        env.reset()
    return returns


@pytest.mark.parametrize("action", [0, 1])
def test_the_stored_weights_choose_the_actions(impala_run, tmp_path, action):
    """A checkpoint whose policy head is rewritten to always pick ``action`` plays exactly that policy."""
    def always(state):
        model = state["agent"]["model"]
        model["policy.weight"].zero_()
        model["policy.bias"].copy_(torch.tensor([50.0, -50.0] if action == 0 else [-50.0, 50.0]))

    logdir = _rewritten(impala_run, tmp_path, always)
    run, env = loading.load_run(logdir, seed=2)
    stored = checkpoint_loading.load_checkpoint(checkpoint.latest_checkpoint(logdir))["agent"]["model"]
    for name, tensor in run.agent.model.state_dict().items():
        assert torch.equal(tensor, stored[name]), name
    returns = [e.episode_return for e in play(run.agent, env, 3, seed=2)]
    env.close()
    assert returns == _fixed_action_returns(action, 3, seed=2)
    result = run_evaluate(f"--logdir={logdir}", "--episodes=3", "--seed=2")
    assert check_summary(result, logdir / "evaluation.json", 3)["returns"] == returns


class RecordingAgent:
    """Records what ``act`` is given; its state counts the steps since ``done``, like a recurrent core."""

    device = torch.device("cpu")

    def __init__(self):
        self.calls: list[tuple[bool, float, int]] = []  # (done, reward, state before the step)

    def initial_core_state(self, batch_size: int):
        return (torch.zeros(batch_size, dtype=torch.int64),)

    def act(self, inputs: ActInputs, core_state) -> ActResult:
        (count,) = core_state
        self.calls.append((bool(inputs.done[0]), float(inputs.reward[0]), int(count[0])))
        count = torch.where(inputs.done, torch.zeros_like(count), count) + 1
        return ActResult(torch.zeros(1, dtype=torch.int64), {}, (count,))


def test_play_feeds_done_reward_and_state_as_the_learner_does():
    import odd_envs  # noqa: F401  (registers the Odd* envs)

    env = make_env("odd_envs:OddVector1-v0", 0)  # 10-step episodes, reward 1 when action 0 is the target
    agent = RecordingAgent()
    episodes = play(agent, env, 2, seed=0)
    assert [e.steps for e in episodes] == [10, 10]
    done = [c[0] for c in agent.calls]
    assert done == [True] + [False] * 9 + [True] + [False] * 9
    assert [c[2] for c in agent.calls] == [0, *range(1, 10), 10, *range(1, 10)]  # kept across steps
    rewards = [c[1] for c in agent.calls]
    assert rewards[0] == 0.0
    assert sum(rewards[1:11]) == episodes[0].episode_return  # the last reward arrives with the next start
    env.close()


@pytest.mark.skipif(importlib.util.find_spec("imageio_ffmpeg") is None, reason="imageio-ffmpeg is not installed")
def test_video_of_the_first_episode(tmp_path):
    # Tiny 1x9x13 uint8 images: the video is made from the observations, scaled up.
    logdir = trained(tmp_path / "run", "--env=odd_envs:OddGrayImage-v0", "--agent=impala", "--num_actors=1",
                     "--envs_per_actor=2", "--unroll_length=5", "--batch_size=2",
                     "--total_environment_frames=200", on_tests_path=True)
    video = tmp_path / "video" / "first.mp4"
    result = run_evaluate(f"--logdir={logdir}", "--episodes=2", f"--video={video}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert video.stat().st_size > 0
    assert json.loads((logdir / "evaluation.json").read_text())["video"] == str(video)
    import imageio.v2 as imageio

    frames = [frame for frame in imageio.get_reader(video)]
    assert len(frames) == 11  # the first observation and one per step of the 10-step episode
    assert frames[0].shape == (9 * 18, 13 * 18, 3)  # nearest-neighbour x18: the short side reaches 160


def test_video_of_vector_observations_without_rendering_is_one_error_line(impala_run, tmp_path):
    if importlib.util.find_spec("imageio_ffmpeg") is None:
        line = _one_error_line(run_evaluate(f"--logdir={impala_run}", f"--video={tmp_path / 'v.mp4'}"))
        assert f"{sys.executable} -m pip install 'seed_rl[video]'" in line
        return
    if importlib.util.find_spec("pygame") is not None:
        pytest.skip("CartPole renders with pygame here")
    line = _one_error_line(run_evaluate(f"--logdir={impala_run}", f"--video={tmp_path / 'v.mp4'}"))
    assert "cannot record a video of CartPole-v1" in line


def test_observation_frames():
    gray_stack = np.arange(4 * 84 * 84, dtype=np.uint8).reshape(4, 84, 84)
    frame = observation_frame(gray_stack, "gray")
    assert frame.shape == (84, 84, 3) and np.array_equal(frame[:, :, 1], gray_stack[-1])
    rgb_stack = np.random.default_rng(0).integers(0, 256, (12, 84, 84), dtype=np.uint8)
    assert np.array_equal(observation_frame(rgb_stack, "rgb"), rgb_stack[-3:].transpose(1, 2, 0))
    assert np.array_equal(observation_frame(rgb_stack[:3]), rgb_stack[:3].transpose(1, 2, 0))
    for planes in (np.zeros((4, 10, 10), np.float32), np.zeros((4, 10, 10), np.uint8)):  # MinAtar-like
        planes[2, 3, 4] = 1.0 if planes.dtype == np.float32 else 255
        planes[0, 5, 6] = planes[2, 3, 4]
        frame = observation_frame(planes, "planes" if planes.dtype == np.uint8 else None)
        assert frame.shape == (10, 10, 3) and frame.sum() == frame[3, 4].sum() + frame[5, 6].sum()
        assert frame[3, 4].any() and frame[5, 6].any() and not np.array_equal(frame[3, 4], frame[5, 6])
    assert observation_frame(np.zeros(4, np.float32)) is None
    big = video_frame(frame)
    assert big.shape == (160, 160, 3) and np.array_equal(big[::16, ::16], frame)
    assert video_frame(np.zeros((161, 201, 3), np.uint8)).shape == (162, 202, 3)  # even sides for H.264


def test_missing_video_packages_name_this_interpreters_pip(monkeypatch):
    from seed_rl.evaluation.errors import EvaluationError
    from seed_rl.evaluation.video import require_video_packages

    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    with pytest.raises(EvaluationError) as info:
        require_video_packages()
    assert f"{sys.executable} -m pip install 'seed_rl[video]'" in str(info.value)
