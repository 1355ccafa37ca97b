"""``seed_rl.train --learners=N``: N learner ranks on this machine, started by torchrun's own launcher.

The same as ``torchrun --standalone --nproc_per_node=N --max-restarts=K -m
seed_rl.train <the other flags>``, run in this process with
``torch.distributed.launcher.elastic_launch``, so that Ctrl-C ends with the
ranks' final checkpoint and one line instead of torchrun's traceback.
"""

from __future__ import annotations

import logging
import sys
import uuid

log = logging.getLogger("seed_rl.train")

# Seconds the ranks get to write their final checkpoint after Ctrl-C or SIGTERM before they are killed.
SHUTDOWN_TIMEOUT_S = 600


def run_learner_ranks(ranks: int, max_restarts: int, train_argv: list[str]) -> str | None:
    """Runs ``python -m seed_rl.train *train_argv --learners=1`` as ``ranks`` learner ranks; an error line, or None.

    ``train_argv`` is this command's own line: the ``--learners=1`` after it (the last value of a flag
    wins) makes each rank a learner instead of another launcher, whichever way ``--learners`` was written.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=ranks,
        # torchrun --standalone: a rendezvous on a free local port.
        rdzv_backend="c10d", rdzv_endpoint="localhost:0", run_id=str(uuid.uuid4()),
        max_restarts=max_restarts, monitor_interval=0.5, shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )
    log.info("starting %d learner ranks (torchrun, %d restart(s) after a rank fails)", ranks, max_restarts)
    try:
        elastic_launch(config, sys.executable)("-m", "seed_rl.train", *train_argv, "--learners=1")
    except SignalException as e:
        log.info("the learner ranks stopped on signal %s", e.sigval)
    except ChildFailedError as e:
        failures = ", ".join(f"rank {rank} (exit {failure.exitcode})" for rank, failure in sorted(e.failures.items()))
        return f"learner {failures} failed; its error is above"
    return None
