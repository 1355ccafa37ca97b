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
first episode (needs the ``video`` extra: ``pip install 'seed_rl[video]'``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

from seed_rl import exits
from seed_rl.agents import registry
from seed_rl.envs import EnvError
from seed_rl.envs.factory import frames_per_step
from seed_rl.evaluation.errors import EvaluationError
from seed_rl.evaluation.loading import LoadedRun, load_run
from seed_rl.evaluation.play import Episode, play
from seed_rl.evaluation.video import VIDEO_HINT, VideoRecorder, require_video_packages
from seed_rl.exits import first_line
from seed_rl.learner import checkpoint


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
        require_video_packages()
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
            run.agent, env, args.episodes, args.seed, on_episode, on_observation if video_path is not None else None,
            life_loss_ends_episode=registry.builder(run.agent_name).unroll_shape(run.agent_config).life_loss_ends_episode,
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
