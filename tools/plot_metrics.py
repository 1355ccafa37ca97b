"""Plots learning curves from metrics.jsonl files against environment frames.

  .venv/bin/python tools/plot_metrics.py runs/atari_Pong-impala --panel policy_entropy \
      --out docs/pong_impala_cpu.png

The first panel is the 100-episode mean return (with the evaluation
environments' beside it, dashed, where a run has them); each ``--panel NAME``
adds one of another metric (e.g. ``policy_entropy``, ``loss/baseline``).
``--x train_steps`` plots against learner updates instead of frames. The title
gives each run's frames and wall-clock hours (from the records' ``time``, across
resumes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def load(logdir: Path) -> list[dict]:
    return [json.loads(line) for line in (logdir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def series(records: list[dict], key: str, x: str = "frames") -> tuple[list[float], list[float]]:
    scale = 1e6 if x == "frames" else 1e3
    points = [(r[x] / scale, r[key]) for r in records if r.get(key) is not None and r.get(x) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def wall_hours(records: list[dict]) -> float | None:
    """Hours of training: the sum of gaps between records, leaving out pauses of over 5 minutes (restarts)."""
    times = [r["time"] for r in records if "time" in r]
    gaps = [b - a for a, b in zip(times, times[1:]) if 0 <= b - a < 300]
    return sum(gaps) / 3600 if gaps else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logdirs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default=None)
    parser.add_argument("--label", action="append", default=None, help="legend label per logdir")
    parser.add_argument("--panel", action="append", default=[], help="another metric to plot below")
    parser.add_argument("--x", choices=["frames", "train_steps"], default="frames", help="the horizontal axis")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["episode_return_mean", *args.panel]
    fig, axes = plt.subplots(len(keys), 1, figsize=(6, 2.2 + 1.6 * len(keys)), dpi=100, sharex=True, squeeze=False)
    labels = args.label or [d.name for d in args.logdirs]
    summary = []
    for logdir, label in zip(args.logdirs, labels):
        records = load(logdir)
        for ax, key in zip(axes[:, 0], keys):
            ax.plot(*series(records, key, args.x), label=label)
        evaluation = series(records, "eval/episode_return_mean", args.x)
        if evaluation[0]:
            axes[0, 0].plot(*evaluation, linestyle="--", label=f"{label}: evaluation environments")
        hours = wall_hours(records)
        summary.append(f"{records[-1]['frames'] / 1e6:.1f}M frames" + (f", {hours:.1f} h" if hours else ""))
    axes[0, 0].set_ylabel("mean return\n(last 100 episodes)")
    for ax, key in zip(axes[1:, 0], keys[1:]):
        ax.set_ylabel(key)
    for ax in axes[:, 0]:
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("environment frames (millions)" if args.x == "frames" else "learner updates (thousands)")
    axes[0, 0].set_title(args.title or ", ".join(labels))
    if len(axes[0, 0].get_lines()) > 1:
        axes[0, 0].legend(fontsize=8)
    fig.text(0.99, 0.01, "; ".join(summary), ha="right", va="bottom", fontsize=7, color="gray")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
