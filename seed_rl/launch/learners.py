"""N data-parallel learner ranks on one machine, as the Ray and Vertex AI launchers start them.

One learner (``--learners=1``, the default) is today's ``python -m seed_rl.train
--role=learner --learner_address=HOST:PORT``, and actors dial ``HOST:PORT``.
N > 1 ranks are one process, ``python -m torch.distributed.run --standalone
--nproc_per_node=N --max-restarts=K -m seed_rl.train --role=learner ...``:
torchrun starts the ranks on this machine, the rank with ``LOCAL_RANK=r``
listens on ``PORT + r``, and after one rank dies torchrun restarts them all
(up to K times; they resume from the last checkpoint). Actors get the ranks'
addresses as one comma-separated ``--learner_address`` in rank order, and actor
i dials entry ``i % N``.
"""

from __future__ import annotations

TORCHRUN_MODULE = "torch.distributed.run"
TRAIN_MODULE = "seed_rl.train"
MAX_PORT = 65535


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
    if port is not None and port + learners - 1 > MAX_PORT:
        raise LearnersError(f"--learners={learners} ranks listen on ports {port}..{port + learners - 1}, past {MAX_PORT}")


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
    return ",".join(f"{host}:{port + rank}" for rank in range(learners))
