"""Sample Factory's APPO against this project's IMPALA on Atari Pong: training frames/s, same cores.

Run through tools/bench_sample_factory.sh, which builds Sample Factory's
throwaway virtualenv and passes its Python as --sf_python:

  tools/bench_sample_factory.sh [SECONDS] [--warmup_seconds=30] [--sf_args='--flag=value ...'] [train flags...]

1. Sample Factory 2.1.1's own Atari example (sf_examples.atari.train_atari,
   through tools/sf_train_atari.py) on atari_pong, CPU only, with
   --num_actors rollout workers of --envs_per_actor environments each and
   seed_rl's batch shape: --rollout = seed_rl's unroll_length and one SGD step
   (one epoch of one minibatch) per batch_size x unroll_length transitions.
   Its rate comes from its "Fps is ... Total num frames: N" log lines: the
   frames its learner trained on over the log lines' own time span, after
   --warmup_seconds of training (counted from its first trained frame).
2. ``python -m seed_rl.train --env=atari:Pong`` with the same actors and
   environments and any train flags given (``./run_local.sh atari``'s
   settings), measured by tools/bench_throughput.py's
   ``training_frames_per_second``.

Both count environment frames, i.e. agent steps x the frame skip (4): Sample
Factory with --summaries_use_frameskip=True multiplies the transitions its
learner trained on by --env_frameskip; seed_rl counts the frames of the unrolls
its learner received. Prints both rates, seed_rl/SampleFactory, Sample
Factory's resolved configuration and what differs between the two.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from types import SimpleNamespace

import torch
from absl import flags

import seed_rl.train  # noqa: F401  (defines the train command's flags, parsed below as seed_rl.train would)
from seed_rl.agents import registry
from seed_rl.config import presets
from seed_rl.config.flags import dataclass_from_flags, given_fields
from seed_rl.envs import EnvConfig
from seed_rl.envs.factory import frames_per_step, parse_env_name

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_throughput import training_frames_per_second  # noqa: E402

ENV = "atari:Pong"
SF_ENV = "atari_pong"  # Sample Factory's name for PongNoFrameskip-v4 (sf_examples/atari/atari_utils.py)
SF_EXPERIMENT = "bench"
SF_LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sf_train_atari.py")
# "[2026-12-06 07:39:53,155][20270] Fps is (10 sec: ..., 60 sec: ..., 300 sec: ...). Total num frames: 41600. ..."
FPS_LINE = re.compile(
    r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]\[\d+\] Fps is \(([^)]*)\)\. Total num frames: (\d+)"
)
SF_FAILURE = re.compile(r"unhandled exception|Traceback \(most recent call last\)", re.IGNORECASE)
# Sample Factory settings shown after its run (read back from its config.json).
SF_SHOWN = (
    "algo", "with_vtrace", "ppo_clip_ratio", "gae_lambda", "gamma", "optimizer", "learning_rate", "lr_schedule",
    "value_loss_coeff", "exploration_loss_coeff", "max_grad_norm", "normalize_returns", "normalize_input",
    "obs_scale", "encoder_conv_architecture", "encoder_conv_mlp_layers", "policy_initialization", "use_rnn",
    "num_workers", "num_envs_per_worker", "worker_num_splits", "policy_workers_per_policy", "rollout",
    "batch_size", "num_batches_per_epoch", "num_epochs", "async_rl", "num_batches_to_accumulate",
    "env_frameskip", "env_framestack", "summaries_use_frameskip", "device",
)


def seed_rl_settings(num_actors: int, envs_per_actor: int, extra: list[str]) -> SimpleNamespace:
    """The agent and environment settings ``seed_rl.train`` would resolve for these flags (flags over preset)."""
    fv = flags.FLAGS
    try:
        fv([sys.argv[0], f"--env={ENV}", f"--num_actors={num_actors}", f"--envs_per_actor={envs_per_actor}", *extra])
    except flags.Error as e:
        raise SystemExit(f"train flags: {e}") from None
    if fv.env != ENV or fv.agent != "impala":
        raise SystemExit(f"this benchmark compares IMPALA on {ENV} only; drop --env/--agent from the train flags")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if fv.device == "auto" else torch.device(fv.device)
    config_cls = registry.config_class(fv.agent)
    family = parse_env_name(fv.env)[0].name  # Atari's preset family is its own name
    preset_values = presets.apply_preset(
        config_cls, presets.preset(family, fv.agent).resolve(device.type), given_fields(config_cls, fv)
    )
    env_config = dataclass_from_flags(EnvConfig, fv)
    return SimpleNamespace(
        agent=dataclass_from_flags(config_cls, fv, preset_values),
        env=env_config,
        frame_skip=frames_per_step(fv.env, env_config),
        double_buffer=fv.double_buffer,
        num_actors=fv.num_actors,
        device=device.type,
    )


def sf_command(args, settings: SimpleNamespace, train_dir: str) -> list[str]:
    agent = settings.agent
    return [
        args.sf_python, SF_LAUNCHER,
        f"--env={SF_ENV}", f"--train_dir={train_dir}", f"--experiment={SF_EXPERIMENT}", "--device=cpu",
        f"--num_workers={args.num_actors}", f"--num_envs_per_worker={args.envs_per_actor}",
        # seed_rl's --double_buffer is Sample Factory's double-buffered sampling (two halves of each worker's envs).
        f"--worker_num_splits={2 if settings.double_buffer else 1}",
        # seed_rl's batch: batch_size unrolls of unroll_length steps, one gradient step each.
        f"--rollout={agent.unroll_length}", f"--batch_size={agent.batch_size * agent.unroll_length}",
        "--num_batches_per_epoch=1", "--num_epochs=1",
        # seed_rl's IMPALA learns while its actors act (V-trace corrects the lag); SF's example is synchronous.
        "--async_rl=True",
        # Observations divided by 255 as seed_rl does, without SF's running mean/std normalisation.
        "--normalize_input=False",
        f"--env_frameskip={settings.frame_skip}", f"--env_framestack={settings.env.frame_stack}",
        "--summaries_use_frameskip=True",  # frames counted as environment frames (agent steps x frame skip)
        # No checkpoints or "best policy" saves during the measurement (seed_rl's side writes none either).
        f"--save_every_sec={int(args.startup_timeout_s + args.warmup_seconds + args.seconds) + 1}",
        f"--save_best_after={2 ** 62}",
        *shlex.split(args.sf_args),
    ]


def _fps_lines(log_path: str) -> list[tuple[float, int, str]]:
    """(log time in s, total frames, SF's own "Fps is (...)" text) of each report line so far."""
    with open(log_path, errors="replace") as f:
        text = f.read()
    if SF_FAILURE.search(text):
        raise RuntimeError("Sample Factory reported an error")
    lines = []
    for stamp, fps_text, frames in FPS_LINE.findall(text):
        t = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        lines.append((t, int(frames), fps_text))
    return lines


def _tail(path: str, chars: int = 4000) -> str:
    with open(path, errors="replace") as f:
        return f.read()[-chars:]


def sample_factory_frames_per_second(args, settings: SimpleNamespace) -> tuple[float, str, dict, str]:
    """SF's training frames/s over ``args.seconds`` after ``args.warmup_seconds``; also its last
    "Fps is" text, its resolved config and the folder with its log."""
    train_dir = tempfile.mkdtemp(prefix="bench_sf_")
    log_path = os.path.join(train_dir, "stdout.log")
    command = sf_command(args, settings, train_dir)
    print("running:", shlex.join(command), flush=True)
    with open(log_path, "w") as log:
        # Its own session, so that its workers can be stopped with it if it does not stop them itself.
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        started = time.monotonic()
        measured: list[tuple[float, int, str]] = []
        while True:
            time.sleep(1.0)
            if process.poll() is not None:
                raise RuntimeError(f"Sample Factory exited with status {process.returncode}")
            lines = _fps_lines(log_path)
            trained = [line for line in lines if line[1] > 0]
            if not trained:
                if time.monotonic() - started > args.startup_timeout_s:
                    raise RuntimeError(f"Sample Factory trained nothing in {args.startup_timeout_s:.0f} s")
                continue
            window_start = trained[0][0] + args.warmup_seconds
            measured = [line for line in trained if line[0] >= window_start]
            if measured and measured[-1][0] - window_start >= args.seconds:
                break
    except RuntimeError as e:
        raise SystemExit(f"{e}; its log ({log_path}) ends:\n{_tail(log_path)}") from None
    finally:
        _stop(process, args.stop_timeout_s)
    if len(measured) < 2 or measured[-1][0] <= measured[0][0]:
        raise SystemExit(f"too few Sample Factory reports in the measured window; log: {log_path}")
    (t0, f0, _), (t1, f1, last_fps) = measured[0], measured[-1]
    with open(os.path.join(train_dir, SF_EXPERIMENT, "config.json")) as f:
        config = json.load(f)
    shutil.rmtree(os.path.join(train_dir, SF_EXPERIMENT, "checkpoint_p0"), ignore_errors=True)
    return (f1 - f0) / (t1 - t0), last_fps, config, train_dir


def _stop(process: subprocess.Popen, timeout_s: float) -> None:
    """Ctrl-C for Sample Factory (it stops its workers and saves), then its whole session if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the session started for it above: its leftover workers
    except ProcessLookupError:
        pass
    process.wait()


def differences(settings: SimpleNamespace, sf: dict) -> list[str]:
    agent, env = settings.agent, settings.env
    return [
        f"algorithm: SF {sf['algo']} is PPO's clipped surrogate (clip {sf['ppo_clip_ratio']}) on "
        + ("V-trace" if sf["with_vtrace"] else f"GAE (lambda {sf['gae_lambda']})")
        + f" advantages; seed_rl's IMPALA is V-trace (lambda {agent.vtrace_lambda}) without clipping. "
        "SF 2.1.1 crashes with --with_vtrace=True (its summaries read advantages that only GAE makes; "
        "fixed upstream after 2.1.1), so its example's GAE stays",
        f"optimiser: SF {sf['optimizer']} lr {sf['learning_rate']} ({sf['lr_schedule']}), value coeff "
        f"{sf['value_loss_coeff']}, entropy {sf['exploration_loss_coeff']}, grad norm {sf['max_grad_norm']}, "
        f"returns normalised: {sf['normalize_returns']}; seed_rl {agent.optimizer} lr {agent.learning_rate} "
        f"(decay {agent.lr_decay}), baseline cost {agent.baseline_cost}, entropy {agent.entropy_cost}, "
        f"grad norm {agent.max_grad_norm}, PopArt {agent.popart}",
        f"batch: both take {agent.batch_size} x {agent.unroll_length} steps per gradient step (SF: rollout "
        f"{sf['rollout']}, batch {sf['batch_size']}, {sf['num_batches_per_epoch']} minibatch x {sf['num_epochs']} "
        f"epoch); SF's learner holds back collection once {sf['num_batches_to_accumulate']} batches wait, "
        "seed_rl's actors wait on its unroll queue",
        f"processes: SF runs {sf['num_workers']} rollout workers (nice +10, pinned to cores: "
        f"{sf['set_workers_cpu_affinity']}; each steps {sf['num_envs_per_worker']} envs in "
        f"{sf['worker_num_splits']} group(s)), "
        f"{sf['policy_workers_per_policy']} separate inference worker process and a learner process, torch on "
        f"one thread in each; seed_rl runs {settings.num_actors} actor processes and one learner process that "
        f"also serves inference (batched over all envs), torch on the threads its actors leave (1 on 2 cores) unless --torch_threads",
        f"network: both the Nature CNN ({sf['encoder_conv_architecture']}, fc {sf['encoder_conv_mlp_layers']}), "
        f"feed-forward, observations / {sf['obs_scale']:g}; SF init {sf['policy_initialization']}, "
        f"seed_rl init {agent.weight_init}",
        "environment: SF's example makes PongNoFrameskip-v4 (RGB screens, max-pool and skip on RGB, cv2 resize "
        "then grayscale, 84x84, LazyFrames stack, FIRE on reset, episodic life, reward clipped in the env); "
        f"seed_rl makes ALE/Pong-v5 with grayscale screens from ALE and gymnasium's AtariPreprocessing "
        f"({env.screen_size}x{env.screen_size}, frame skip {env.frame_skip}, up to {env.noop_max} no-ops, "
        f"stack {env.frame_stack}, reward clipped by the learner: {agent.reward_clipping})",
        f"learner device: SF {sf['device']}; seed_rl {settings.device}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sf_python", required=True, help="python of the Sample Factory virtualenv")
    parser.add_argument("--sf_args", default="", help="more Sample Factory flags, e.g. '--worker_num_splits=2'")
    parser.add_argument("--num_actors", type=int, default=2, help="seed_rl actors = SF rollout workers")
    parser.add_argument("--envs_per_actor", type=int, default=16, help="environments per actor / rollout worker")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--warmup_seconds", type=float, default=30.0)
    parser.add_argument("--startup_timeout_s", type=float, default=300.0, help="SF's start until its first trained frame")
    parser.add_argument("--stop_timeout_s", type=float, default=60.0, help="wait for SF to stop after Ctrl-C")
    args, extra = parser.parse_known_args()
    settings = seed_rl_settings(args.num_actors, args.envs_per_actor, extra)

    print(f"cpu count: {os.cpu_count()}, load average before Sample Factory: {os.getloadavg()[0]:.2f}", flush=True)
    sf_rate, sf_last, sf_config, sf_dir = sample_factory_frames_per_second(args, settings)
    print(f"Sample Factory frames/s: {sf_rate:,.0f} (its own last report: {sf_last}); log in {sf_dir}", flush=True)

    print(f"load average before seed_rl: {os.getloadavg()[0]:.2f}", flush=True)
    bench_args = SimpleNamespace(
        env=ENV, agent="impala", num_actors=args.num_actors, envs_per_actor=args.envs_per_actor,
        seconds=args.seconds, warmup_seconds=args.warmup_seconds,
    )
    seed_rate, seed_records, learner_share = training_frames_per_second(bench_args, extra)
    print(f"seed_rl frames/s: {seed_rate:,.0f} (learner process: {learner_share:.0%} of the machine's CPU)")
    if not all(record["frames"] > 0 and record["fps"] > 0 for record in seed_records):
        # bench_throughput's warm-up counts from the launch; Sample Factory's from its first trained frame.
        print("warning: seed_rl's measured summaries include some before training ran (start-up outlasted "
              "the warm-up): its rate is low; use a longer --warmup_seconds", flush=True)

    print()
    print(f"Pong, {args.num_actors} x {args.envs_per_actor} envs, {os.cpu_count()} cores, "
          f"{args.seconds:g} s each after {args.warmup_seconds:g} s of warm-up; environment frames "
          f"(agent steps x frame skip {settings.frame_skip}) per second of training:")
    print(f"  Sample Factory {sf_config.get('algo', 'APPO')}: {sf_rate:10,.0f}")
    print(f"  seed_rl IMPALA {' '.join(extra) or '(defaults)'}: {seed_rate:10,.0f}")
    print(f"  ratio seed_rl/SampleFactory: {seed_rate / sf_rate:.3f}")
    print("Sample Factory configuration: " + ", ".join(f"{k}={sf_config.get(k)}" for k in SF_SHOWN))
    print("What differs:")
    for line in differences(settings, sf_config):
        print(f"  - {line}")


if __name__ == "__main__":
    main()
