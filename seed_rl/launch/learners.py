"""N data-parallel learner ranks on one machine: the one place that starts them, for every launcher.

One learner (``--learners=1``, the default) is ``python -m seed_rl.train``
itself. N > 1 ranks are torchrun's: ``python -m torch.distributed.run
--standalone --nproc_per_node=N --max-restarts=K -m seed_rl.train ...`` (the Ray
and Vertex AI launchers run that command, :func:`learner_module_argv`), or the
same launch run in-process by ``seed_rl.train --learners=N``
(:func:`run_learner_ranks`). The rank with ``LOCAL_RANK=r`` listens on
``PORT + r``, and after one rank dies torchrun restarts them all (up to K times;
they resume from the last checkpoint). Actors get the ranks' addresses as one
comma-separated ``--learner_address`` in rank order (:func:`learner_addresses`);
which actor a rank serves is ``seed_rl.core.learner_rank_rule``'s.
"""

from __future__ import annotations

import logging
import sys
import uuid

from seed_rl.core.learner_rank_rule import rank_port

log = logging.getLogger("seed_rl.train")

TORCHRUN_MODULE = "torch.distributed.run"
TRAIN_MODULE = "seed_rl.train"
MAX_PORT = 65535
# Seconds the ranks get to write their final checkpoint after Ctrl-C or SIGTERM before they are killed.
SHUTDOWN_TIMEOUT_S = 600


class LearnersError(ValueError):
    """``--learners`` or ``--learner_max_restarts`` cannot work; the message names the flag."""


def check_learners(learners: int, max_restarts: int = 0, port: int | None = None) -> None:
    """Refuses N < 1, K < 0, K > 0 for one learner, and ranks' ports past 65535."""
    if learners < 1:
        raise LearnersError(f"--learners={learners}: need at least one learner rank")
    if max_restarts < 0:
        raise LearnersError(f"--learner_max_restarts={max_restarts}: must be 0 or more")
    if max_restarts and learners == 1:
        raise LearnersError(
            f"--learner_max_restarts={max_restarts} needs --learners > 1 (torchrun restarts the ranks); "
            "a single learner is not restarted, rerunning the launcher resumes it from its last checkpoint"
        )
    if port is not None and rank_port(port, learners - 1) > MAX_PORT:
        raise LearnersError(
            f"--learners={learners} ranks listen on ports {port}..{rank_port(port, learners - 1)}, past {MAX_PORT}"
        )


def learner_module_argv(learners: int, max_restarts: int = 0) -> list[str]:
    """What follows ``python -m`` to start the learner: ``seed_rl.train`` itself, or torchrun running it on N ranks."""
    check_learners(learners, max_restarts)
    if learners == 1:
        return [TRAIN_MODULE]
    return [
        TORCHRUN_MODULE, "--standalone", f"--nproc_per_node={learners}", f"--max-restarts={max_restarts}",
        "-m", TRAIN_MODULE,
    ]


def learner_addresses(host: str, port: int, learners: int) -> str:
    """The actors' ``--learner_address``: ``host:port``, or every rank's ``host:port+r`` joined by commas."""
    check_learners(learners, port=port)
    return ",".join(f"{host}:{rank_port(port, rank)}" for rank in range(learners))


def run_learner_ranks(ranks: int, max_restarts: int, train_argv: list[str]) -> str | None:
    """``seed_rl.train --learners=N``: runs ``python -m seed_rl.train *train_argv --learners=1`` as ``ranks``
    learner ranks with torchrun's launcher (``elastic_launch``) in this process, so that Ctrl-C ends with the
    ranks' final checkpoint and one line instead of torchrun's traceback. Returns an error line, or None.

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
        elastic_launch(config, sys.executable)("-m", TRAIN_MODULE, *train_argv, "--learners=1")
    except SignalException as e:
        log.info("the learner ranks stopped on signal %s", e.sigval)
    except ChildFailedError as e:
        failures = ", ".join(f"rank {rank} (exit {failure.exitcode})" for rank, failure in sorted(e.failures.items()))
        return f"learner {failures} failed; its error is above"
    return None
