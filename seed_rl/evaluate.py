"""Evaluates a trained policy: ``python -m seed_rl.evaluate --logdir=DIR``.

Loads the newest checkpoint in ``DIR/checkpoints``, rebuilds the environment
and the agent's network from the run configuration stored in it, and plays
``--episodes`` episodes in one seeded environment. The recurrent state is
carried across steps and reset at episode starts exactly as on the learner's
inference path: each step's ``done`` flag marks an observation that starts an
episode. IMPALA samples from its policy, as while training; R2D2 acts
epsilon-greedily with ``--epsilon`` (0.001 as in SEED RL's R2D2 evaluation,
0 for greedy). Returns are the environment's raw rewards summed per episode.
Prints one line per episode and a summary, writes them as JSON to ``--output``
(default ``DIR/evaluation.json``) and, with ``--video=PATH``, an MP4 of the
first episode (needs ``pip install 'seed_rl[video]'``).
"""

from __future__ import annotations

import argparse
import colorsys
import json
import math
import os
import statistics
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import gymnasium
import numpy as np
import torch

from seed_rl import exits
from seed_rl.exits import first_line
from seed_rl.agents import registry
from seed_rl.learner import checkpoint
from seed_rl.learner.run_config import InvalidCheckpoint, RunConfig
from seed_rl.core.agent import ActInputs, Agent
from seed_rl.envs import EnvConfig, EnvError, env_spec, make_env
from seed_rl.envs.factory import frames_per_step
from seed_rl.envs.families import parse_env_name

VIDEO_HINT = "pip install 'seed_rl[video]'"
MIN_VIDEO_SIDE = 160  # small frames (MinAtar's 10x10) are scaled up by an integer factor to at least this
DEFAULT_VIDEO_FPS = 30


class EvaluationError(Exception):
    """A problem the user can fix; the message is one line."""


@dataclass
class LoadedRun:
    """A trained agent and what is needed to rebuild its environment."""

    agent: Agent
    agent_name: str
    env_name: str
    env_config: EnvConfig
    checkpoint: Path
    frames: int  # environment frames the checkpoint was trained on


@dataclass
class Episode:
    episode_return: float
    steps: int


def _read_checkpoint(logdir: Path, device: torch.device) -> tuple[Path, dict]:
    if not logdir.is_dir():
        raise EvaluationError(f"no such logdir {logdir}")
    path = checkpoint.latest_checkpoint(logdir)
    if path is None:
        raise EvaluationError(
            f"no checkpoint in {checkpoint.checkpoint_dir(logdir)}; "
            f"train first with python -m seed_rl.train --logdir={logdir}"
        )
    try:
        return path, checkpoint.load_checkpoint(path, device)
    except Exception as e:  # a truncated file, a foreign pickle, ...
        raise EvaluationError(f"{path} is not a seed_rl checkpoint: {first_line(e)}") from None


def load_run(
    logdir: str | os.PathLike, seed: int = 0, device: str = "cpu", epsilon: float = 0.001
) -> tuple[LoadedRun, gymnasium.Env]:
    """Loads the newest checkpoint in ``logdir``: the agent with its trained weights and a fresh env.

    ``epsilon`` is R2D2's exploration rate while evaluating (IMPALA ignores it).

    Raises:
      EvaluationError: no logdir or checkpoint, a foreign file, an unknown agent, weights that do not fit.
      EnvError: the environment cannot be built.
    """
    torch_device = torch.device(device)
    path, state = _read_checkpoint(Path(logdir), torch_device)
    try:
        run_config = RunConfig.from_checkpoint(state, path)
    except InvalidCheckpoint as e:
        raise EvaluationError(str(e)) from None
    env = make_env(run_config.env, seed, run_config.env_config)
    try:
        spec = env_spec(env)
        try:
            agent = registry.builder(run_config.agent).build_for_evaluation(
                run_config.agent_config, spec, torch_device, epsilon
            )
            agent.load_for_evaluation(state["agent"])
        except KeyError:  # an agent state without the weights
            raise EvaluationError(
                f"{path} is not a seed_rl checkpoint (it lacks the agent, frames or run_config it should hold)"
            ) from None
        except (TypeError, ValueError, RuntimeError) as e:  # a config the agent rejects, weights of another shape
            raise EvaluationError(f"cannot rebuild the agent of {path}: {first_line(e)}") from None
    except BaseException:
        env.close()
        raise
    run = LoadedRun(agent, run_config.agent, run_config.env, run_config.env_config, path, state["frames"])
    return run, env


def play(
    agent: Agent,
    env: gymnasium.Env,
    episodes: int,
    seed: int,
    on_episode: Callable[[int, Episode], None] | None = None,
    on_observation: Callable[[np.ndarray], None] | None = None,
) -> list[Episode]:
    """Plays ``episodes`` episodes of ``env`` with ``agent``, as the learner's inference acts.

    The first reset is seeded with ``seed``. Each step gives the agent the
    observation with the reward and done flag it arrived with (``done``: the
    observation starts an episode), so recurrent state resets inside the agent
    where it does during training. ``on_observation`` sees every observation of
    the first episode, the final one included.
    """
    device = agent.device
    core_state = tuple(s.to(device) for s in agent.initial_core_state(1))
    env_index = torch.zeros(1, dtype=torch.int64, device=device)
    observation, _ = env.reset(seed=seed)
    reward, done = 0.0, True
    results: list[Episode] = []
    episode_return, steps = 0.0, 0
    while len(results) < episodes:
        if on_observation is not None and not results:
            on_observation(observation)
        inputs = ActInputs(
            torch.from_numpy(np.asarray(observation)[None]).to(device),
            torch.tensor([reward], dtype=torch.float32, device=device),
            torch.tensor([done], dtype=torch.bool, device=device),
            env_index,
        )
        result = agent.act(inputs, core_state)
        core_state = result.core_state
        observation, reward, terminated, truncated, _ = env.step(int(result.action[0]))
        reward = float(reward)
        episode_return += reward
        steps += 1
        done = bool(terminated or truncated)
        if done:
            if on_observation is not None and not results:
                on_observation(observation)
            results.append(Episode(episode_return, steps))
            if on_episode is not None:
                on_episode(len(results), results[-1])
            episode_return, steps = 0.0, 0
            if len(results) < episodes:
                observation, _ = env.reset()
    return results


def observation_frame(observation: np.ndarray, layout: str | None = None) -> np.ndarray | None:
    """An ``[H, W, 3]`` uint8 picture of a channel-first image observation, or None for vectors.

    ``layout``: ``"rgb"`` (stacked RGB frames: the last 3 channels), ``"gray"``
    (stacked gray frames: the last channel) or ``"planes"`` (one object kind per
    channel, as MinAtar's: each drawn in its own hue). None: ``"rgb"`` for 3
    uint8 channels, ``"gray"`` for other uint8 images, ``"planes"`` for floats.
    """
    planes = np.asarray(observation)
    if planes.ndim == 2:
        planes = planes[None]
    if planes.ndim != 3:
        return None
    channels = planes.shape[0]
    if layout is None:
        layout = "planes" if planes.dtype != np.uint8 else "rgb" if channels == 3 else "gray"
    if layout == "rgb" and channels % 3 == 0:
        return np.ascontiguousarray(planes[-3:].transpose(1, 2, 0)).astype(np.uint8)
    if layout != "planes":
        return np.repeat(planes[-1][:, :, None], 3, axis=2).astype(np.uint8)
    values = planes / 255.0 if planes.dtype == np.uint8 else np.nan_to_num(planes.astype(np.float32))
    values = np.clip(values, 0.0, 1.0)
    if channels == 1:
        colours = np.ones((1, 3), np.float32)
    else:
        colours = np.array([colorsys.hsv_to_rgb(c / channels, 1.0, 1.0) for c in range(channels)], np.float32)
    picture = (values[:, :, :, None] * colours[:, None, None, :]).max(axis=0)
    return (picture * 255).round().astype(np.uint8)


def _as_uint8(frame: np.ndarray) -> np.ndarray:
    """RGB frames as uint8; float ones (MinAtar renders colours in [0, 1]) are scaled from [0, 1]."""
    frame = np.asarray(frame)
    if np.issubdtype(frame.dtype, np.floating):
        return (np.clip(np.nan_to_num(frame), 0.0, 1.0) * 255).round().astype(np.uint8)
    return frame.astype(np.uint8)


def video_frame(frame: np.ndarray) -> np.ndarray:
    """Scales ``frame`` up by nearest neighbour to at least MIN_VIDEO_SIDE and pads it to even sides (H.264)."""
    height, width = frame.shape[:2]
    scale = max(1, math.ceil(MIN_VIDEO_SIDE / min(height, width)))
    frame = frame.repeat(scale, axis=0).repeat(scale, axis=1)
    return np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)))


def _can_render_rgb(env: gymnasium.Env) -> tuple[bool, str]:
    """Turns on ``rgb_array`` rendering where the env offers it; (True, "") if ``env.render()`` then gives frames.

    Else (False, why not). Call after ``env.reset``. ``make_env`` builds envs
    without a render mode; the mode only selects what ``render()`` returns, not the dynamics.
    """
    base = env.unwrapped
    switched = False
    if env.render_mode != "rgb_array":
        if base.render_mode is not None or "rgb_array" not in base.metadata.get("render_modes", ()):
            return False, "it renders no rgb_array frames"
        base.render_mode, switched = "rgb_array", True
    try:
        with warnings.catch_warnings():  # gymnasium's checker on a first render: fps, dtype
            warnings.simplefilter("ignore")
            frame, why = env.render(), "its render() gave no RGB frame"
    except Exception as e:  # e.g. CartPole without pygame
        frame, why = None, f"its rgb_array rendering failed ({first_line(e)})"
    if isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3:
        return True, ""
    if switched:
        base.render_mode = None
    return False, why


class VideoRecorder:
    """Writes the frames of one episode to an MP4 with imageio-ffmpeg."""

    def __init__(self, path: Path, env: gymnasium.Env, env_name: str, config: EnvConfig, observation: np.ndarray):
        self.path = path
        self.env = env
        self.render, why = _can_render_rgb(env)
        self.layout = parse_env_name(env_name)[0].observation_layout(config)
        if not self.render and observation_frame(observation, self.layout) is None:
            raise EvaluationError(
                f"cannot record a video of {env_name}: {why} and its observations of shape "
                f"{np.shape(observation)} are not images"
            )
        import imageio.v2 as imageio

        fps = env.metadata.get("render_fps") if self.render else None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = imageio.get_writer(
                path, format="FFMPEG", fps=fps or DEFAULT_VIDEO_FPS, codec="libx264", macro_block_size=2
            )
        except Exception as e:
            raise EvaluationError(f"cannot write the video {path}: {first_line(e)}") from None

    def add(self, observation: np.ndarray) -> None:
        frame = self.env.render() if self.render else observation_frame(observation, self.layout)
        try:
            self._writer.append_data(video_frame(_as_uint8(frame)))
        except Exception as e:  # ffmpeg died: a full disk, a path it cannot write
            raise EvaluationError(f"cannot write the video {self.path}: {first_line(e)}") from None

    def close(self) -> None:
        try:
            self._writer.close()
        except Exception as e:
            raise EvaluationError(f"cannot write the video {self.path}: {first_line(e)}") from None


def summarize(run: LoadedRun, episodes: list[Episode], seed: int, epsilon: float, video: Path | None) -> dict:
    returns = [e.episode_return for e in episodes]
    steps = sum(e.steps for e in episodes)
    return {
        "checkpoint": str(run.checkpoint),
        "checkpoint_frames": run.frames,
        "agent": run.agent_name,
        "env": run.env_name,
        "seed": seed,
        "epsilon": epsilon if run.agent_name == "r2d2" else None,
        "episodes": len(episodes),
        "steps": steps,
        "frames": steps * frames_per_step(run.env_name, run.env_config),
        "mean_return": statistics.fmean(returns),
        "median_return": statistics.median(returns),
        "min_return": min(returns),
        "max_return": max(returns),
        "returns": returns,
        "lengths": [e.steps for e in episodes],
        "video": str(video) if video else None,
    }


def write_json_atomic(path: Path, data: dict) -> None:
    """Writes ``data`` as JSON to ``path`` atomically (a torn file is never left behind)."""
    checkpoint.write_atomically(path, lambda f: f.write((json.dumps(data, indent=2) + "\n").encode()))


def evaluate(args: argparse.Namespace) -> dict:
    """Runs an evaluation as the command line asks; returns the summary it wrote."""
    if args.episodes < 1:
        raise EvaluationError(f"--episodes must be >= 1, got {args.episodes}")
    if not 0.0 <= args.epsilon <= 1.0:
        raise EvaluationError(f"--epsilon must be in [0, 1], got {args.epsilon}")
    video_path = Path(args.video) if args.video else None
    if video_path is not None:
        try:
            import imageio.v2  # noqa: F401
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise EvaluationError(f"--video needs imageio and imageio-ffmpeg: {VIDEO_HINT}") from None
    try:
        device = torch.device(args.device)
    except RuntimeError as e:
        raise EvaluationError(f"bad --device={args.device}: {first_line(e)}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EvaluationError(f"--device={args.device}, but torch sees no CUDA device here; use --device=cpu")
    torch.manual_seed(args.seed)
    run, env = load_run(args.logdir, args.seed, str(device), args.epsilon)
    recorder: VideoRecorder | None = None
    try:
        def on_observation(observation: np.ndarray) -> None:
            nonlocal recorder
            if recorder is None:
                recorder = VideoRecorder(video_path, env, run.env_name, run.env_config, observation)
            recorder.add(observation)

        def on_episode(index: int, episode: Episode) -> None:
            nonlocal recorder
            if recorder is not None:
                finished, recorder = recorder, None
                finished.close()
            print(f"episode {index}: return {episode.episode_return:g}, {episode.steps} steps", flush=True)

        print(f"evaluating {run.checkpoint} ({run.agent_name} on {run.env_name}, {run.frames} frames trained)",
              flush=True)
        episodes = play(
            run.agent, env, args.episodes, args.seed, on_episode, on_observation if video_path is not None else None
        )
    finally:
        if recorder is not None:
            recorder.close()
        env.close()
    summary = summarize(run, episodes, args.seed, args.epsilon, video_path)
    output = Path(args.output) if args.output else Path(args.logdir) / "evaluation.json"
    write_json_atomic(output, summary)
    print(
        f"{summary['episodes']} episodes, {summary['frames']} frames: return mean {summary['mean_return']:g}, "
        f"median {summary['median_return']:g}, min {summary['min_return']:g}, max {summary['max_return']:g}; "
        f"checkpoint {run.checkpoint} at {run.frames} training frames; wrote {output}"
        + (f" and {video_path}" if video_path else "")
    )
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = exits.ArgumentParser(
        prog="python -m seed_rl.evaluate", description="Evaluate the newest checkpoint of a training run."
    )
    parser.add_argument("--logdir", required=True, help="the training run's --logdir")
    parser.add_argument("--episodes", type=int, default=10, help="episodes to play (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the environment and the action sampling")
    parser.add_argument(
        "--epsilon", type=float, default=0.001,
        help="R2D2's exploration rate (SEED RL's R2D2 evaluation: 0.001); 0: greedy; IMPALA samples its policy",
    )
    parser.add_argument("--video", default=None, help=f"write an MP4 of the first episode here ({VIDEO_HINT})")
    parser.add_argument("--output", default=None, help="JSON summary; default LOGDIR/evaluation.json")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ...")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        evaluate(args)
    except (EvaluationError, EnvError, OSError) as e:
        exits.fail(first_line(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
