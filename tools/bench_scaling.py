"""Training frames/s against the number of actors, with actors on separate hosts.

  .venv/bin/python tools/bench_scaling.py                      # netns mode (root), 1,2,4,8 actors
  .venv/bin/python tools/bench_scaling.py --mode=processes --actors=1,2,4 --json=out.json --plot=out.png

For each actor count N:

1. ``python -m seed_rl.train --role=learner`` and N ``python -m seed_rl.actor``
   processes. ``--mode=netns`` (default) gives the learner and every actor
   its own network namespace (a private "host", see ``tools/benchlib/netns_hosts.py``) on a
   bridge, with addresses in 10.200.0.0/24, so actors reach the learner over a
   veth link through the learner's non-loopback address, as actors on other
   machines would. ``--mode=processes`` runs them as processes on loopback.
2. After every actor has connected and ``--warmup_seconds`` have passed,
   ``--seconds`` of steady state are measured: training frames/s from the
   learner's metrics.jsonl, the mean inference batch, and the CPU time used by
   the learner, by the actors and by the whole machine (other work included).
3. The raw env frames/s of N processes stepping the same K environments with
   random actions (no learner, no transport) on the same cores, for reference.

The environment (CartPole-v1) and the agent (IMPALA with an MLP, batches of 8
unrolls) are cheap, so the transport and the dynamic batching are what is
measured. All processes share this machine's cores: once they are busy,
frames/s is bound by the CPU these processes get, not by the transport; the CPU
columns show it, and the CPU microseconds per frame stay comparable.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib.learner_flags import learner_security_flags
from benchlib.netns_hosts import NetnsUnavailable, PrivateHosts, remove_stale, unavailable_reason
from benchlib.raw_rates import raw_rates
from benchlib.train_runs import read_metrics, wait_while_running
from benchlib.scaling_report import Point, format_table, parse_counts, summary_lines, window_rate
from seed_rl.envs.factory import frames_per_step

ROOT = Path(__file__).resolve().parent.parent
# Cheap learner: IMPALA's MLP torso on vector observations; batches of 8 unrolls
# of 20 steps, as the CartPole configuration in docs/results.md.
CHEAP_AGENT_FLAGS = ["--agent=impala", "--unroll_length=20", "--batch_size=8"]
NETNS_PORT = 8686  # the learner's namespace is private, so a fixed port cannot collide
LOG_INTERVAL_S = 1.0


# ---------------------------------------------------------------- processes


def _die_with_parent() -> None:
    """Child processes get SIGKILL if the benchmark dies, so nothing outlives a killed run."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _start(argv: list[str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "w") as log:
        return subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)


def _stop(learner: subprocess.Popen | None, actors: list[subprocess.Popen]) -> None:
    if learner is not None and learner.poll() is None:
        learner.send_signal(signal.SIGINT)
    for actor in actors:
        if actor.poll() is None:
            actor.terminate()
    for process, grace in [(learner, 30.0)] + [(a, 5.0) for a in actors]:
        if process is None:
            continue
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (0 once it has exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK")


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no output)"


# ---------------------------------------------------------------- topology


class Topology:
    """Where the learner listens and how a process is started on a host."""

    def __init__(self, mode: str, max_actors: int):
        self.mode = mode
        self.hosts: PrivateHosts | None = None
        if mode == "netns":
            remove_stale()
            self.hosts = PrivateHosts(["learner"] + [f"actor{i}" for i in range(max_actors)]).__enter__()
            self.learner_address = f"{self.hosts.address('learner')}:{NETNS_PORT}"
        else:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.learner_address = f"127.0.0.1:{s.getsockname()[1]}"

    def command(self, host: str, argv: list[str]) -> list[str]:
        return self.hosts.command(host, argv) if self.hosts else argv

    def learner_listening(self) -> bool:
        """Whether something accepts connections at the learner's address (on the learner's host)."""
        host, port = self.learner_address.rsplit(":", 1)
        if self.hosts is None:
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                return True
            except OSError:
                return False
        listening = subprocess.run(
            self.command("learner", ["ss", "-ltnH", f"sport = :{port}"]), capture_output=True, text=True
        )
        return bool(listening.stdout.strip())

    def describe(self) -> str:
        if self.hosts is None:
            return f"processes on loopback, learner at {self.learner_address}"
        return (
            f"network namespaces {self.hosts.namespace('learner')} (learner, {self.learner_address}) and "
            f"{self.hosts.namespace('actor0')}.. (actors, {self.hosts.address('actor0')}..) on a bridge"
        )

    def close(self) -> None:
        if self.hosts is not None:
            self.hosts.close()


# ---------------------------------------------------------------- measurement


def _wait(condition, timeout_s: float, learner: subprocess.Popen, log: Path, what: str) -> None:
    wait_while_running(condition, timeout_s, learner, what, lambda: f"; learner output:\n{_tail(log)}")


def measure_point(args, topology: Topology, actors: int, workdir: Path, learner_flags: list[str]) -> Point:
    logdir = workdir / f"actors{actors}"
    logdir.mkdir()
    learner_log, metrics = logdir / "learner.log", logdir / "metrics.jsonl"
    env_flags = [f"--env={args.env}", f"--envs_per_actor={args.envs_per_actor}"]
    learner_argv = [
        sys.executable, "-m", "seed_rl.train", "--role=learner", f"--learner_address={topology.learner_address}",
        *env_flags, f"--num_actors={actors}", f"--logdir={logdir}", "--total_environment_frames=1000000000000",
        f"--log_interval_s={LOG_INTERVAL_S}", "--checkpoint_interval_s=1000000000", *CHEAP_AGENT_FLAGS, *learner_flags,
    ]
    learner, actor_processes = None, []
    try:
        learner = _start(topology.command("learner", learner_argv), learner_log)
        _wait(topology.learner_listening, args.startup_timeout_s, learner, learner_log,
              f"waiting for the learner to listen on {topology.learner_address}")
        for i in range(actors):
            argv = [sys.executable, "-m", "seed_rl.actor", f"--learner_address={topology.learner_address}",
                    *env_flags, f"--actor_id={i}", *shlex.split(args.actor_extra_flags)]
            actor_processes.append(_start(topology.command(f"actor{i}", argv), logdir / f"actor{i}.log"))

        def all_connected() -> bool:
            records = read_metrics(metrics)
            return bool(records) and records[-1].get("actors_connected", 0) >= actors

        _wait(all_connected, args.startup_timeout_s, learner, learner_log, f"waiting for {actors} actors to connect")
        time.sleep(args.warmup_seconds)

        pids = [p.pid for p in actor_processes]
        start_line, start_time = len(read_metrics(metrics)), time.monotonic()
        cpu0 = (_cpu_seconds(learner.pid), sum(map(_cpu_seconds, pids)), _machine_busy_seconds())
        time.sleep(args.seconds)
        # A loaded machine can summarise less often than every LOG_INTERVAL_S: the window then runs on until it
        # holds two summaries (a rate needs them), for at most --startup_timeout_s more.
        deadline = time.monotonic() + args.startup_timeout_s
        while len(read_metrics(metrics)) - start_line < 2 and time.monotonic() < deadline and learner.poll() is None:
            time.sleep(0.2)
        cpu1 = (_cpu_seconds(learner.pid), sum(map(_cpu_seconds, pids)), _machine_busy_seconds())
        wall = time.monotonic() - start_time
        records = read_metrics(metrics)
        if learner.poll() is not None:
            raise RuntimeError(f"the learner exited with code {learner.returncode} during the measurement:\n{_tail(learner_log)}")
        dead = [i for i, p in enumerate(actor_processes) if p.poll() is not None]
        if dead:
            raise RuntimeError(f"actor {dead[0]} exited during the measurement:\n{_tail(logdir / f'actor{dead[0]}.log')}")
        if len(records) - start_line < 2:
            raise RuntimeError(f"only {len(records) - start_line} summaries in the {wall:.0f} s window; raise --seconds")
        fps, covered, batch = window_rate(records, start_line, len(records), LOG_INTERVAL_S)
    finally:
        _stop(learner, actor_processes)
    learner_cpu, actors_cpu, machine_cpu = ((b - a) / wall for a, b in zip(cpu0, cpu1))
    return Point(actors, actors * args.envs_per_actor, fps, 0.0, 0.0, batch, learner_cpu, actors_cpu, machine_cpu,
                 covered, len(records) - start_line)


# ---------------------------------------------------------------- report


def write_plot(points: list[Point], path: str, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("error: --plot needs matplotlib; install the plot extra: pip install -e '.[plot]'")
    x = [p.actors for p in points]
    fig, (rate, cpu) = plt.subplots(1, 2, figsize=(10, 4))
    rate.plot(x, [p.training_fps for p in points], "o-", label="training")
    rate.plot(x, [p.raw_fps for p in points], "s--", label="raw env (no learner)")
    rate.set(xlabel="actors", ylabel="frames/s", xscale="log", xticks=x, xticklabels=x, title=title)
    rate.minorticks_off()
    rate.legend()
    for label, key in (("learner", "learner_cpu"), ("actors", "actors_cpu"), ("whole machine", "machine_cpu")):
        cpu.plot(x, [getattr(p, key) for p in points], "o-", label=label)
    cpu.axhline(os.cpu_count(), color="gray", linestyle=":", label="cores")
    cpu.set(xlabel="actors", ylabel="CPU cores busy", xscale="log", xticks=x, xticklabels=x)
    cpu.minorticks_off()
    cpu.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["netns", "processes"], default="netns",
                        help="netns: learner and actors on private network namespaces (root); processes: loopback")
    parser.add_argument("--actors", default="1,2,4,8", help="comma-separated actor counts")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--envs_per_actor", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured steady state per actor count")
    parser.add_argument("--warmup_seconds", type=float, default=5.0, help="after every actor connected")
    parser.add_argument("--raw_seconds", type=float, default=5.0, help="raw env measurement per actor count")
    parser.add_argument("--startup_timeout_s", type=float, default=90.0)
    parser.add_argument("--learner_extra_flags", default="", help="more seed_rl.train flags, e.g. '--torch_threads=1'")
    parser.add_argument("--actor_extra_flags", default="", help="more seed_rl.actor flags")
    parser.add_argument("--json", help="write the results to this JSON file")
    parser.add_argument("--plot", help="write a plot to this image file (needs matplotlib)")
    args = parser.parse_args(argv)
    args.actor_counts = parse_counts(parser, args.actors, "--actors", "1,2,4,8")
    if args.envs_per_actor < 1:
        parser.error(f"--envs_per_actor must be >= 1, got {args.envs_per_actor}")
    if args.seconds < 2 * LOG_INTERVAL_S:
        parser.error(f"--seconds must be at least {2 * LOG_INTERVAL_S:.0f} (the learner summarises every {LOG_INTERVAL_S:.0f} s)")
    if args.mode == "netns" and unavailable_reason():
        parser.error(f"--mode=netns: {unavailable_reason()}")
    return args


def run(args: argparse.Namespace) -> tuple[dict, list[Point]]:
    cpus = os.cpu_count() or 1
    load_before = os.getloadavg()
    frame_skip = frames_per_step(args.env)
    topology = Topology(args.mode, max(args.actor_counts))
    points = []
    try:
        extra = shlex.split(args.learner_extra_flags)
        learner_flags = learner_security_flags(topology.learner_address, extra) + extra
        print(f"{args.mode}: {topology.describe()}", flush=True)
        print(f"learner flags: {' '.join(CHEAP_AGENT_FLAGS + learner_flags)}", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench_scaling_") as workdir:
            for n in args.actor_counts:
                point = measure_point(args, topology, n, Path(workdir), learner_flags)
                point.raw_fps, point.raw_frames_per_cpu_s = raw_rates(
                    args.env, n, args.envs_per_actor, args.raw_seconds, frame_skip
                )
                print(
                    f"  {n} actors: training {point.training_fps:,.0f} frames/s over {point.window_s:.1f} s, "
                    f"raw {point.raw_fps:,.0f}, mean batch {point.inference_batch:.1f}, "
                    f"CPU learner {point.learner_cpu:.2f} actors {point.actors_cpu:.2f} machine {point.machine_cpu:.2f}",
                    flush=True,
                )
                points.append(point)
    finally:
        topology.close()
    load_after = os.getloadavg()
    print()
    print(f"{args.env}, {args.envs_per_actor} envs per actor, {args.mode} mode, {cpus} CPU cores; "
          f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print(format_table(points, cpus))
    print("\n".join(summary_lines(points, cpus)))
    result = {
        "mode": args.mode, "env": args.env, "envs_per_actor": args.envs_per_actor, "cpu_count": cpus,
        "learner_flags": CHEAP_AGENT_FLAGS + learner_flags, "load_before": load_before, "load_after": load_after,
        "points": [p.to_json() for p in points],
    }
    return result, points


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # Ctrl-C and SIGTERM run the cleanup in `finally` blocks, even when started with SIGINT
    # ignored (as a background job of a non-interactive shell is).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        result, points = run(args)
    except KeyboardInterrupt:
        sys.exit("interrupted; learner, actors and namespaces were removed")
    except (RuntimeError, NetnsUnavailable) as e:
        sys.exit(f"error: {e}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.plot:
        write_plot(points, args.plot,
                   f"{args.env}, {args.envs_per_actor} envs/actor, {args.mode}")


if __name__ == "__main__":
    main()
