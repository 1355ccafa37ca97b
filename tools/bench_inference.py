"""How many environment steps one learner can serve: central inference with learning off.

  .venv/bin/python tools/bench_inference.py                        # synthetic Atari actors
  .venv/bin/python tools/bench_inference.py --torso=impala_deep --actors=8 --envs_per_actor=32
  .venv/bin/python tools/bench_inference.py --mode=pong --actors=2  # real Pong actor processes
  .venv/bin/python tools/bench_inference.py --churn --seconds=30    # actors come and go

The learner is the real one (gRPC server, dynamic batcher, inference engine,
trajectory store) around an IMPALA agent with the chosen torso; nothing
trains, and finished unrolls are dropped.

``--mode=synthetic`` (default): actor processes replay pre-recorded Pong
observations (84x84x4 uint8) over the real transport as fast as the learner
answers, so the learner is the only limit. The same actors are then run
against a no-op learner (same server and batcher, zero actions, no model),
which gives the transport's own ceiling. For each it prints env steps/s and
the learner's CPU microseconds per env step, split by stage:

- forward: the agent's forward pass, with gathering inputs and states;
- store: writing the step into the trajectory store and handing unrolls over;
- transport + decode + batching: the rest of the learner process's CPU (gRPC
  threads, request decoding and validation, the batcher). With
  ``--torch_threads`` above 1 the forward pass's other threads land here too;

and the mean batching wait (wall time from a request's arrival to the start of
its batch).

``--mode=pong``: ``--actors`` real ``seed_rl.actor`` processes step Pong
against the model learner, then against the no-op learner; their steps/s is
compared with ``--actors`` processes stepping the same environments with
random actions and no learner, on the same cores: the inference path, and the
transport alone, as a share of the environments' own ceiling (Sample Factory
reports 74.8% end to end).

``--churn``: for ``--seconds``, synthetic actors connect, stream for a random
while and go, half by closing their stream and half by dropping it mid-stream;
every ``--kill_seconds`` one actor process is killed (SIGKILL) and replaced.
It prints the learner's RSS and its state-table size over time, which must
stay flat; ``--json`` writes the samples.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from seed_rl.config import roles
from seed_rl.core.precision import FP32, PRECISIONS, Precision, resolve_precision
from seed_rl.agents import registry
from seed_rl.agents.builder import RunShape
from seed_rl.agents.impala.config import ImpalaConfig
from seed_rl.acting.shm_link import ShmConnection
from seed_rl.transport import protocol, shm
from seed_rl.transport.errors import Unavailable
from seed_rl.core.step import StepRequest, allocate_step
from seed_rl.learner.inference import InferenceEngine
from seed_rl.transport.security import ClientSecurity
from seed_rl.learner.serving import Endpoints, InferenceService, ServingSettings
from seed_rl.envs import EnvConfig, make_env, probe_spec

ENV = "atari:Pong"
RECORDED_STEPS = 64


# ----------------------------------------------------------------------------
# Synthetic actors


def record_steps(num_envs: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """``RECORDED_STEPS`` steps of ``num_envs`` real Pong observations (random play)."""
    env = make_env(ENV, seed, EnvConfig())
    rng = np.random.default_rng(seed)
    frames = [np.asarray(env.reset(seed=seed)[0])]
    for _ in range(RECORDED_STEPS + num_envs):
        observation, *_ = env.step(int(rng.integers(env.action_space.n)))
        frames.append(np.asarray(observation))
    env.close()
    steps = []
    for t in range(RECORDED_STEPS):
        step = allocate_step(num_envs, frames[0].shape, frames[0].dtype.name)
        step["observation"][:] = np.stack([frames[t + k] for k in range(num_envs)])  # each env at its own phase
        step["reward"][:] = rng.choice(np.array([-1.0, 0.0, 0.0, 0.0, 1.0], np.float32), num_envs)
        step["done"][:] = t == 0
        steps.append(step)
    return steps


def _payloads(transport: str, recorded: list[dict]) -> list:
    """What an actor of ``transport`` sends for each recorded step: encoded requests for gRPC, the arrays to
    copy into shared memory for shm. Made once per actor process, not per connection."""
    if transport == "shm":
        return recorded
    return [protocol.encode_request(r) for r in recorded]


def _stream_once(transport: str, address: str, actor_id: int, payloads: list, steps, stop,
                 lifetime_s: float, close_cleanly: bool) -> None:
    if transport == "shm":
        _stream_once_shm(address, actor_id, payloads, steps, stop, lifetime_s)
    else:
        _stream_once_grpc(address, actor_id, payloads, steps, stop, lifetime_s, close_cleanly)


def _stream_once_shm(address: str, actor_id: int, recorded: list[dict], steps, stop, lifetime_s: float) -> None:
    """One actor connection over shared memory: copies each recorded step into the shared arrays (as an actor's
    environments write their observations there) and waits for the actions."""
    num_envs = len(recorded[0]["reward"])
    hello = {"actor_id": actor_id, "env": ENV, "num_envs": num_envs, "token": None}
    try:
        connection = ShmConnection.connect(shm.socket_path(shm.port_of(address)), hello)
    except (OSError, Unavailable):
        return
    no_stats = (np.zeros(0, np.float32), np.zeros(0, np.int32))
    deadline = time.monotonic() + lifetime_s
    i = 0
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            for name, value in recorded[i % len(recorded)].items():
                connection.arrays[name][...] = value
            connection.step(*no_stats)
            i += 1
            if i % 16 == 0:
                with steps.get_lock():
                    steps.value += 16
    except (OSError, Unavailable):
        pass
    connection.close()


def _stream_once_grpc(address: str, actor_id: int, requests: list[bytes], steps, stop, lifetime_s: float,
                      close_cleanly: bool) -> None:
    """One actor connection: streams ``requests`` lock-step with the replies until ``stop`` or ``lifetime_s``,
    then ends the stream cleanly or drops it (cancelled mid-stream, as an actor that crashed)."""
    import grpc  # in the child: gRPC must not be initialised before a fork

    channel = ClientSecurity().channel(address, [])
    call = channel.stream_stream(protocol.FULL_METHOD, request_serializer=lambda b: b,
                                 response_deserializer=lambda b: b)
    outbox: list = []
    ready = threading.Semaphore(0)

    def outgoing():
        while True:
            ready.acquire()
            item = outbox.pop()
            if item is None:
                return
            yield item

    metadata = ((protocol.ACTOR_ID_KEY, str(actor_id)), (protocol.ENV_KEY, ENV))
    responses = call(outgoing(), metadata=metadata)
    deadline = time.monotonic() + lifetime_s
    i = 0
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            outbox.append(requests[i % len(requests)])
            ready.release()
            next(responses)
            i += 1
            if i % 16 == 0:
                with steps.get_lock():
                    steps.value += 16
        if close_cleanly:
            outbox.append(None)
            ready.release()
            for _ in responses:
                pass
        else:
            responses.cancel()
    except grpc.RpcError:
        pass
    channel.close()


def _synthetic_actor(transport: str, address: str, actor_id: int, recorded: list[dict], steps, stop) -> None:
    _stream_once(transport, address, actor_id, _payloads(transport, recorded), steps, stop, float("inf"), True)


def _churning_actor(transport: str, address: str, worker: int, recorded: list[dict], steps, stop,
                    connections) -> None:
    """Connects, streams for a random while and goes, over and over; the parent also kills it now and then."""
    rng = random.Random(worker)
    payloads = _payloads(transport, recorded)
    while not stop.is_set():
        with connections.get_lock():
            connections.value += 1
            actor_id = connections.value
        _stream_once(transport, address, actor_id, payloads, steps, stop, rng.uniform(0.2, 1.0), rng.random() < 0.5)


# ----------------------------------------------------------------------------
# Learners


class NoOpEngine:
    """The inference engine's interface with no model: zero actions at once."""

    def __init__(self):
        self.env_steps = 0
        self.num_envs = 0

    def __call__(self, requests: list[StepRequest]) -> list[np.ndarray]:
        self.env_steps += sum(r.num_envs for r in requests)
        return [np.zeros(r.num_envs, np.int64) for r in requests]

    def remove_stream(self, stream_id: int, num_envs: int) -> None:
        pass


@dataclass
class BenchLearner:
    """The learner's own serving stack (InferenceService behind Endpoints), with no training behind it."""

    service: InferenceService
    endpoints: Endpoints

    @property
    def address(self) -> str:
        return self.endpoints.address

    @property
    def engine(self):
        return self.service.engine

    @property
    def batcher(self):
        return self.service.batcher

    @property
    def streams(self):
        return self.service.streams

    def close(self) -> None:
        self.endpoints.stop()
        self.service.close()


def start_learner(kind: str, torso: str, device: torch.device, batch_size: int, unroll_length: int,
                  max_streams: int, serve_shm: bool = False, precision: Precision = FP32) -> BenchLearner:
    spec = probe_spec(ENV, 0, EnvConfig())
    if kind == "noop":
        engine = NoOpEngine()
    else:
        run = RunShape(total_environment_frames=1, frames_per_step=4, total_envs=1, precision=precision)
        built = registry.build("impala", ImpalaConfig(torso=torso, unroll_length=unroll_length), spec, device, run)
        engine = InferenceEngine(built.agent, built.unroll, lambda unrolls: None, threading.Lock())
    service = InferenceService(engine, ENV, max_batch_size=batch_size, timeout_s=0.01, on_episodes=lambda r, l: None)
    try:
        endpoints = Endpoints(ServingSettings(max_streams=max_streams, serve_shm=serve_shm), spec, service.streams)
    except BaseException:
        service.close()
        raise
    endpoints.start()
    return BenchLearner(service, endpoints)


def _stop_all(stop, processes: list, learner: BenchLearner) -> None:
    stop.set()
    for p in processes:
        p.join(timeout=5)
        if p.is_alive():
            p.kill()
    learner.close()


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# ----------------------------------------------------------------------------
# Measurements


def _stage_counters(engine, batcher, kind: str) -> tuple[float, ...]:
    """(forward s, store s, requests, batching wait s, batches) so far; NaN where this learner does not count it
    (an older seed_rl, benchmarked side by side)."""
    nan = float("nan")
    times = getattr(engine, "times", None) if kind == "model" else None
    return (
        times.forward if times else (0.0 if kind == "noop" else nan),
        times.store if times else (0.0 if kind == "noop" else nan),
        getattr(batcher, "requests_served", nan),
        getattr(batcher, "wait_seconds", nan),
        getattr(batcher, "batches_served", nan),
    )


def measure_synthetic(kind: str, transport: str, args, recorded: list[dict], device: torch.device) -> dict:
    learner = start_learner(kind, args.torso, device, args.inference_batch_size, args.unroll_length, args.actors + 16,
                            serve_shm=transport == "shm", precision=args.resolved_precision)
    ctx = mp.get_context("spawn")
    steps, stop = ctx.Value("q", 0), ctx.Event()
    actors = [
        ctx.Process(target=_synthetic_actor, daemon=True,
                    args=(transport, learner.address, i, recorded, steps, stop))
        for i in range(args.actors)
    ]
    try:
        for actor in actors:
            actor.start()
        time.sleep(args.warmup_seconds)
        engine, batcher = learner.engine, learner.batcher
        stages = lambda: _stage_counters(engine, batcher, kind)  # noqa: E731
        start_steps, start_cpu, start_wall = engine.env_steps, time.process_time(), time.monotonic()
        start = stages()
        time.sleep(args.seconds)
        served = engine.env_steps - start_steps
        wall, cpu = time.monotonic() - start_wall, time.process_time() - start_cpu
        forward, store, requests_served, wait_s, batches = (b - a for a, b in zip(start, stages()))
        wait = wait_s / max(requests_served, 1)
    finally:
        _stop_all(stop, actors, learner)
    per_step = 1e6 / max(served, 1)
    return {
        "learner": kind,
        "transport": transport,
        "env_steps_per_s": served / wall,
        "cpu_us_per_step": cpu * per_step,
        "forward_us_per_step": forward * per_step,
        "store_us_per_step": store * per_step,
        "transport_decode_batching_us_per_step": (cpu - forward - store) * per_step,
        "batching_wait_ms": wait * 1e3,
        "mean_inference_batch": served / max(batches, 1),
    }


def measure_pong(args, device: torch.device) -> dict:
    """Real actor processes against each learner, and the same environments stepped with no learner."""
    from benchlib.raw_rates import raw_rates

    total_envs = args.actors * args.envs_per_actor
    served = {}
    for transport, kind in [(t, k) for t in args.transports for k in ("model", "noop")]:
        learner = start_learner(kind, args.torso, device, args.inference_batch_size, args.unroll_length,
                                args.actors + 16,
                                serve_shm=transport == "shm", precision=args.resolved_precision)
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "seed_rl.actor", f"--learner_address={learner.address}",
                 f"--env={ENV}", f"--envs_per_actor={args.envs_per_actor}", f"--actor_id={i}",
                 f"--transport={transport}", f"--{'' if args.double_buffer else 'no'}double_buffer"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            for i in range(args.actors)
        ]
        try:
            deadline = time.monotonic() + 120
            while learner.engine.env_steps < total_envs * 20 and time.monotonic() < deadline:
                time.sleep(0.2)  # every actor has started its environments
            time.sleep(args.warmup_seconds)
            start_steps, start_wall = learner.engine.env_steps, time.monotonic()
            time.sleep(args.seconds)
            served[transport, kind] = (learner.engine.env_steps - start_steps) / (time.monotonic() - start_wall)
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
            learner.close()
    raw = raw_rates(ENV, args.actors, args.envs_per_actor, args.seconds, frame_skip=1)[0]
    return {
        "raw_env_steps_per_s": raw,
        "rows": [
            {"transport": t, "learner": k, "env_steps_per_s": rate, "ratio_to_raw": rate / raw}
            for (t, k), rate in served.items()
        ],
    }


def churn(args, recorded: list[dict], device: torch.device) -> dict:
    """``--actors`` workers connect, stream and go in a loop; every ``--kill_seconds`` one is killed and replaced.
    With both transports given, the workers alternate between them."""
    learner = start_learner("model", args.torso, device, args.inference_batch_size, args.unroll_length,
                            4 * args.actors + 16, serve_shm="shm" in args.transports,
                            precision=args.resolved_precision)
    ctx = mp.get_context("spawn")
    steps, stop, connections = ctx.Value("q", 0), ctx.Event(), ctx.Value("q", 0)
    rng = random.Random(0)

    def spawn(worker: int):
        transport = args.transports[worker % len(args.transports)]
        p = ctx.Process(target=_churning_actor, daemon=True,
                        args=(transport, learner.address, worker, recorded, steps, stop, connections))
        p.start()
        return p

    workers = [spawn(i) for i in range(args.actors)]
    killed, samples = 0, []
    start = time.monotonic()
    next_sample, next_kill = start, start + args.kill_seconds
    # Past --seconds the churn goes on (up to 10x) until it has seen --min_connections connections, --min_kills
    # kills and some environment steps, so a loaded machine slows the check down instead of failing it.
    def enough() -> bool:
        return connections.value >= args.min_connections and killed >= args.min_kills and steps.value > 0

    try:
        while (now := time.monotonic()) < start + args.seconds or (not enough() and now < start + 10 * args.seconds):
            if now >= next_kill:
                victim = rng.randrange(len(workers))
                workers[victim].kill()  # SIGKILL: no stream end, no goodbye
                workers[victim].join()
                workers[victim] = spawn(len(workers) + killed)
                killed += 1
                next_kill += args.kill_seconds
            if now >= next_sample:
                samples.append({
                    "t": now - start,
                    "rss_mb": rss_mb(),
                    "envs_connected": learner.engine.num_envs,
                    "state_slots": learner.engine.slot_capacity,
                    "streams": learner.streams.active,
                    "connections": connections.value,
                })
                next_sample += args.sample_seconds
            time.sleep(0.02)
    finally:
        _stop_all(stop, workers, learner)
    return {"samples": samples, "connections": connections.value, "killed": killed, "env_steps": steps.value}


# ----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("synthetic", "pong"), default="synthetic")
    parser.add_argument("--churn", action="store_true", help="actors connect, stream and vanish for --seconds")
    parser.add_argument("--actors", type=int, default=4)
    parser.add_argument("--envs_per_actor", type=int, default=16)
    parser.add_argument("--torso", default="nature", help="nature, impala_deep, ...")
    parser.add_argument("--unroll_length", type=int, default=20)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS, help="as seed_rl.train's --precision")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup_seconds", type=float, default=3.0)
    parser.add_argument("--sample_seconds", type=float, default=1.0, help="--churn: seconds between samples")
    parser.add_argument("--kill_seconds", type=float, default=2.0, help="--churn: seconds between actor kills")
    parser.add_argument("--min_connections", type=int, default=0,
                        help="--churn: run past --seconds (up to 10x) until this many connections were made")
    parser.add_argument("--min_kills", type=int, default=0,
                        help="--churn: run past --seconds (up to 10x) until this many actors were killed")
    parser.add_argument("--torch_threads", type=int, default=1,
                        help="PyTorch threads (1: the forward pass's CPU is all on the inference thread, so the "
                             "stage split is exact; 0: PyTorch's default)")
    parser.add_argument("--inference_batch_size", type=int, default=0,
                        help="max environments per inference batch; 0: all of them (seed_rl.train's default)")
    parser.add_argument("--double_buffer", action="store_true",
                        help="--mode=pong: actors step two halves of their environments in turn (and the default "
                             "inference batch is half the environments, as in seed_rl.train)")
    parser.add_argument("--transports", default="grpc,shm",
                        help="comma-separated transports to measure side by side: grpc, shm")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    args.transports = [t for t in args.transports.split(",") if t]
    args.inference_batch_size = args.inference_batch_size or roles.default_inference_batch(
        args.actors * args.envs_per_actor, args.double_buffer)
    if not args.transports or set(args.transports) - {"grpc", "shm"}:
        parser.error("--transports takes grpc and/or shm, comma-separated")
    if args.actors < 1 or args.envs_per_actor < 1 or args.seconds <= 0:
        parser.error("--actors, --envs_per_actor and --seconds must be positive")
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    args.resolved_precision = resolve_precision(args.precision, device)
    recorded = record_steps(args.envs_per_actor)
    header = (f"{args.actors} actors x {args.envs_per_actor} envs, torso {args.torso}, device {device}, "
              f"{args.resolved_precision.name}, "
              f"{os.cpu_count()} cores")
    if args.churn:
        result = churn(args, recorded, device)
        print(f"churn for {args.seconds:.0f} s over {'+'.join(args.transports)}: {header}; "
              f"{result['connections']} connections, {result['killed']} actors killed")
        print(f"{'t (s)':>7} {'RSS MB':>8} {'envs':>6} {'slots':>6} {'streams':>8} {'connections':>12}")
        for s in result["samples"]:
            print(f"{s['t']:7.1f} {s['rss_mb']:8.1f} {s['envs_connected']:6d} {s['state_slots']:6d} "
                  f"{s['streams']:8d} {s['connections']:12d}")
    elif args.mode == "pong":
        result = measure_pong(args, device)
        print(f"real Pong actors, {header}")
        print(f"  the same environments stepped alone: {result['raw_env_steps_per_s']:,.0f} env steps/s")
        print(f"{'transport':>10} {'learner':>8} {'steps/s':>9} {'/ env ceiling':>14}")
        for r in result["rows"]:
            print(f"{r['transport']:>10} {r['learner']:>8} {r['env_steps_per_s']:9,.0f} {r['ratio_to_raw']:14.3f}")
    else:
        rows = [measure_synthetic(kind, transport, args, recorded, device)
                for transport in args.transports for kind in ("model", "noop")]
        result = {"rows": rows}
        print(f"synthetic actors replaying Pong frames, {header}")
        print(f"{'transport':>10} {'learner':>8} {'steps/s':>9} {'CPU us/step':>12} {'forward':>8} {'store':>6} "
              f"{'transport+':>11} {'wait ms':>8} {'batch':>6}")
        for r in rows:
            print(f"{r['transport']:>10} {r['learner']:>8} {r['env_steps_per_s']:9,.0f} {r['cpu_us_per_step']:12.1f} "
                  f"{r['forward_us_per_step']:8.1f} {r['store_us_per_step']:6.1f} "
                  f"{r['transport_decode_batching_us_per_step']:11.1f} {r['batching_wait_ms']:8.2f} "
                  f"{r['mean_inference_batch']:6.1f}")
        for transport in args.transports:
            model, noop = (r["env_steps_per_s"] for r in rows if r["transport"] == transport)
            print(f"{transport}: model learner / no-op learner (steps/s) = {model / noop:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            given = {k: v for k, v in vars(args).items() if k != "resolved_precision"}
            json.dump({"args": given, "precision": args.resolved_precision.name, **result}, f, indent=1)


if __name__ == "__main__":
    main()
