"""How far an agent's first updates move each part of its network, on real frames, without a training run.

  .venv/bin/python tools/update_ratios.py --agent=r2d2 --env=atari:Pong
  .venv/bin/python tools/update_ratios.py --agent=r2d2 --env=atari:Pong --set adam_epsilon=1e-3
  .venv/bin/python tools/update_ratios.py --agent=impala --env=atari:Pong
  .venv/bin/python tools/update_ratios.py --agent=r2d2 --env=atari:Pong --preset=gpu   # the GPU preset's shapes, here

Builds the agent as ``seed_rl.train`` would on a CPU learner (the agent's
defaults under the family's preset; ``--preset=gpu``: as on a GPU learner, still
computed on this CPU; ``--set NAME=VALUE`` overrides a field, as a flag would), plays ``--batches`` batches of real frames with the agent's
own acting (past the first ``--warmup`` steps of each episode), then applies
``--updates`` default updates, cycling over those batches. Printed per part of
the network (torso, core, heads), after the first update and after the last
(see ``seed_rl/learner/update_stats.py``): the update's norm over the weights',
the update over the nominal step (1: every entry moved by the learning rate),
the fraction of entries whose second-moment root is below the optimizer's
epsilon, and the per-entry gradient RMS of the first update.
"""

from __future__ import annotations

import argparse

import torch

from benchlib.update_ratios import measure, parse_overrides
from seed_rl.learner.update_stats import PARTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", default="r2d2")
    parser.add_argument("--env", default="atari:Pong")
    parser.add_argument("--preset", choices=["cpu", "gpu"], default="cpu", help="the CPU or the GPU learner's preset")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="config fields to override")
    parser.add_argument("--updates", type=int, default=12)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=300, help="steps played before a batch starts (Pong: points)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    overrides = parse_overrides(args.set)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    first, last = measure(args.agent, args.env, overrides, args.updates, args.batches, args.warmup, args.seed,
                          args.preset)
    shown = " ".join(f"--{k}={v}" for k, v in overrides.items()) or "(the preset as it is)"
    print(f"{args.agent} on {args.env}, {args.preset.upper()} preset {shown}; {args.updates} updates over {args.batches} real batches")
    print(f"{'part':<6} {'grad RMS':>9} | {'update/weights':>14} {'/ nominal':>9} {'below eps':>9} | "
          f"{'update/weights':>14} {'/ nominal':>9} {'below eps':>9}")
    print(f"{'':<6} {'update 1':>9} | {'update 1':^34} | {f'update {args.updates}':^34}")
    for part in (p for p in PARTS if f"update/{p}_ratio" in first):  # IMPALA without an LSTM has no core
        def cells(row):
            return (f"{row.get(f'update/{part}_ratio', float('nan')):>14.2e} "
                    f"{row.get(f'update/{part}_nominal', float('nan')):>9.3f} "
                    f"{row.get(f'update/{part}_below_eps', float('nan')):>9.1%}")
        print(f"{part:<6} {first.get(f'grad_rms/{part}', float('nan')):>9.2e} | {cells(first)} | {cells(last)}")


if __name__ == "__main__":
    main()
