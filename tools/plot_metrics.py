"""Plots mean episode return against environment frames from metrics.jsonl files.

  .venv/bin/python tools/plot_metrics.py runs/pong_impala_cpu --out docs/pong_impala_cpu.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def load(logdir: Path) -> tuple[list[int], list[float]]:
    frames, returns = [], []
    for line in (logdir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("episode_return_mean") is not None:
            frames.append(record["frames"])
            returns.append(record["episode_return_mean"])
    return frames, returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logdirs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default=None)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for logdir in args.logdirs:
        frames, returns = load(logdir)
        ax.plot([f / 1e6 for f in frames], returns, label=logdir.name)
    ax.set_xlabel("environment frames (millions)")
    ax.set_ylabel("mean return (last 100 episodes)")
    ax.set_title(args.title or ", ".join(d.name for d in args.logdirs))
    ax.grid(alpha=0.3)
    if len(args.logdirs) > 1:
        ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
