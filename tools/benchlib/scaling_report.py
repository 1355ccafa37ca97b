"""The report of ``tools/bench_scaling.py``: one measured point per actor count, its window and its table."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class Point:
    actors: int
    envs: int
    training_fps: float
    raw_fps: float
    raw_frames_per_cpu_s: float  # raw env frames per CPU-second of the stepping processes
    inference_batch: float  # mean environments per inference call
    learner_cpu: float  # cores used by the learner process during the window
    actors_cpu: float  # cores used by all actor processes together
    machine_cpu: float  # cores busy on the whole machine (this benchmark and anything else)
    window_s: float
    summaries: int

    def cpu_us_per_frame(self) -> tuple[float, float, float]:
        """CPU microseconds per frame of the learner, of the actors, and of raw env stepping.

        What a frame costs each side, which contention for the cores changes far
        less than frames/s.
        """
        return (
            _ratio(1e6 * self.learner_cpu, self.training_fps),
            _ratio(1e6 * self.actors_cpu, self.training_fps),
            _ratio(1e6, self.raw_frames_per_cpu_s),
        )

    @property
    def other_cpu(self) -> float:
        """Cores busy with anything but the learner and the actors (other users of the machine)."""
        return max(0.0, self.machine_cpu - self.learner_cpu - self.actors_cpu)

    def to_json(self) -> dict:
        us = [None if math.isnan(v) else v for v in self.cpu_us_per_frame()]
        return {**asdict(self), "other_cpu": self.other_cpu, "cpu_us_per_frame": dict(zip(("learner", "actors", "raw_env"), us))}


def _ratio(a: float, b: float) -> float:
    """a / b, NaN where b is not positive (e.g. no frames in a window), so reports print n/a."""
    return a / b if b > 0 else math.nan


def _fmt(value: float, spec: str, suffix: str = "") -> str:
    return "n/a" if math.isnan(value) else format(value, spec) + suffix


def window_rate(
    records: list[dict], start: int, end: int, log_interval_s: float = 1.0
) -> tuple[float, float, float]:
    """Frames/s, seconds covered and mean inference batch over ``records[start:end]``.

    Each summary holds the frames reached and the frames/s since the previous
    one, so its duration is the frame difference over that rate (a summary
    without frames counts ``log_interval_s``).
    """
    frames = seconds = 0.0
    batches = []
    for previous, record in zip(records[start - 1 : end - 1], records[start:end]):
        delta = record["frames"] - previous["frames"]
        frames += delta
        seconds += delta / record["fps"] if record["fps"] > 0 else log_interval_s
        if record.get("inference_batch_size"):
            batches.append(record["inference_batch_size"])
    return frames / seconds, seconds, sum(batches) / len(batches) if batches else 0.0


def format_table(points: list[Point], cpus: int) -> str:
    base = points[0].training_fps
    header = (
        f"| actors | envs | training frames/s | vs {points[0].actors} actor{'s' * (points[0].actors > 1)} "
        f"| raw env frames/s | training/raw | CPU µs/frame: learner, actors (raw env) | mean inference batch (of envs) "
        f"| learner CPU | actors CPU | other CPU | machine CPU (of {cpus}) |"
    )
    rows = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for p in points:
        learner_us, actors_us, raw_us = p.cpu_us_per_frame()
        rows.append(
            f"| {p.actors} | {p.envs} | {p.training_fps:,.0f} | {_fmt(_ratio(p.training_fps, base), '.2f', 'x')} "
            f"| {p.raw_fps:,.0f} | {_fmt(_ratio(p.training_fps, p.raw_fps), '.3f')} "
            f"| {_fmt(learner_us, '.0f')}, {_fmt(actors_us, '.0f')} ({_fmt(raw_us, '.1f')}) "
            f"| {p.inference_batch:.1f} ({p.inference_batch / p.envs:.0%}) "
            f"| {p.learner_cpu:.2f} | {p.actors_cpu:.2f} | {p.other_cpu:.2f} | {p.machine_cpu:.2f} |"
        )
    return "\n".join(rows)


def summary_lines(points: list[Point], cpus: int) -> list[str]:
    first, last, best = points[0], points[-1], max(points, key=lambda p: p.training_fps)
    lines = []
    if len(points) > 1:
        lines.append(
            f"{first.actors} -> {last.actors} actors: training frames/s "
            f"{_fmt(_ratio(last.training_fps, first.training_fps), '.2f', 'x')} "
            f"(ideal {last.actors / first.actors:.1f}x); peak {best.training_fps:,.0f} at {best.actors} actors"
        )
    idle = [p.actors for p in points if p.training_fps <= 0]
    if idle:
        lines.append(f"no frames were trained in the window with {idle[0]} actor(s); raise --warmup_seconds and --seconds")
    saturated = [p.actors for p in points if p.machine_cpu >= 0.9 * cpus]
    if saturated:
        lines.append(
            f"CPU-bound from {saturated[0]} actor(s) on: the machine's {cpus} cores were >= 90% busy, so frames/s "
            f"there is bounded by the CPU the learner and actors got, not by the transport"
        )
    others = [p.other_cpu for p in points]
    if max(others) > 0.1 * cpus:
        lines.append(
            f"other work used {min(others):.2f}-{max(others):.2f} cores during the windows; more processes win a "
            f"larger share of contended cores, so part of any gain is CPU share; CPU µs per frame is less affected"
        )
    return lines


def parse_counts(parser, text: str, flag: str, example: str) -> list[int]:
    """``text`` ("1,2,4") as counts >= 1; anything else ends the tool through ``parser.error`` naming ``flag``."""
    try:
        counts = [int(n) for n in text.split(",")]
    except ValueError:
        parser.error(f"{flag} must be comma-separated integers like {example}, got {text!r}")
    if not counts or min(counts) < 1:
        parser.error(f"{flag} must list counts >= 1, got {text!r}")
    return counts
