"""Is a trained IMPALA network still looking at its observations?

  .venv/bin/python tools/torso_health.py --logdir=runs/atari_Pong-impala [--steps=400]

Loads the newest checkpoint (as ``seed_rl.evaluate`` does), plays ``--steps``
steps of one environment with the trained policy, and prints, over those
observations:
- how many of the torso's convolutional outputs and features are ever positive
  (ReLU units that are never positive get no gradient again: they are dead);
- how much the value and the action probabilities vary between states. A
  torso whose features no longer change with the observation gives the same
  value and policy everywhere, and the agent cannot learn.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from seed_rl.agents.impala.diagnostics import torso_health
from seed_rl.core.agent import ActInputs
from seed_rl.envs.errors import EnvError
from seed_rl.evaluation.errors import EvaluationError
from seed_rl.evaluation.loading import load_run
from seed_rl.agents.frame_stacking import FrameStackingAgent
from seed_rl.core.frame_stack import stack_frames


def collect_observations(agent, env, steps: int, seed: int) -> torch.Tensor:
    """The observations the network saw over ``steps`` steps: stacked where the learner stacks frames."""
    observations = []
    observation, _ = env.reset(seed=seed)
    state = agent.initial_core_state(1)
    reward, done = 0.0, True
    for _ in range(steps):
        inputs = ActInputs(torch.from_numpy(np.asarray(observation)[None]), torch.tensor([reward]),
                           torch.tensor([done]), torch.zeros(1, dtype=torch.int64))
        seen = inputs.observation
        if isinstance(agent, FrameStackingAgent):
            seen = stack_frames(state[0], seen[None], inputs.done[None])[0][0]
        observations.append(seen[0].numpy())
        result = agent.act(inputs, state)
        state = result.core_state
        observation, reward, terminated, truncated, _ = env.step(int(result.action[0]))
        done = terminated or truncated
        if done:
            observation, _ = env.reset()
    return torch.from_numpy(np.stack(observations))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logdir", required=True)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        run, env = load_run(args.logdir, seed=args.seed)
    except (EvaluationError, EnvError, OSError) as e:
        raise SystemExit(f"error: {e}") from None
    if run.agent_name != "impala":
        raise SystemExit(f"error: {args.logdir} holds a {run.agent_name} run; this tool reads IMPALA networks")
    observations = collect_observations(run.agent, env, args.steps, args.seed)
    print(f"{run.checkpoint} ({run.frames:,} frames), {args.steps} steps of {run.env_name}:")
    for name, value in torso_health(run.agent, observations).items():
        print(f"  {name}: {value:.4g}")


if __name__ == "__main__":
    main()
