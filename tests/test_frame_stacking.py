"""Frames stacked on the learner equal the stacks gymnasium's FrameStackObservation built on the actors.

The reference is the old actor-side pipeline: the environment wrapped in
``FrameStackObservation`` (stack axis merged into the first frame axis), reset
whenever an episode ends, as ``EnvGroup`` does. The learner side gets the same
single frames with their ``done`` flags.
"""

from __future__ import annotations

import threading

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium import spaces

from seed_rl.agents import registry
from seed_rl.agents.impala.config import ImpalaConfig
from seed_rl.agents.r2d2.config import R2D2Config
from seed_rl.core.frame_stack import stack_frames
from seed_rl.core.step import StepRequest
from seed_rl.envs import EnvConfig, EnvSpec, make_env
from seed_rl.learner.inference import InferenceEngine


class RandomFrames(gymnasium.Env):
    """Random uint8 frames; episodes end at random (about every ``mean_length`` steps)."""

    def __init__(self, shape=(2, 5, 4), mean_length=7, seed=0):
        self.observation_space = spaces.Box(0, 255, shape, np.uint8)
        self.action_space = spaces.Discrete(3)
        self._rng = np.random.default_rng(seed)
        self._mean_length = mean_length

    def _frame(self):
        return self._rng.integers(0, 256, self.observation_space.shape, dtype=np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._frame(), {}

    def step(self, action):
        return self._frame(), 0.0, bool(self._rng.random() < 1 / self._mean_length), False, {}


def merged(stack: np.ndarray) -> np.ndarray:
    """FrameStackObservation's ``(S, *frame)`` as the network saw it: ``(S * frame[0], *frame[1:])``."""
    return stack.reshape(stack.shape[0] * stack.shape[1], *stack.shape[2:])


def play(env: gymnasium.Env, frame_stack: int, steps: int, seed: int = 0):
    """Single frames, done flags and the actor-side reference stacks of ``steps`` steps of ``env``."""
    stacked_env = gymnasium.wrappers.FrameStackObservation(env, stack_size=frame_stack)
    frames, dones, reference = [], [], []
    stack, _ = stacked_env.reset(seed=seed)
    done = True
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        frames.append(np.asarray(stack[-1]))
        dones.append(done)
        reference.append(merged(np.asarray(stack)))
        stack, _, terminated, truncated, _ = stacked_env.step(int(rng.integers(env.action_space.n)))
        done = terminated or truncated
        if done:
            stack, _ = stacked_env.reset()
    return np.stack(frames), np.array(dones), np.stack(reference)


@pytest.mark.parametrize("frame_stack", [2, 4])
def test_stacks_equal_the_actor_side_stacks_across_episodes_and_calls(frame_stack):
    envs = [RandomFrames(seed=s) for s in range(3)]
    runs = [play(env, frame_stack, 60, seed=s) for s, env in enumerate(envs)]
    frames = torch.from_numpy(np.stack([r[0] for r in runs], 1))  # [T, B, 2, 5, 4]
    done = torch.from_numpy(np.stack([r[1] for r in runs], 1))
    reference = np.stack([r[2] for r in runs], 1)
    assert done[1:].any(), "the episodes should end inside the run"
    # In one call, and in calls of uneven lengths carrying the previous frames (as acting and unrolls do).
    previous = torch.zeros((3, frame_stack - 1, 2, 5, 4), dtype=torch.uint8)
    whole, _ = stack_frames(previous, frames, done)
    np.testing.assert_array_equal(whole.numpy(), reference)
    pieces, start = [], 0
    for length in (1, 5, 13, 1, 40):
        piece, previous = stack_frames(previous, frames[start : start + length], done[start : start + length])
        pieces.append(piece)
        start += length
    np.testing.assert_array_equal(torch.cat(pieces).numpy(), reference)


def test_vector_observations_are_stacked_end_to_end():
    env = RandomFrames(shape=(3,))
    frames, done, reference = play(env, 4, 30)
    stacked, _ = stack_frames(torch.zeros((1, 3, 3), dtype=torch.uint8), torch.from_numpy(frames)[:, None],
                              torch.from_numpy(done)[:, None])
    assert stacked.shape == (30, 1, 12)
    np.testing.assert_array_equal(stacked[:, 0].numpy(), reference)


def test_pong_frames_stacked_on_the_learner_equal_the_old_actor_stack():
    pytest.importorskip("ale_py")
    # 400 emulator frames per episode: 100 steps, so the run crosses episode boundaries (time limits).
    env = make_env("atari:Pong", seed=0, config=EnvConfig(max_episode_frames=400))
    frames, done, reference = play(env, 4, 230)
    env.close()
    assert frames.shape == (230, 1, 84, 84) and done.sum() >= 3
    previous = torch.zeros((1, 3, 1, 84, 84), dtype=torch.uint8)
    stacked, _ = stack_frames(previous, torch.from_numpy(frames)[:, None], torch.from_numpy(done)[:, None])
    np.testing.assert_array_equal(stacked[:, 0].numpy(), reference)


def _agent(name: str, spec: EnvSpec):
    if name == "impala":
        config = ImpalaConfig(unroll_length=6, batch_size=2, torso="mlp")
    else:
        config = R2D2Config(unroll_length=6, burn_in=3, sequence_period=5, batch_size=2, torso="mlp",
                            lstm_size=8, head_size=8)
    run = registry.RunShape(total_environment_frames=10**6, frames_per_step=1, total_envs=1)
    return registry.build(name, config, spec, torch.device("cpu"), run)


@pytest.mark.parametrize("agent_name", ["impala", "r2d2"])
def test_both_agents_act_and_train_on_the_actor_side_stacks(agent_name):
    """Through the learner's inference path: what the network acts on, and the stacks training rebuilds."""
    frame_stack = 4
    frames, done, reference = play(RandomFrames(shape=(2, 5, 4), mean_length=9), frame_stack, 80)
    spec = EnvSpec((2, 5, 4), "uint8", 3, frame_stack=frame_stack)
    built = _agent(agent_name, spec)
    agent = built.agent
    seen = []
    inner_act = agent.inner.act

    def spying_act(inputs, state):
        seen.append(inputs.observation.clone())
        return inner_act(inputs, state)

    agent.inner.act = spying_act
    unrolls = []
    engine = InferenceEngine(agent, built.unroll, unrolls.append, threading.Lock())
    for t in range(len(frames)):
        step = {"observation": frames[t : t + 1], "reward": np.zeros(1, np.float32), "done": done[t : t + 1],
                "truncated": np.zeros(1, bool), "life_lost": np.zeros(1, bool)}
        engine([StepRequest(stream_id=0, first_env_index=0, step=step)])
    np.testing.assert_array_equal(torch.cat(seen).numpy(), reference)
    assert len(unrolls) >= 3
    period = built.unroll.new_steps
    for k, unroll in enumerate(unrolls):  # one environment: the unrolls come in order
        assert unroll.steps["observation"].shape[2:] == (2, 5, 4)  # single frames are stored
        batch = agent.stacked_batch(unroll.training_batch())
        start = k * period
        np.testing.assert_array_equal(batch["observation"][:, 0].numpy(), reference[start : start + built.unroll.steps])
        assert len(batch["initial_core_state"]) == len(agent.inner.initial_core_state(1))
    # And the inner agent trains on them.
    result = agent.train_step(_training_batch(agent_name, unrolls[:2]), threading.Lock())
    assert not result.skipped and np.isfinite(result.logs["loss/total"])


def _training_batch(agent_name: str, unrolls) -> dict:
    from seed_rl.core.unroll import UnrollBatch

    batch = UnrollBatch.concat(unrolls).training_batch()
    if agent_name == "r2d2":
        batch["importance_weights"] = torch.ones(len(unrolls))
    return batch
