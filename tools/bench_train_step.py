"""The learner's training step and inference forward pass, variants side by side in one run.

  .venv/bin/python tools/bench_train_step.py                                  # IMPALA on Pong's shapes
  .venv/bin/python tools/bench_train_step.py --agent=r2d2 --batch_size=8
  .venv/bin/python tools/bench_train_step.py --torso=impala_deep --batch_size=32
  .venv/bin/python tools/bench_train_step.py --threads=1 --variants=fp32,bf16+nchw,bf16,bf16+compile

Builds the agent as ``seed_rl.train`` would for ``--env`` on this device
(defaults and the family's preset; ``--torso``/``--batch_size``/... override),
then times, for each variant, ``train_step`` on one synthetic batch of the
agent's training shape and ``act`` on ``--inference_batch`` environments.
Variants are timed in interleaved rounds (each after its own warm-up), so a
busy machine slows all of them alike; the table gives the median round in
microseconds per frame (per step of one environment) and the speed-up over the
first variant.

A variant is ``+``-joined options: ``fp32`` or ``bf16`` (``--precision``;
bf16 models are channels_last, as the learner prepares them), ``channels_last``
or ``nchw`` (the model's convolution weights in NHWC, or back in NCHW),
``compile`` (``torch.compile`` of the network's forward; its compile time is
printed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

import torch

from benchlib.train_batches import build_agent, preset_config, random_observations, training_batch
from seed_rl.core.agent import ActInputs
from seed_rl.core.precision import resolve_precision
from seed_rl.envs import EnvConfig, probe_spec

OPTIONS = ("fp32", "bf16", "channels_last", "nchw", "compile")


def parse_variant(text: str) -> set[str]:
    options = set(text.split("+"))
    unknown = options - set(OPTIONS)
    if unknown:
        raise SystemExit(f"unknown variant option(s) {sorted(unknown)} in {text!r}; options: {', '.join(OPTIONS)}")
    if len(options & {"fp32", "bf16"}) != 1:
        raise SystemExit(f"variant {text!r} must name exactly one of fp32, bf16")
    return options


class Variant:
    def __init__(self, name: str, args, spec, device: torch.device, overrides: dict):
        options = parse_variant(name)
        self.name = name
        precision = resolve_precision("bf16" if "bf16" in options else "fp32", device)
        config = preset_config(args.agent, args.env, spec, device.type, **overrides)
        self.agent = build_agent(args.agent, config, spec, device, precision, seed=args.seed)
        if "channels_last" in options:
            self.agent.model.to(memory_format=torch.channels_last)
        if "nchw" in options:
            self.agent.model.to(memory_format=torch.contiguous_format)
        self.compile_seconds = 0.0
        if "compile" in options:
            self.agent.model.forward = torch.compile(self.agent.model.forward, dynamic=False)
        self.batch = training_batch(self.agent, spec, seed=args.seed)
        n = args.inference_batch
        g = torch.Generator().manual_seed(args.seed)
        self.inputs = ActInputs(
            random_observations(spec, (n,), g).to(device), torch.zeros(n, device=device),
            torch.zeros(n, dtype=torch.bool, device=device), torch.arange(n, device=device),
        )
        self.state = self.agent.initial_core_state(n)
        self.state = tuple(s.to(device) for s in self.state)
        self.lock = threading.Lock()
        cfg = self.agent.config
        steps = cfg.sequence_length if hasattr(cfg, "sequence_length") else cfg.unroll_length + 1
        self.train_frames = steps * cfg.batch_size
        self.train_us: list[float] = []
        self.infer_us: list[float] = []

    def warm_up(self, steps: int) -> None:
        started = time.perf_counter()
        for _ in range(steps):
            self.agent.train_step(self.batch, self.lock)
            with torch.inference_mode():
                self.agent.act(self.inputs, self.state)
        self.compile_seconds = time.perf_counter() - started

    def round(self, steps: int, device: torch.device) -> None:
        self.train_us.append(_timed(lambda: self.agent.train_step(self.batch, self.lock), steps, device)
                             / self.train_frames)
        with torch.inference_mode():
            self.infer_us.append(_timed(lambda: self.agent.act(self.inputs, self.state), steps * 4, device)
                                 / len(self.inputs.env_index))


def _timed(step, repeats: int, device: torch.device) -> float:
    """Microseconds per call of ``step``."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - started) / repeats * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="atari:Pong")
    parser.add_argument("--agent", default="impala", choices=("impala", "r2d2"))
    parser.add_argument("--variants", default="fp32,bf16", help="comma-separated, e.g. fp32,bf16,bf16+compile")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads; 0: torch's default")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="train steps per round (inference calls: 4x)")
    parser.add_argument("--warmup_steps", type=int, default=3)
    parser.add_argument("--inference_batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torso", help="override the preset's torso, e.g. impala_deep")
    parser.add_argument("--batch_size", type=int)
    parser.add_argument("--unroll_length", type=int)
    parser.add_argument("--burn_in", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    overrides = {k: getattr(args, k) for k in ("torso", "batch_size", "unroll_length", "burn_in")
                 if getattr(args, k) is not None}
    spec = probe_spec(args.env, args.seed, EnvConfig())
    variants = [Variant(name, args, spec, device, overrides) for name in args.variants.split(",")]
    cfg = variants[0].agent.config
    print(f"{args.agent} on {args.env} {spec.observation_shape} {spec.observation_dtype}, torso {cfg.torso}, "
          f"batch {cfg.batch_size}, {variants[0].train_frames} frames per train step, inference batch "
          f"{args.inference_batch}; device {device}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"torch {torch.__version__}", flush=True)
    for variant in variants:
        variant.warm_up(args.warmup_steps)
        if "compile" in variant.name:
            print(f"{variant.name}: warm-up with compilation took {variant.compile_seconds:.1f} s", flush=True)
    for _ in range(args.rounds):
        for variant in variants:
            variant.round(args.steps, device)
    base = variants[0]
    base_train, base_infer = statistics.median(base.train_us), statistics.median(base.infer_us)
    print(f"{'variant':<28} {'train us/frame':>15} {'speed-up':>9} {'inference us/frame':>19} {'speed-up':>9}")
    for variant in variants:
        train, infer = statistics.median(variant.train_us), statistics.median(variant.infer_us)
        print(f"{variant.name:<28} {train:>15.1f} {base_train / train:>8.2f}x {infer:>19.1f} {base_infer / infer:>8.2f}x")


if __name__ == "__main__":
    main()
