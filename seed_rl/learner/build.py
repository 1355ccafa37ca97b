"""Starts the learner a :class:`~seed_rl.learner.plan.RunPlan` describes, and runs it with its endpoints and local actors.

:func:`build_learner` joins the learner ranks, plans the run from the train
command's flags (``plan.py``: configs, presets, spec, precision, address and
security, all user errors), then starts what the plan describes: it builds the
agent, takes the logdir's lock, restores the newest checkpoint and binds the
transport endpoints. :func:`run_learner` serves actors, starts ``--role=local``'s
actor processes and trains until the frame budget is spent, a signal or an
actor's user error. User errors are raised as :class:`LearnerBuildError`, one line each.
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass

import torch
from absl import flags

from seed_rl.agents import registry
from seed_rl.core import learner_ranks
from seed_rl.core.precision import enable_tf32
from seed_rl.launch.local_actors import LocalActors
from seed_rl.learner.checkpoint import CheckpointWriteError
from seed_rl.learner.logdir_lock import LogdirInUse, LogdirLock
from seed_rl.learner.loop import Learner, TrainingDiverged
from seed_rl.learner.plan import LearnerBuildError, RunPlan, plan_run
from seed_rl.learner.run_config import CheckpointMismatch, RunConfig
from seed_rl.learner.serving import Endpoints
from seed_rl.transport.security import local_client_security

log = logging.getLogger("seed_rl.train")


@dataclass
class BuiltLearner:
    """A learner with its endpoints bound (not yet serving), and the plan it was started from."""

    plan: RunPlan
    learner: Learner
    endpoints: Endpoints
    lock: LogdirLock | None  # rank 0's, held until run_learner returns (or the process ends)


def build_learner(flag_values: flags.FlagValues, serve_shm: bool) -> BuiltLearner:
    """The learner the train command's flags describe, its endpoints bound, its checkpoint restored.

    ``serve_shm``: also serve the actors on this machine over shared memory.

    Raises:
      LearnerBuildError: a flag, environment, address or checkpoint the run cannot use.
    """
    try:
        ranks, device = learner_ranks.join(flag_values.device, flag_values.collective_timeout_s)
    except ValueError as e:
        raise LearnerBuildError(f"{e}") from None
    return start_learner(plan_run(flag_values, ranks, device, serve_shm))


def start_learner(plan: RunPlan) -> BuiltLearner:
    """Builds the plan's agent and learner, takes the logdir, restores its checkpoint and binds the endpoints.

    Raises:
      LearnerBuildError: the logdir is another process's or another run's, or the address is taken.
    """
    if plan.torch_threads:
        torch.set_num_threads(plan.torch_threads)
        if plan.torch_threads_reason:
            log.info("%d torch thread(s): %s (--torch_threads overrides)", plan.torch_threads, plan.torch_threads_reason)
    log.info("%s%s", plan.precision.describe(), "; TF32 matmuls on" if enable_tf32(plan.precision) else "")
    torch.manual_seed(plan.run_shape.seed + plan.ranks.rank)  # the ranks sample different actions; rank 0's weights are copied
    try:
        built = registry.build(plan.agent, plan.agent_config, plan.spec, plan.device, plan.run_shape)
    except ValueError as e:
        raise LearnerBuildError(f"{e}") from None
    lock = None
    try:
        if plan.ranks.is_main:  # rank 0 alone writes the logdir
            lock = LogdirLock.acquire(plan.logdir)
    except LogdirInUse as e:
        raise LearnerBuildError(f"{e}") from None
    run_config = RunConfig(plan.agent, plan.env_name, plan.agent_config, plan.env_config)
    try:
        learner = Learner(built.agent, built.data, plan.learner_settings(built), run_config, plan.ranks)
    except CheckpointMismatch as e:
        _release(lock)
        raise LearnerBuildError(f"{e}") from None
    try:
        endpoints = Endpoints(plan.serving, plan.spec, learner.streams)
    except OSError as e:  # the learner's port is taken
        learner.close(save=False)
        _release(lock)
        raise LearnerBuildError(f"{e}; stop the other process or choose another --learner_address") from None
    return BuiltLearner(plan, learner, endpoints, lock)


def _release(lock: LogdirLock | None) -> None:
    if lock is not None:
        lock.release()


def run_learner(built: BuiltLearner, local_transport: str) -> str | None:
    """Serves actors and trains until the budget is spent, SIGINT/SIGTERM, or an actor's user error.

    ``--role=local`` starts ``--num_actors`` actor processes here, on ``local_transport``.
    Writes a final checkpoint unless an actor failed; returns that actor's error, else None.
    """
    plan, learner, endpoints = built.plan, built.learner, built.endpoints
    if learner.done():
        log.info("%s already holds %d frames (>= --total_environment_frames); nothing to do", plan.logdir, learner.frames)
        endpoints.stop()
        learner.close(save=False)
        _release(built.lock)
        return None
    endpoints.start()
    ranks, own_actors = plan.ranks, list(plan.own_actors)
    log.info(
        "training %s on %s (%s): %d %s actors x %d envs, learner%s at %s, logdir %s",
        plan.agent, plan.env_name, plan.device, len(own_actors), "local" if plan.role == "local" else "remote",
        plan.envs_per_actor,
        f" rank {ranks.rank} of {ranks.world_size} (actors {_id_list(own_actors)})" if ranks.distributed
        else "", endpoints.address, plan.logdir,
    )
    fatal: list[str] = []

    def on_fatal(message: str) -> None:
        fatal.append(message)
        learner.stop(save=False)

    first_signal: list[float] = []

    def on_signal(signum, frame):
        # A rank of torchrun gets Ctrl-C twice at once (from the terminal and from torchrun): a second
        # signal aborts only when it comes later, as a second press does.
        if first_signal and time.monotonic() - first_signal[0] > 1.0:
            raise KeyboardInterrupt
        if first_signal:
            return
        first_signal.append(time.monotonic())
        log.info("stopping (signal %d); writing a final checkpoint; press Ctrl-C again to abort", signum)
        learner.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    # Local actors get the learner's token and trust its certificate without flags of their own.
    local_address, local_security = local_client_security(endpoints.address, plan.serving.security)

    def launcher_values(actor_id: int) -> dict:
        return dict(
            learner_address=local_address,
            actor_id=actor_id,
            transport=local_transport,
            tls_ca_file=local_security.tls_ca_file,
            tls_server_name=local_security.tls_server_name,
            auth_token=local_security.auth_token,
        )

    local_ids = plan.local_actors
    actors = LocalActors(list(plan.actor_argv), lambda index: launcher_values(local_ids[index]), len(local_ids), on_fatal)
    started = time.monotonic()
    try:
        learner.run()
    except TrainingDiverged as e:
        fatal.append(f"{e}")
    finally:
        actors.close()
        learner.stop()
        endpoints.stop()
        # Several ranks save together or not at all: a rank whose actor failed vetoes it for every rank.
        try:
            learner.close(save=not fatal and learner.final_save)
        except CheckpointWriteError as e:
            fatal.append(f"{e}")
        finally:
            _release(built.lock)
            learner_ranks.leave()
    log.info("finished at %d frames after %.0f s", learner.frames, time.monotonic() - started)
    if fatal:
        return fatal[0]
    if not learner.final_save:
        return "another learner rank stopped the run with an error (see its log)"
    return None


def _id_list(ids: list[int]) -> str:
    shown = ", ".join(map(str, ids[:6]))
    return shown + (", ..." if len(ids) > 6 else "")
