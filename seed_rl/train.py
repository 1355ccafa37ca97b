"""Training entry point: ``python -m seed_rl.train --agent=impala --env=atari:Pong``.

``--role=local`` (the default) starts the learner in this process and
``--num_actors`` actor processes that connect to it over shared memory
(``--transport=auto`` on Linux) or gRPC on localhost.
``--role=learner`` starts only the learner, listening on ``--learner_address``;
``--num_actors`` actors started elsewhere with ``python -m seed_rl.actor
--learner_address=HOST:PORT`` join it. Re-running the same command with the same
``--logdir`` resumes from the newest checkpoint. Ctrl-C stops everything and
writes a final checkpoint. Serving on an interface other than loopback needs
``--tls_cert_file``/``--tls_key_file`` and a token (``--auth_token_file`` or
``$SEED_RL_AUTH_TOKEN``), or ``--insecure``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import signal
import threading
import time
from typing import Callable

import torch
from absl import app, flags

from seed_rl.agents import registry
from seed_rl import exits
from seed_rl.config import presets, roles
from seed_rl.config.flags import dataclass_from_flags, define_dataclass_flags, foreign_flags, given_fields
from seed_rl.transport import shm
from seed_rl.acting.loop import ActorConfigError, run_actor
from seed_rl.learner.loop import Learner, LearnerSettings
from seed_rl.learner.run_config import CheckpointMismatch, RunConfig
from seed_rl.transport.security import local_client_security, server_security
from seed_rl.envs import EnvConfig, EnvError, env_spec, make_env
from seed_rl.envs.factory import frames_per_step as env_frames_per_step
from seed_rl.envs.families import parse_env_name
from seed_rl.launch.supervisor import ProcessChild, Supervisor

log = logging.getLogger("seed_rl.train")
LOCAL_ADDRESS = "127.0.0.1:0"
LEARNER_ADDRESS = "127.0.0.1:8686"
FLAGS = flags.FLAGS
flags.DEFINE_enum("agent", "impala", registry.AGENTS, "agent to train")
flags.DEFINE_enum("role", "local", ["local", "learner"], "local: learner plus --num_actors actor processes here; learner: the learner only, actors connect from elsewhere")
flags.DEFINE_integer("num_actors", 2, "actor processes (--role=local) or remote actors expected (--role=learner)")
flags.DEFINE_integer("total_environment_frames", 10_000_000, "stop after this many environment frames")
flags.DEFINE_string("logdir", None, "summaries and checkpoints; default runs/<env>-<agent>")
flags.DEFINE_string(
    "learner_address", None,
    f"host:port the learner listens on, which actors connect to; default {LOCAL_ADDRESS} (port 0 picks a free port) "
    f"with --role=local, {LEARNER_ADDRESS} with --role=learner",
)
flags.DEFINE_integer("inference_batch_size", 0, "max environments per inference batch; 0: all of them (half with --double_buffer)")
flags.DEFINE_float("inference_timeout_ms", 10.0, "max wait for a full inference batch")
flags.DEFINE_float("checkpoint_interval_s", 300.0, "seconds between checkpoints")
flags.DEFINE_float("log_interval_s", 5.0, "seconds between summaries")
flags.DEFINE_string("device", "auto", "torch device of the learner: auto, cpu, cuda, cuda:1, ...")
flags.DEFINE_integer("torch_threads", 0, "torch intra-op threads on the learner; 0: torch's default")
flags.DEFINE_string("tls_cert_file", None, "PEM certificate (chain) the learner serves TLS with; needs --tls_key_file")
flags.DEFINE_string("tls_key_file", None, "PEM private key of --tls_cert_file")
flags.DEFINE_boolean("insecure", False, "allow serving on a non-loopback interface without TLS and a token (logs a warning)")
for _builder in registry.BUILDERS.values():
    define_dataclass_flags(_builder.config_class)
roles.define_shared_flags()  # --env, --seed, --envs_per_actor, --auth_token_file, EnvConfig


def _stop_when_orphaned(stop: threading.Event, poll_s: float = 1.0) -> None:
    """Sets ``stop`` once the parent process is gone (e.g. a learner killed with SIGKILL)."""
    parent = os.getppid()

    def watch() -> None:
        while not stop.wait(poll_s):
            if os.getppid() != parent:
                stop.set()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _local_actor(shared_argv: list[str], launcher_values: dict) -> None:
    """One local actor process: the run's shared flags parsed as ``seed_rl.actor`` would, plus what this
    launcher decides (address, id, transport, and the learner's token and certificate, in memory)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the learner process stops us
    logging.basicConfig(level=logging.INFO, format="%(asctime)s actor %(message)s")
    torch.set_num_threads(1)
    stop = threading.Event()
    # A local actor serves only its own learner, whose port dies with it: do not
    # outlive it (a restarted --role=local learner starts actors of its own).
    _stop_when_orphaned(stop)
    try:
        settings = roles.actor_settings(roles.parse_shared_flags(shared_argv), **launcher_values)
        run_actor(settings, stop)
    except (ActorConfigError, EnvError) as e:
        exits.fail(e)


class LocalActors:
    """``count`` actor processes on this machine, under the one :class:`Supervisor`, in a background thread.

    ``on_fatal(message)`` is called when an actor stops with a user error.
    """

    def __init__(
        self, shared_argv: list[str], launcher_values: Callable[[int], dict], count: int, on_fatal: Callable[[str], None]
    ):
        context = multiprocessing.get_context("spawn")

        def start(actor_id: int) -> ProcessChild:
            process = context.Process(target=_local_actor, args=(shared_argv, launcher_values(actor_id)), daemon=True)
            return ProcessChild(process)

        self._supervisor = Supervisor(start, count, name="actor {i}")
        self._on_fatal = on_fatal
        self._thread = threading.Thread(target=self._supervise, name="actor-supervisor", daemon=True)
        self._thread.start()

    def _supervise(self) -> None:
        ending = self._supervisor.run()
        if ending.exit_code:
            self._on_fatal(f"actor {ending.index} could not start (see its error above)")

    def close(self) -> None:
        """Stops every actor process (terminated, then killed if it lingers)."""
        self._supervisor.stop()
        self._thread.join()


def default_logdir(env: str, agent: str) -> str:
    return os.path.join("runs", re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{env}-{agent}"))


def learner_address(role: str, address: str | None) -> str:
    """The address the learner listens on for ``role``; remote actors need a fixed port."""
    if address is None:
        return LOCAL_ADDRESS if role == "local" else LEARNER_ADDRESS
    if role == "learner" and address.rsplit(":", 1)[-1] == "0":
        raise ValueError(
            f"--learner_address={address} picks a random port, which remote actors cannot find; "
            f"give a fixed port with --role=learner, e.g. --learner_address={LEARNER_ADDRESS}"
        )
    return address


def transports(transport: str) -> tuple[bool, str]:
    """(whether the learner serves shared memory, the transport of the actors it starts) for ``--transport``.

    ``auto`` falls back to gRPC, with a warning, where shared memory cannot be used; ``shm`` fails instead.
    """
    if transport == "grpc":
        return False, "grpc"
    try:
        if not shm.available():
            raise shm.ShmError("the shared-memory transport needs Linux (memfd and SEQPACKET sockets)")
        shm.socket_dir()
    except shm.ShmError as e:
        if transport == "shm":
            raise ValueError(f"--transport=shm: {e}; or use --transport=grpc") from None
        log.warning("actors on this machine use gRPC: %s", e)
        return False, "grpc"
    return True, "shm"


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        exits.fail(f"unexpected arguments {argv[1:]}; flags are written --name=value")
    for name in ("num_actors", "envs_per_actor"):
        if getattr(FLAGS, name) < 1:
            exits.fail(f"--{name} must be >= 1, got {getattr(FLAGS, name)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.manual_seed(FLAGS.seed)
    if FLAGS.torch_threads > 0:
        torch.set_num_threads(FLAGS.torch_threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if FLAGS.device == "auto" else torch.device(FLAGS.device)
    try:
        env_config = dataclass_from_flags(EnvConfig)
        probe = make_env(FLAGS.env, FLAGS.seed, env_config)
        spec = env_spec(probe)
        probe.close()
    except EnvError as e:
        exits.fail(f"{e}")
    frames_per_step = env_frames_per_step(FLAGS.env, env_config)
    total_envs = FLAGS.num_actors * FLAGS.envs_per_actor
    try:
        config_cls = registry.config_class(FLAGS.agent)
        others = [registry.config_class(name) for name in registry.AGENTS if name != FLAGS.agent]
        foreign = foreign_flags(config_cls, others)
        if foreign:
            name, owner = sorted(foreign.items())[0]
            owner_agent = registry.agent_of_config(owner)
            raise ValueError(
                f"--{name} is a flag of --agent={owner_agent}, not of --agent={FLAGS.agent}; "
                f"drop it, or train with --agent={owner_agent}"
            )
        family_preset = presets.preset(parse_env_name(FLAGS.env)[0].preset_family(spec.observation_shape), FLAGS.agent)
        preset_values = presets.apply_preset(
            config_cls, family_preset.resolve(device.type), given_fields(config_cls)
        )
        log.info("%s", presets.describe(family_preset, device.type, preset_values))
        config = dataclass_from_flags(config_cls, FLAGS, preset_values)
        run_shape = registry.RunShape(FLAGS.total_environment_frames, frames_per_step, total_envs, FLAGS.seed)
        built = registry.builder(FLAGS.agent).build(config, spec, device, run_shape)
    except ValueError as e:
        exits.fail(f"{e}")
    logdir = FLAGS.logdir or default_logdir(FLAGS.env, FLAGS.agent)
    try:
        address = learner_address(FLAGS.role, FLAGS.learner_address)
        security = server_security(
            address, FLAGS.tls_cert_file, FLAGS.tls_key_file, FLAGS.auth_token_file, FLAGS.insecure
        )
    except ValueError as e:  # SecurityConfigError included
        exits.fail(f"{e}")
    try:
        serve_shm, local_transport = transports(FLAGS.transport)
    except ValueError as e:
        exits.fail(f"{e}")
    settings = LearnerSettings(
        logdir=logdir,
        env_name=FLAGS.env,
        total_environment_frames=FLAGS.total_environment_frames,
        unroll_length=built.unroll_length,
        unroll_overlap=built.unroll_overlap,
        batch_size=built.batch_size,
        frames_per_step=frames_per_step,
        learner_address=address,
        inference_batch_size=FLAGS.inference_batch_size or roles.default_inference_batch(total_envs, FLAGS.double_buffer),
        inference_timeout_ms=FLAGS.inference_timeout_ms,
        checkpoint_interval_s=FLAGS.checkpoint_interval_s,
        log_interval_s=FLAGS.log_interval_s,
        # A double-buffered actor holds two streams; gRPC gives every stream a worker thread for its lifetime.
        max_streams=FLAGS.num_actors * (2 if FLAGS.double_buffer else 1) + 16,
        security=security,
        serve_shm=serve_shm,
    )
    run_config = RunConfig(FLAGS.agent, FLAGS.env, config, env_config)
    try:
        learner = Learner(built.agent, built.data, spec, settings, run_config)
    except CheckpointMismatch as e:
        exits.fail(f"{e}")
    except OSError as e:  # the learner's port is taken
        exits.fail(f"{e}; stop the other process or choose another --learner_address")
    if learner.done():
        log.info("%s already holds %d frames (>= --total_environment_frames); nothing to do", logdir, learner.frames)
        learner.close(save=False)
        return
    learner.start()
    log.info(
        "training %s on %s (%s): %d %s actors x %d envs, learner at %s, logdir %s",
        FLAGS.agent, FLAGS.env, device, FLAGS.num_actors, "local" if FLAGS.role == "local" else "remote",
        FLAGS.envs_per_actor, learner.address, logdir,
    )
    fatal: list[str] = []

    def on_fatal(message: str) -> None:
        fatal.append(message)
        learner.stop()

    interrupts = 0

    def on_signal(signum, frame):
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            raise KeyboardInterrupt
        log.info("stopping (signal %d); writing a final checkpoint; press Ctrl-C again to abort", signum)
        learner.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    # Local actors get the learner's token and trust its certificate without flags of their own.
    local_address, local_security = local_client_security(learner.address, security)

    def launcher_values(actor_id: int) -> dict:
        return dict(
            learner_address=local_address,
            actor_id=actor_id,
            transport=local_transport,
            tls_ca_file=local_security.tls_ca_file,
            tls_server_name=local_security.tls_server_name,
            auth_token=local_security.auth_token,
        )

    local_actors = FLAGS.num_actors if FLAGS.role == "local" else 0
    actors = LocalActors(roles.shared_flags_argv(), launcher_values, local_actors, on_fatal)
    started = time.monotonic()
    try:
        learner.run()
    finally:
        actors.close()
        learner.close(save=not fatal)
    log.info("finished at %d frames after %.0f s", learner.frames, time.monotonic() - started)
    if fatal:
        exits.fail(f"{fatal[0]}")


if __name__ == "__main__":
    app.run(main, flags_parser=roles.parse_flags)
