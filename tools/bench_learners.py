"""What several data-parallel learner ranks cost and give: one update, and whole training runs.

  .venv/bin/python tools/bench_learners.py                               # 1 and 2 ranks, ~2-3 minutes
  .venv/bin/python tools/bench_learners.py --learners=1,2,4 --image --json=out.json
  .venv/bin/python tools/bench_learners.py --skip_end_to_end --updates=50

Part A, the update (in-process). For each rank count N of ``--learners``, N
processes (torch.multiprocessing's spawn, a gloo group over a file:// store,
``torch.set_num_threads(1)`` each) build each agent (IMPALA and R2D2 with the
presets' networks for a CartPole-sized vector, or with ``--image`` MinAtar's
10x10x4 planes and its torso) with ``LearnerRanks(rank, N)``, so N > 1 trains
through DistributedDataParallel. Every rank takes its ``B / N`` share of one
global batch of ``--batch_size`` sequences and times ``--updates`` of
``agent.train_step`` after a warm-up, between barriers. On the same ranks it
times the gradient all-reduce in isolation (one ``dist.all_reduce`` of a flat
float32 tensor with as many elements as the model has parameters) and
``LearnerRanks.exchange`` of 6 floats (the learner loop's control message per
iteration).

Part B, end to end. For each N: ``python -m seed_rl.train --learners=N`` on
CartPole with IMPALA and 2 actors of 8 environments, stopped with SIGINT after
``--warmup_seconds`` + ``--seconds``. Training frames/s over the measured window
come from metrics.jsonl (frames against its time stamps); the learner ranks'
CPU (user + system of the processes whose environment holds RANK, the launcher's
children; the launcher itself when N = 1) per 1,000 trained frames.

On a machine with fewer cores than processes the ranks share the cores: on 2
cores, 2 ranks (and their actors) cannot train faster than one, and the tables
show the overhead of the ranks; on a multi-GPU machine they show the scaling.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # ``seed_rl`` in spawned ranks started from any directory

from seed_rl.agents import registry  # noqa: E402
from benchlib.scaling_report import parse_counts  # noqa: E402
from benchlib.train_runs import read_metrics, wait_while_running  # noqa: E402
from benchlib.train_batches import batch_share, preset_config, training_batch  # noqa: E402
from seed_rl.core.learner_ranks import LearnerRanks, leave  # noqa: E402
from seed_rl.envs import EnvSpec  # noqa: E402

AGENTS = ("impala", "r2d2")
# (spec, the environment whose presets pick the network and the config)
VECTOR = (EnvSpec(observation_shape=(4,), observation_dtype="float32", num_actions=2), "CartPole-v1")
IMAGE = (EnvSpec(observation_shape=(4, 10, 10), observation_dtype="uint8", num_actions=6), "minatar:Breakout")
CONTROL_VALUES = 6  # floats in the learner loop's control message
ALL_REDUCE_REPEATS = 50
EXCHANGE_REPEATS = 200
END_TO_END_FLAGS = ["--env=CartPole-v1", "--agent=impala", "--num_actors=2", "--envs_per_actor=8",
                    "--log_interval_s=1", "--total_environment_frames=1000000000000",
                    "--checkpoint_interval_s=1000000000"]


# ---------------------------------------------------------------- part A: one update


@dataclass
class UpdateRow:
    """One agent's update on N ranks (times in seconds; collectives None on one rank)."""

    agent: str
    ranks: int
    batch_per_rank: int
    update_s: float
    update_cpu_s: float  # CPU seconds of all ranks together per update
    parameters: int
    all_reduce_s: float | None
    exchange_s: float | None


def build_agent(name: str, image: bool, batch_size: int, learner_ranks: LearnerRanks):
    """Agent ``name`` as ``seed_rl.train`` builds it for the vector (or MinAtar) presets, for ``learner_ranks``."""
    spec, env_name = IMAGE if image else VECTOR
    config = preset_config(name, env_name, spec, "cpu", batch_size=batch_size)
    torch.manual_seed(learner_ranks.rank)  # DistributedDataParallel copies rank 0's weights to the others
    run = registry.RunShape(total_environment_frames=10**9, frames_per_step=1, total_envs=32, ranks=learner_ranks)
    return registry.build(name, config, spec, torch.device("cpu"), run).agent, spec


def _timed(step, repeats: int, learner_ranks: LearnerRanks) -> tuple[float, float]:
    """Wall and CPU seconds per call of ``step()``, between barriers (the slowest rank's wall time)."""
    learner_ranks.barrier()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        step()
    learner_ranks.barrier()
    return (time.perf_counter() - wall0) / repeats, (time.process_time() - cpu0) / repeats


def time_agent(name: str, args: argparse.Namespace, learner_ranks: LearnerRanks) -> UpdateRow:
    """Times ``name``'s update on this rank's share, and the collectives on its model's size."""
    agent, spec = build_agent(name, args.image, args.batch_size, learner_ranks)
    batch = batch_share(training_batch(agent, spec, seed=0), learner_ranks.rank, learner_ranks.world_size)
    lock = threading.Lock()
    for _ in range(args.warmup_updates):
        agent.train_step(batch, lock)
    update_s, cpu_s = _timed(lambda: agent.train_step(batch, lock), args.updates, learner_ranks)
    total_cpu_s = learner_ranks.exchange([cpu_s])[0]
    parameters = sum(p.numel() for p in agent.model.parameters())
    all_reduce_s = exchange_s = None
    if learner_ranks.distributed:
        flat = torch.zeros(parameters, dtype=torch.float32)
        for _ in range(3):
            dist.all_reduce(flat)
        all_reduce_s = _timed(lambda: dist.all_reduce(flat), ALL_REDUCE_REPEATS, learner_ranks)[0]
        values = [0.0] * CONTROL_VALUES
        exchange_s = _timed(lambda: learner_ranks.exchange(values), EXCHANGE_REPEATS, learner_ranks)[0]
    return UpdateRow(name, learner_ranks.world_size, batch["reward"].shape[1], update_s, total_cpu_s, parameters,
                     all_reduce_s, exchange_s)


def _rank_main(rank: int, ranks: int, workdir: str, args: argparse.Namespace) -> None:
    """One spawned rank: joins the gloo group, times every agent, rank 0 writes the rows."""
    torch.set_num_threads(1)
    if ranks > 1:
        dist.init_process_group("gloo", init_method=f"file://{workdir}/store", rank=rank, world_size=ranks,
                                timeout=datetime.timedelta(seconds=120))
    try:
        learner_ranks = LearnerRanks(rank=rank, world_size=ranks, local_world_size=ranks)
        rows = [asdict(time_agent(name, args, learner_ranks)) for name in args.agent_names]
        if rank == 0:
            Path(workdir, "rows.json").write_text(json.dumps(rows))
    finally:
        if ranks > 1:
            leave()


def measure_updates(args: argparse.Namespace, ranks: int) -> list[UpdateRow]:
    """Every agent's :class:`UpdateRow` on ``ranks`` spawned processes."""
    with tempfile.TemporaryDirectory(prefix="bench_learners_") as workdir:
        mp.start_processes(_rank_main, args=(ranks, workdir, args), nprocs=ranks, join=True, start_method="spawn")
        return [UpdateRow(**row) for row in json.loads(Path(workdir, "rows.json").read_text())]


def _ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{1e3 * seconds:.2f}"


def update_table(rows: list[UpdateRow]) -> str:
    """Part A's markdown table; the ratio is each update's time over the same agent's on the fewest ranks."""
    lines = ["| agent | ranks | batch per rank | update ms | gradient all-reduce ms | control exchange µs "
             "| update time vs 1 rank |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        base = min((r for r in rows if r.agent == row.agent), key=lambda r: r.ranks)
        exchange = "—" if row.exchange_s is None else f"{1e6 * row.exchange_s:.0f}"
        lines.append(f"| {row.agent} | {row.ranks} | {row.batch_per_rank} | {_ms(row.update_s)} "
                     f"| {_ms(row.all_reduce_s)} | {exchange} | {row.update_s / base.update_s:.2f}x |")
    return "\n".join(lines)


# ---------------------------------------------------------------- part B: end to end


@dataclass
class RunRow:
    """One ``seed_rl.train --learners=N`` window."""

    ranks: int
    frames: int
    window_s: float
    training_fps: float
    learner_cpu_s: float  # CPU seconds of the learner ranks over the window

    @property
    def cpu_ms_per_kframe(self) -> float:
        return 1e6 * self.learner_cpu_s / self.frames if self.frames > 0 else math.nan


def _die_with_parent() -> None:
    """The run gets SIGKILL if this benchmark dies, so nothing outlives it."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rank_pids(launcher_pid: int) -> list[int]:
    """The pids of the launcher's children whose environment holds RANK (torchrun's ranks)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            if parent != launcher_pid:
                continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                names = {item.split(b"=", 1)[0] for item in f.read().split(b"\0")}
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if b"RANK" in names:
            found.append(int(entry))
    return sorted(found)


def _next_summary(metrics: Path, timeout_s: float, run: subprocess.Popen) -> int:
    """Waits for the next line of ``metrics``; the number of lines then."""
    count = len(read_metrics(metrics))
    deadline = time.monotonic() + timeout_s
    while len(read_metrics(metrics)) <= count:
        if run.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"no new summary in {metrics} (seed_rl.train exit code {run.poll()})")
        time.sleep(0.02)
    return len(read_metrics(metrics))


def _stop(run: subprocess.Popen) -> None:
    """SIGINT (the ranks write their final checkpoint and exit), SIGKILL if that takes too long."""
    if run.poll() is None:
        run.send_signal(signal.SIGINT)
    try:
        run.wait(timeout=60)
    except subprocess.TimeoutExpired:
        run.kill()
        run.wait()


def window_rate(records: list[dict], start: int) -> tuple[int, float]:
    """Frames trained and seconds from ``records[start - 1]`` to the last record (by their time stamps)."""
    first, last = records[start - 1], records[-1]
    return last["frames"] - first["frames"], last["time"] - first["time"]


def measure_run(args: argparse.Namespace, ranks: int, workdir: Path) -> RunRow:
    """Trains with ``ranks`` learner ranks for the warm-up and the window; the window's rates."""
    logdir = workdir / f"ranks{ranks}"
    metrics = logdir / "metrics.jsonl"
    argv = [sys.executable, "-m", "seed_rl.train", f"--learners={ranks}", f"--logdir={logdir}", *END_TO_END_FLAGS]
    with open(workdir / f"ranks{ranks}.log", "w") as log:
        run = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    try:
        wait_while_running(lambda: any(r["frames"] > 0 for r in read_metrics(metrics)), args.startup_timeout_s, run,
                  "waiting for the first trained frames")
        pids = rank_pids(run.pid) if ranks > 1 else [run.pid]
        if len(pids) != ranks:
            raise RuntimeError(f"found {len(pids)} learner rank processes, expected {ranks}")
        time.sleep(args.warmup_seconds)
        # The window runs from one summary to a later one, the CPU read as each appears, so both cover the same time.
        start = _next_summary(metrics, args.startup_timeout_s, run)
        cpu0 = sum(map(cpu_seconds, pids))
        time.sleep(args.seconds)
        _next_summary(metrics, args.startup_timeout_s, run)
        cpu1 = sum(map(cpu_seconds, pids))
        frames, seconds = window_rate(read_metrics(metrics), start)
    finally:
        _stop(run)
    return RunRow(ranks, frames, seconds, frames / seconds if seconds > 0 else math.nan, cpu1 - cpu0)


def run_table(rows: list[RunRow]) -> str:
    """Part B's markdown table; the ratio is frames/s over that of the fewest ranks."""
    base = rows[0].training_fps
    lines = ["| ranks | training frames/s | learner CPU ms per 1k frames | frames/s vs 1 rank |", "|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row.ranks} | {row.training_fps:,.0f} | {row.cpu_ms_per_kframe:,.0f} "
                     f"| {row.training_fps / base:.2f}x |")
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--learners", default="1,2", help="comma-separated learner rank counts")
    parser.add_argument("--agents", default=",".join(AGENTS), help="agents of part A")
    parser.add_argument("--batch_size", type=int, default=32,
                        help="global batch of part A (IMPALA's default; R2D2's vector and MinAtar presets')")
    parser.add_argument("--image", action="store_true", help="part A on MinAtar's 10x10x4 planes and its torso")
    parser.add_argument("--updates", type=int, default=20, help="timed updates per agent and rank count")
    parser.add_argument("--warmup_updates", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15.0, help="part B's measured window per rank count")
    parser.add_argument("--warmup_seconds", type=float, default=8.0, help="part B's warm-up after the first frames")
    parser.add_argument("--startup_timeout_s", type=float, default=120.0)
    parser.add_argument("--skip_end_to_end", action="store_true", help="part A only")
    parser.add_argument("--json", help="write both parts' numbers to this JSON file")
    args = parser.parse_args(argv)
    args.rank_counts = parse_counts(parser, args.learners, "--learners", "1,2")
    args.agent_names = args.agents.split(",")
    if set(args.agent_names) - set(AGENTS):
        parser.error(f"--agents must be among {', '.join(AGENTS)}, got {args.agents!r}")
    uneven = [n for n in args.rank_counts if args.batch_size % n]
    if uneven:
        parser.error(f"--batch_size={args.batch_size} does not split over {uneven[0]} ranks")
    if args.updates < 1 or args.seconds <= 0:
        parser.error("--updates and --seconds must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result: dict = {"cpu_count": os.cpu_count(), "image": args.image, "batch_size": args.batch_size,
                    "load_before": os.getloadavg()[0]}
    updates: list[UpdateRow] = []
    for ranks in args.rank_counts:
        updates += measure_updates(args, ranks)
        print(f"  part A: {ranks} rank(s) timed", flush=True)
    result["updates"] = [asdict(row) for row in updates]
    print(f"\nPart A: one update, global batch {args.batch_size}, {'MinAtar 10x10x4' if args.image else 'vector'} "
          f"observations, 1 thread per rank, {os.cpu_count()} CPU cores\n")
    print(update_table(updates))
    if not args.skip_end_to_end:
        runs = []
        with tempfile.TemporaryDirectory(prefix="bench_learners_runs_") as workdir:
            for ranks in args.rank_counts:
                runs.append(measure_run(args, ranks, Path(workdir)))
                print(f"  part B: {ranks} rank(s): {runs[-1].frames} frames in {runs[-1].window_s:.1f} s", flush=True)
        result["runs"] = [{**asdict(row), "cpu_ms_per_kframe": row.cpu_ms_per_kframe} for row in runs]
        print(f"\nPart B: seed_rl.train {' '.join(END_TO_END_FLAGS)}, "
              f"windows of {args.seconds:g} s to the next summary\n")
        print(run_table(runs))
    result["load_after"] = os.getloadavg()[0]
    print(f"\nload average before {result['load_before']:.2f}, after {result['load_after']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as e:
        sys.exit(f"error: {e}")
