"""Bytes per Atari step on the wire and in the learner's trajectory store, with frames stacked on the learner.

  .venv/bin/python tools/bench_step_bytes.py                 # IMPALA's Pong shapes (unroll 20)
  .venv/bin/python tools/bench_step_bytes.py --agent=r2d2    # R2D2's overlapping sequences

Feeds real Pong frames through today's layout (the actor sends one 84x84
frame per step, the learner stacks 4). Printed per environment step:

- wire: an encoded gRPC step request of ``--envs`` environments
  (``protocol.encode_request``) and a shared-memory step (``shm.ArrayLayout``);
- store: what the learner's trajectory store keeps resident per environment
  (its buffers and the recurrent states kept where unrolls start), after the
  same steps went through the learner's inference path (``InferenceEngine``);
- unrolls: what each handed-over unroll holds (steps, agent outputs, initial
  state: the frames before it, with stacking on the learner), per new step.

R2D2's replay and checkpoints are measured by ``tools/bench_replay_memory.py``.
"""

from __future__ import annotations

import argparse
import threading

import numpy as np
import torch

from seed_rl.agents import registry
from benchlib.train_batches import preset_config
from seed_rl.core.step import StepRequest
from seed_rl.core.unroll import UnrollBatch
from seed_rl.envs import EnvConfig, EnvSpec, make_env, probe_spec
from seed_rl.learner.inference import InferenceEngine
from seed_rl.transport import protocol, shm


def record_pong(num_envs: int, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``[steps, K, 1, 84, 84]`` frames and ``[steps, K]`` done flags of Pong under a random policy."""
    envs = [make_env("atari:Pong", seed + i, EnvConfig()) for i in range(num_envs)]
    rng = np.random.default_rng(seed)
    frames = np.zeros((steps, num_envs, 1, 84, 84), np.uint8)
    done = np.zeros((steps, num_envs), bool)
    for k, env in enumerate(envs):
        frames[0, k], _ = env.reset(seed=seed + k)
        done[0, k] = True
    for t in range(1, steps):
        for k, env in enumerate(envs):
            frames[t, k], _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
            if terminated or truncated:
                frames[t, k], _ = env.reset()
                done[t, k] = True
    for env in envs:
        env.close()
    return frames, done


def step_request(observations: np.ndarray, done: np.ndarray) -> dict[str, np.ndarray]:
    k = len(done)
    return {"observation": observations, "reward": np.zeros(k, np.float32), "done": done,
            "truncated": np.zeros(k, bool), "life_lost": np.zeros(k, bool)}


def nbytes(value) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    if isinstance(value, (tuple, list)):
        return sum(nbytes(v) for v in value)
    return 0


def wire_bytes(spec: EnvSpec, frames: np.ndarray, done: np.ndarray) -> tuple[float, float]:
    """(encoded gRPC request bytes, shared-memory step bytes) per environment step."""
    k = len(done[0])
    request = protocol.encode_request(step_request(frames[0], done[0]))
    layout = shm.ArrayLayout.for_step(k, spec.observation_shape, spec.observation_dtype)
    return len(request) / k, layout.size / k


def store_bytes(agent: str, spec: EnvSpec, frames: np.ndarray, done: np.ndarray) -> tuple[float, float, int]:
    """(resident store bytes per environment, unroll bytes per new step, unrolls handed over)."""
    config = preset_config(agent, "atari:Pong", spec)
    run = registry.RunShape(total_environment_frames=10**9, frames_per_step=4, total_envs=len(done[0]))
    built = registry.build(agent, config, spec, torch.device("cpu"), run)
    unrolls: list[UnrollBatch] = []
    engine = InferenceEngine(built.agent, built.unroll, unrolls.append, threading.Lock())
    for t in range(len(done)):
        engine([StepRequest(0, 0, step_request(frames[t], done[t]))])
    store = engine._store
    resident = nbytes(store._steps) + nbytes(store._outputs) + nbytes(store._start_states)
    handed = sum(len(batch) for batch in unrolls)
    new_steps = handed * built.unroll.new_steps
    unroll_bytes = sum(nbytes(b.steps) + nbytes(b.agent_outputs) + nbytes(b.initial_core_state) for b in unrolls)
    return resident / store.capacity, unroll_bytes / max(1, new_steps), handed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", default="impala", choices=("impala", "r2d2"))
    parser.add_argument("--envs", type=int, default=16, help="environments per actor stream (run_local.sh: 16)")
    parser.add_argument("--steps", type=int, default=200, help="steps recorded per environment")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    frames, done = record_pong(args.envs, args.steps, args.seed)
    spec = probe_spec("atari:Pong")  # one frame per step, stacked on the learner
    print(f"{args.agent} on Pong, {args.envs} environments x {args.steps} steps of real frames "
          f"(bytes per environment step; store: resident bytes per environment)")
    print(f"{'layout':38s} {'gRPC':>9s} {'shm':>9s} {'store':>11s} {'unrolls':>9s}")
    grpc_bytes, shm_bytes = wire_bytes(spec, frames, done)
    resident, per_step, handed = store_bytes(args.agent, spec, frames, done)
    name = f"1 frame, {spec.frame_stack} stacked on the learner"
    print(f"{name:38s} {grpc_bytes:9,.0f} {shm_bytes:9,.0f} {resident:11,.0f} {per_step:9,.0f}   ({handed} unrolls)")


if __name__ == "__main__":
    main()
