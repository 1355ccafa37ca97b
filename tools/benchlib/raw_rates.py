"""How fast environments step on their own: no actors, no learner, random actions.

The ceiling that the throughput benchmarks (``tools/bench_throughput.py``,
``bench_scaling.py``, ``bench_inference.py``) compare training against, on the
same cores.
"""

from __future__ import annotations

import multiprocessing
import queue
import time

import numpy as np


def _raw_worker(env_name: str, num_envs: int, seconds: float, seed: int, result, ready, go) -> None:
    from seed_rl.envs import EnvConfig, make_env

    config = EnvConfig()
    envs = [make_env(env_name, seed + i, config) for i in range(num_envs)]
    for i, env in enumerate(envs):
        env.reset(seed=seed + i)
    rng = np.random.default_rng(seed)
    ready.put(None)
    go.wait()  # all workers step at the same time, after every one has started up
    steps = 0
    cpu_start = time.process_time()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for env in envs:
            _, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
            if terminated or truncated:
                env.reset()
        steps += num_envs
    result.put((steps, time.process_time() - cpu_start))


def raw_rates(env_name: str, processes: int, num_envs: int, seconds: float, frame_skip: int) -> tuple[float, float]:
    """Raw env frames per wall-clock second and per CPU-second of the stepping processes.

    ``processes`` processes each step ``num_envs`` environments of ``env_name``
    with random actions for ``seconds``, all starting together; ``frame_skip``
    turns agent steps into environment frames.
    """
    context = multiprocessing.get_context("spawn")
    result, ready, go = context.Queue(), context.Queue(), context.Event()
    workers = [
        context.Process(target=_raw_worker, args=(env_name, num_envs, seconds, 1000 * i, result, ready, go))
        for i in range(processes)
    ]
    for w in workers:
        w.start()
    started = 0
    while started < len(workers):
        try:
            ready.get(timeout=1.0)
            started += 1
        except queue.Empty:
            failed = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
            if failed:
                raise RuntimeError(f"a raw-env worker exited with code {failed[0]} before stepping (see its output above)")
    go.set()
    steps, cpu_seconds = np.sum([result.get() for _ in workers], axis=0)
    for w in workers:
        w.join()
    return steps * frame_skip / seconds, steps * frame_skip / max(cpu_seconds, 1e-9)
