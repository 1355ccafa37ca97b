"""A stand-in learner rank for tests of the torchrun launch: ``python -m torchrun_probe DIR``.

Writes ``DIR/rank-<LOCAL_RANK>`` with its world size once started, then waits;
SIGINT ends it with exit code 0 after writing ``DIR/stopped-<LOCAL_RANK>``,
as a learner rank ends after its final checkpoint.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def main() -> None:
    out = Path(sys.argv[1])
    rank = os.environ["LOCAL_RANK"]
    stop = []
    signal.signal(signal.SIGINT, lambda signum, frame: stop.append(signum))
    (out / f"rank-{rank}").write_text(os.environ["WORLD_SIZE"])
    while not stop:
        time.sleep(0.05)
    (out / f"stopped-{rank}").write_text("")


if __name__ == "__main__":
    main()
