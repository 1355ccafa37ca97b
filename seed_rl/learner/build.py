"""Assembles a learner from the train command's flags, and runs it with its endpoints and local actors.

:func:`build_learner` probes the environment, refuses another agent's flags,
applies the environment family's preset, builds the agent, chooses the address
and its security, binds the transport endpoints and restores the newest
checkpoint. :func:`run_learner` serves actors, starts ``--role=local``'s actor
processes and trains until the frame budget is spent, a signal or an actor's
user error. User errors are raised as :class:`LearnerBuildError`, one line each.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import time
from dataclasses import dataclass

import torch
from absl import flags

from seed_rl.agents import registry
from seed_rl.config import presets, roles
from seed_rl.config.flags import dataclass_from_flags, foreign_flags, given_fields
from seed_rl.core import learner_ranks
from seed_rl.core.eval_envs import EvalEnvs
from seed_rl.core.precision import enable_tf32, learner_precision
from seed_rl.core.learner_ranks import LearnerRanks
from seed_rl.core.learner_rank_rule import actors_of_rank, rank_port
from seed_rl.envs import EnvConfig, EnvError, EnvSpec, probe_spec
from seed_rl.envs.families import parse_env_name
from seed_rl.envs.factory import frames_per_step as env_frames_per_step
from seed_rl.launch.local_actors import LocalActors
from seed_rl.learner.checkpoint import CheckpointWriteError
from seed_rl.learner.logdir_lock import LogdirInUse, LogdirLock
from seed_rl.learner.loop import Learner, LearnerSettings, TrainingDiverged
from seed_rl.learner.run_config import CheckpointMismatch, RunConfig
from seed_rl.learner.serving import Endpoints, ServingSettings
from seed_rl.transport.protocol import RequestLimits
from seed_rl.transport.security import ServerSecurity, local_client_security, server_security

log = logging.getLogger("seed_rl.train")
LOCAL_ADDRESS = "127.0.0.1:0"
LEARNER_ADDRESS = "127.0.0.1:8686"


class LearnerBuildError(Exception):
    """A user error in the train command; the message is the one ``error:`` line to show."""


@dataclass
class BuiltLearner:
    """A learner with its endpoints bound (not yet serving) and what running it needs."""

    learner: Learner
    endpoints: Endpoints
    security: ServerSecurity
    device: torch.device
    logdir: str
    lock: LogdirLock | None  # rank 0's, held until run_learner returns (or the process ends)
    ranks: LearnerRanks


def default_logdir(env: str, agent: str) -> str:
    return os.path.join("runs", re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{env}-{agent}"))


def learner_address(role: str, address: str | None, local_rank: int = 0) -> str:
    """The address the learner listens on for ``role``; remote actors need a fixed port.

    Learner rank ``local_rank`` of a machine listens on the given port plus ``local_rank``.
    """
    if address is None:
        address = LOCAL_ADDRESS if role == "local" else LEARNER_ADDRESS
    host, _, port = address.rpartition(":")
    if role == "learner" and port == "0":
        raise ValueError(
            f"--learner_address={address} picks a random port, which remote actors cannot find; "
            f"give a fixed port with --role=learner, e.g. --learner_address={LEARNER_ADDRESS}"
        )
    if local_rank and port.isdigit() and int(port) > 0:
        return f"{host}:{rank_port(int(port), local_rank)}"
    return address


# Measured here on 2 cores: R2D2 on Pong's 84 x 84 frames updates 1.6x faster on every core, while on MinAtar's
# 10 x 10 frames a 60k-frame run took 72 s on every core against 61 s on the core the actors leave.
LARGE_IMAGE_PIXELS = 64 * 64


def is_large_image(observation_shape: tuple[int, ...]) -> bool:
    """Frames whose network costs the learner more than its actors' environments (see ``learner_threads``)."""
    if len(observation_shape) != 3:
        return False
    height, width = sorted(observation_shape)[-2:]  # channels first or last: the two largest are the frame
    return height * width >= LARGE_IMAGE_PIXELS


def learner_threads(requested: int, device: torch.device, local_actors: int, cores: int,
                    learner_bound: bool = False) -> int:
    """Torch intra-op threads for the learner; 0 keeps torch's default (one per core).

    ``--torch_threads=0`` on a CPU learner with local actors: the cores the actor
    processes leave, at least one. On 2 cores with 2 actors, torch's default of
    2 threads made IMPALA's Pong training 1.34x slower than 1 (docs/results.md):
    the training and inference threads' thread pools competed with the actors.
    An agent whose actors wait on the learner (``learner_bound``: R2D2's replay
    ratio, on large frames) takes every core: R2D2's Pong update took 0.29 s
    on 2 threads against 0.47 s on 1 (tools/bench_train_step.py, idle 2 cores).
    """
    if requested > 0:
        return requested
    if device.type != "cpu" or local_actors == 0:
        return 0
    return cores if learner_bound else max(1, cores - local_actors)


def _refuse_foreign_flags(agent: str, flag_values: flags.FlagValues) -> None:
    """Raises ValueError for a given flag that only another agent's config has."""
    others = [registry.config_class(name) for name in registry.AGENTS if name != agent]
    foreign = foreign_flags(registry.config_class(agent), others, flag_values)
    if foreign:
        name, owner = sorted(foreign.items())[0]
        owner_agent = registry.agent_of_config(owner)
        raise ValueError(
            f"--{name} is a flag of --agent={owner_agent}, not of --agent={agent}; "
            f"drop it, or train with --agent={owner_agent}"
        )


def _env_config(flag_values: flags.FlagValues) -> EnvConfig:
    """The environment settings: the given flags, over the agent's preset for the family, over EnvConfig's defaults.

    Preset values are written into ``flag_values``, so local actors are started with them.
    """
    family = parse_env_name(flag_values.env)[0].name
    given = given_fields(EnvConfig, flag_values)
    for name, setting in presets.env_preset(family, flag_values.agent).items():
        if name not in given:
            flag_values[name].value = setting.value
            log.info("preset %s/%s: --%s=%s  (%s)", family, flag_values.agent, name, setting.value, setting.source)
    return dataclass_from_flags(EnvConfig, flag_values)


def _agent_config(flag_values: flags.FlagValues, spec: EnvSpec, device: torch.device):
    """The agent's config: its given flags, over the environment family's preset, over its defaults."""
    agent = flag_values.agent
    _refuse_foreign_flags(agent, flag_values)
    config_cls = registry.config_class(agent)
    family = parse_env_name(flag_values.env)[0].preset_family(spec.observation_shape)
    family_preset = presets.preset(family, agent)
    preset_values = presets.apply_preset(
        config_cls, family_preset.resolve(device.type), given_fields(config_cls, flag_values)
    )
    log.info("%s", presets.describe(family_preset, device.type, preset_values))
    return dataclass_from_flags(config_cls, flag_values, preset_values)


def _eval_envs(flag_values: flags.FlagValues, spec: EnvSpec, total_envs: int, ranks) -> EvalEnvs:
    """The run's evaluation environments: ``--num_eval_envs``, or the family's preset for -1.

    Raises ValueError when they would leave no training environment (on some learner rank).
    """
    fv = flag_values
    if fv.num_eval_envs >= 0:
        return _checked_eval_envs(EvalEnvs(total_envs, fv.num_eval_envs), fv, ranks)
    # The preset's count where it leaves at least three quarters of the environments (and every rank some) to train.
    family = parse_env_name(fv.env)[0].preset_family(spec.observation_shape)
    setting = presets.eval_envs_preset(family)
    try:
        eval_envs = _checked_eval_envs(EvalEnvs(total_envs, min(setting.value, total_envs // 4)), fv, ranks)
    except ValueError:
        eval_envs = EvalEnvs(total_envs, 0)
    if eval_envs.num_eval_envs:
        log.info("preset %s: --num_eval_envs=%d  (%s)", family, eval_envs.num_eval_envs, setting.source)
    return eval_envs


def _checked_eval_envs(eval_envs: EvalEnvs, flag_values: flags.FlagValues, ranks) -> EvalEnvs:
    fv = flag_values
    for rank in range(ranks.world_size):
        actors = actors_of_rank(rank, ranks.world_size, fv.num_actors)
        if not sum(eval_envs.training_envs_of(i * fv.envs_per_actor, fv.envs_per_actor) for i in actors):
            raise ValueError(
                f"--num_eval_envs={eval_envs.num_eval_envs} leaves learner rank {rank} no training environment "
                f"(its actors' environments all evaluate); give fewer evaluation environments or more --envs_per_actor"
            )
    return eval_envs


def build_learner(flag_values: flags.FlagValues, serve_shm: bool) -> BuiltLearner:
    """The learner the train command's flags describe, its endpoints bound, its checkpoint restored.

    ``serve_shm``: also serve the actors on this machine over shared memory.

    Raises:
      LearnerBuildError: a flag, environment, address or checkpoint the run cannot use.
    """
    fv = flag_values
    try:
        ranks, device = learner_ranks.join(fv.device, fv.collective_timeout_s)
    except ValueError as e:
        raise LearnerBuildError(f"{e}") from None
    if ranks.distributed and fv.num_actors < ranks.world_size:
        raise LearnerBuildError(
            f"--num_actors={fv.num_actors} leaves some of the {ranks.world_size} learner ranks without actors; "
            f"give at least {ranks.world_size} (actor i is served by rank i % {ranks.world_size})"
        )
    torch.manual_seed(fv.seed + ranks.rank)  # the ranks sample different actions; rank 0's weights are copied
    own_actors = sum(ranks.owns_actor(i) for i in range(fv.num_actors))
    local_actors = own_actors if fv.role == "local" else 0
    cores = max(1, (os.cpu_count() or 1) // ranks.local_world_size)  # the ranks of a machine share its cores
    try:
        env_config = _env_config(fv)
        spec = probe_spec(fv.env, fv.seed, env_config)
    except EnvError as e:
        raise LearnerBuildError(f"{e}") from None
    learner_bound = registry.builder(fv.agent).learner_bound and is_large_image(spec.observation_shape)
    threads = learner_threads(fv.torch_threads, device, local_actors, cores, learner_bound)
    if threads:
        torch.set_num_threads(threads)
    frames_per_step = env_frames_per_step(fv.env, env_config)
    total_envs = fv.num_actors * fv.envs_per_actor
    try:
        eval_envs = _eval_envs(fv, spec, total_envs, ranks)
    except ValueError as e:
        raise LearnerBuildError(f"{e}") from None
    try:
        config = _agent_config(fv, spec, device)
        precision = learner_precision(fv.precision, device, spec.observation_shape)
        log.info("%s%s", precision.describe(), "; TF32 matmuls on" if enable_tf32(precision) else "")
        if threads and not fv.torch_threads:
            why = (f"every core: --agent={fv.agent}'s actors wait on the learner's image network" if learner_bound
                   else f"the cores {local_actors} local actor processes leave")
            log.info("%d torch thread(s): %s (--torch_threads overrides)", threads, why)
        run_shape = registry.RunShape(
            fv.total_environment_frames, frames_per_step, total_envs, fv.seed, precision, ranks,
            num_eval_envs=eval_envs.num_eval_envs,
        )
        built = registry.build(fv.agent, config, spec, device, run_shape)
        address = learner_address(fv.role, fv.learner_address, ranks.local_rank)
        security = server_security(address, fv.tls_cert_file, fv.tls_key_file, fv.auth_token_file, fv.insecure)
    except ValueError as e:  # SecurityConfigError included
        raise LearnerBuildError(f"{e}") from None
    logdir = fv.logdir or default_logdir(fv.env, fv.agent)
    settings = LearnerSettings(
        logdir=logdir,
        env_name=fv.env,
        total_environment_frames=fv.total_environment_frames,
        unroll=built.unroll,
        batch_size=built.batch_size,
        frames_per_step=frames_per_step,
        inference_batch_size=fv.inference_batch_size or roles.default_inference_batch(
            own_actors * fv.envs_per_actor, fv.double_buffer
        ),
        inference_timeout_ms=fv.inference_timeout_ms,
        checkpoint_interval_s=fv.checkpoint_interval_s,
        log_interval_s=fv.log_interval_s,
        max_skipped_updates=fv.max_skipped_updates,
        damaged_replay=fv.damaged_replay,
        eval_envs=eval_envs,
    )
    serving = ServingSettings(
        address=address,
        # A double-buffered actor holds two streams; gRPC gives every stream a worker thread for its lifetime.
        max_streams=own_actors * (2 if fv.double_buffer else 1) + 16,
        security=security,
        serve_shm=serve_shm,
        limits=RequestLimits(fv.max_abs_reward, fv.max_envs_per_stream or fv.envs_per_actor),
    )
    lock = None
    try:
        if ranks.is_main:  # rank 0 alone writes the logdir
            lock = LogdirLock.acquire(logdir)
    except LogdirInUse as e:
        raise LearnerBuildError(f"{e}") from None
    try:
        learner = Learner(
            built.agent, built.data, settings, RunConfig(fv.agent, fv.env, config, env_config), ranks
        )
    except CheckpointMismatch as e:
        _release(lock)
        raise LearnerBuildError(f"{e}") from None
    try:
        endpoints = Endpoints(serving, spec, learner.streams)
    except OSError as e:  # the learner's port is taken
        learner.close(save=False)
        _release(lock)
        raise LearnerBuildError(f"{e}; stop the other process or choose another --learner_address") from None
    return BuiltLearner(learner, endpoints, security, device, logdir, lock, ranks)


def _release(lock: LogdirLock | None) -> None:
    if lock is not None:
        lock.release()


def run_learner(built: BuiltLearner, flag_values: flags.FlagValues, local_transport: str) -> str | None:
    """Serves actors and trains until the budget is spent, SIGINT/SIGTERM, or an actor's user error.

    ``--role=local`` starts ``--num_actors`` actor processes here, on ``local_transport``.
    Writes a final checkpoint unless an actor failed; returns that actor's error, else None.
    """
    fv = flag_values
    learner, endpoints = built.learner, built.endpoints
    if learner.done():
        log.info("%s already holds %d frames (>= --total_environment_frames); nothing to do", built.logdir, learner.frames)
        endpoints.stop()
        learner.close(save=False)
        _release(built.lock)
        return None
    endpoints.start()
    ranks = built.ranks
    own_actors = [i for i in range(fv.num_actors) if ranks.owns_actor(i)]
    log.info(
        "training %s on %s (%s): %d %s actors x %d envs, learner%s at %s, logdir %s",
        fv.agent, fv.env, built.device, len(own_actors), "local" if fv.role == "local" else "remote",
        fv.envs_per_actor,
        f" rank {ranks.rank} of {ranks.world_size} (actors {_id_list(own_actors)})" if ranks.distributed
        else "", endpoints.address, built.logdir,
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
    local_address, local_security = local_client_security(endpoints.address, built.security)

    def launcher_values(actor_id: int) -> dict:
        return dict(
            learner_address=local_address,
            actor_id=actor_id,
            transport=local_transport,
            tls_ca_file=local_security.tls_ca_file,
            tls_server_name=local_security.tls_server_name,
            auth_token=local_security.auth_token,
        )

    local_ids = own_actors if fv.role == "local" else []
    actors = LocalActors(
        roles.shared_flags_argv(fv), lambda index: launcher_values(local_ids[index]), len(local_ids), on_fatal
    )
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
