"""What a train command will do, decided before it touches the machine: :func:`plan_run`.

A :class:`RunPlan` holds the run's configs with every preset resolved into
them (the given flags over the family's preset over the defaults), the
environment's spec, the learner's device, precision and threads, the evaluation
environments, the learner's and the endpoints' settings, and the command line
its local actors get. Planning probes the environment and reads the TLS files,
but binds no port, takes no lock and builds no network, so it is tested on its
own; ``seed_rl.learner.build`` starts what it describes. Every user error of a
plan is a :class:`LearnerBuildError`, raised here in one line.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Any

import torch
from absl import flags

from seed_rl.agents import registry
from seed_rl.agents.builder import BuiltAgent, RunShape
from seed_rl.config import presets, roles
from seed_rl.config.flags import dataclass_from_flags, foreign_flags, given_fields
from seed_rl.core.eval_envs import EvalEnvs
from seed_rl.core.learner_rank_rule import actors_of_rank, rank_port
from seed_rl.core.learner_ranks import LearnerRanks
from seed_rl.core.precision import Precision, learner_precision
from seed_rl.envs import EnvConfig, EnvError, EnvSpec, probe_spec
from seed_rl.envs.families import parse_env_name
from seed_rl.envs.factory import frames_per_step as env_frames_per_step
from seed_rl.learner.loop import LearnerSettings
from seed_rl.learner.serving import ServingSettings
from seed_rl.transport.protocol import RequestLimits
from seed_rl.transport.security import server_security

log = logging.getLogger("seed_rl.train")
LOCAL_ADDRESS = "127.0.0.1:0"
LEARNER_ADDRESS = "127.0.0.1:8686"


class LearnerBuildError(Exception):
    """A user error in the train command; the message is the one ``error:`` line to show."""


@dataclass(frozen=True)
class RunPlan:
    """One learner rank's run, resolved from the train command's flags; see :func:`plan_run`."""

    agent: str
    env_name: str
    role: str  # local: this process starts its actors; learner: they connect from elsewhere
    envs_per_actor: int
    env_config: EnvConfig  # the given flags over the agent's preset for the family
    agent_config: Any  # the agent's config dataclass, the given flags over the family's preset
    spec: EnvSpec
    ranks: LearnerRanks
    device: torch.device
    precision: Precision
    torch_threads: int  # intra-op threads to set; 0 keeps torch's default
    torch_threads_reason: str  # why, when the learner chose them itself; "" otherwise
    run_shape: RunShape  # what the agent's construction depends on
    own_actors: tuple[int, ...]  # the actor ids this rank serves
    local_actors: tuple[int, ...]  # the ones this process starts (--role=local), else none
    actor_argv: tuple[str, ...]  # the shared flags every actor of the run gets, presets included
    serving: ServingSettings
    logdir: str
    total_environment_frames: int
    inference_batch_size: int
    inference_timeout_ms: float
    checkpoint_interval_s: float
    log_interval_s: float
    max_skipped_updates: int
    damaged_replay: str

    @property
    def eval_envs(self) -> EvalEnvs:
        return self.run_shape.eval_envs

    def learner_settings(self, built: BuiltAgent) -> LearnerSettings:
        """The training loop's settings, for the agent built from this plan."""
        return LearnerSettings(
            logdir=self.logdir,
            env_name=self.env_name,
            total_environment_frames=self.total_environment_frames,
            unroll=built.unroll,
            batch_size=built.batch_size,
            frames_per_step=self.run_shape.frames_per_step,
            inference_batch_size=self.inference_batch_size,
            inference_timeout_ms=self.inference_timeout_ms,
            checkpoint_interval_s=self.checkpoint_interval_s,
            log_interval_s=self.log_interval_s,
            max_skipped_updates=self.max_skipped_updates,
            damaged_replay=self.damaged_replay,
            eval_envs=self.eval_envs,
        )


def plan_run(flag_values: flags.FlagValues, ranks: LearnerRanks, device: torch.device, serve_shm: bool) -> RunPlan:
    """The run the train command's flags describe, for learner rank ``ranks`` on ``device``.

    ``serve_shm``: the learner also serves the actors on this machine over shared memory.

    Raises:
      LearnerBuildError: a flag, environment or address the run cannot use.
    """
    try:
        return _plan(flag_values, ranks, device, serve_shm)
    except (ValueError, EnvError) as e:  # SecurityConfigError is a ValueError
        raise LearnerBuildError(f"{e}") from None


def _plan(fv: flags.FlagValues, ranks: LearnerRanks, device: torch.device, serve_shm: bool) -> RunPlan:
    if ranks.distributed and fv.num_actors < ranks.world_size:
        raise ValueError(
            f"--num_actors={fv.num_actors} leaves some of the {ranks.world_size} learner ranks without actors; "
            f"give at least {ranks.world_size} (actor i is served by rank i % {ranks.world_size})"
        )
    own_actors = tuple(actors_of_rank(ranks.rank, ranks.world_size, fv.num_actors))
    local_actors = own_actors if fv.role == "local" else ()
    env_config, env_preset = _env_config(fv)
    spec = probe_spec(fv.env, fv.seed, env_config)
    cores = max(1, (os.cpu_count() or 1) // ranks.local_world_size)  # the ranks of a machine share its cores
    learner_bound = registry.builder(fv.agent).learner_bound and is_large_image(spec.observation_shape)
    threads = learner_threads(fv.torch_threads, device, len(local_actors), cores, learner_bound)
    reason = ""
    if threads and not fv.torch_threads:
        reason = (f"every core: --agent={fv.agent}'s actors wait on the learner's image network" if learner_bound
                  else f"the cores {len(local_actors)} local actor processes leave")
    total_envs = fv.num_actors * fv.envs_per_actor
    eval_envs = _eval_envs(fv, spec, total_envs, ranks)
    config = _agent_config(fv, spec, device)
    precision = learner_precision(fv.precision, device, spec.observation_shape)
    run_shape = RunShape(
        fv.total_environment_frames, env_frames_per_step(fv.env, env_config), total_envs, fv.seed, precision, ranks,
        num_eval_envs=eval_envs.num_eval_envs,
    )
    address = learner_address(fv.role, fv.learner_address, ranks.local_rank)
    serving = ServingSettings(
        address=address,
        # A double-buffered actor holds two streams; gRPC gives every stream a worker thread for its lifetime.
        max_streams=len(own_actors) * (2 if fv.double_buffer else 1) + 16,
        security=server_security(address, fv.tls_cert_file, fv.tls_key_file, fv.auth_token_file, fv.insecure),
        serve_shm=serve_shm,
        limits=RequestLimits(fv.max_abs_reward, fv.max_envs_per_stream or fv.envs_per_actor),
    )
    return RunPlan(
        agent=fv.agent,
        env_name=fv.env,
        role=fv.role,
        envs_per_actor=fv.envs_per_actor,
        env_config=env_config,
        agent_config=config,
        spec=spec,
        ranks=ranks,
        device=device,
        precision=precision,
        torch_threads=threads,
        torch_threads_reason=reason,
        run_shape=run_shape,
        own_actors=own_actors,
        local_actors=local_actors,
        actor_argv=tuple(roles.shared_flags_argv(fv, env_preset)),
        serving=serving,
        logdir=fv.logdir or default_logdir(fv.env, fv.agent),
        total_environment_frames=fv.total_environment_frames,
        inference_batch_size=fv.inference_batch_size or roles.default_inference_batch(
            len(own_actors) * fv.envs_per_actor, fv.double_buffer
        ),
        inference_timeout_ms=fv.inference_timeout_ms,
        checkpoint_interval_s=fv.checkpoint_interval_s,
        log_interval_s=fv.log_interval_s,
        max_skipped_updates=fv.max_skipped_updates,
        damaged_replay=fv.damaged_replay,
    )


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


def _env_config(flag_values: flags.FlagValues) -> tuple[EnvConfig, dict[str, Any]]:
    """The environment settings (the given flags, over the agent's preset for the family, over EnvConfig's
    defaults) and the preset's values that were not given, which the run's actors must be told."""
    family = parse_env_name(flag_values.env)[0].name
    given = given_fields(EnvConfig, flag_values)
    preset_values = {}
    for name, setting in presets.env_preset(family, flag_values.agent).items():
        if name not in given:
            preset_values[name] = setting.value
            log.info("preset %s/%s: --%s=%s  (%s)", family, flag_values.agent, name, setting.value, setting.source)
    return dataclass_from_flags(EnvConfig, flag_values, preset_values), preset_values


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


def _eval_envs(flag_values: flags.FlagValues, spec: EnvSpec, total_envs: int, ranks: LearnerRanks) -> EvalEnvs:
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


def _checked_eval_envs(eval_envs: EvalEnvs, flag_values: flags.FlagValues, ranks: LearnerRanks) -> EvalEnvs:
    fv = flag_values
    for rank in range(ranks.world_size):
        actors = actors_of_rank(rank, ranks.world_size, fv.num_actors)
        if not sum(eval_envs.training_envs_of(i * fv.envs_per_actor, fv.envs_per_actor) for i in actors):
            raise ValueError(
                f"--num_eval_envs={eval_envs.num_eval_envs} leaves learner rank {rank} no training environment "
                f"(its actors' environments all evaluate); give fewer evaluation environments or more --envs_per_actor"
            )
    return eval_envs
