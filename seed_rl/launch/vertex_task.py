"""Entry point of every replica of a Vertex AI job: ``python -m seed_rl.launch.vertex_task [options] -- <train flags>``.

Reads ``CLUSTER_SPEC`` and becomes the learner (``workerpool0``) or the actors
of one actor replica (``workerpool1``):

- learner: ``seed_rl.train --role=learner --learner_address=0.0.0.0:PORT
  --num_actors=<actor replicas × actors per replica>`` plus TLS and token flags
  and every train flag;
- actor replica: ``--actors_per_replica`` processes of ``seed_rl.actor
  --learner_address=<learner host>:PORT --actor_id=<replica index × actors per
  replica + j>`` plus TLS and token flags and the train flags an actor knows
  (``--env``, ``--envs_per_actor``, the environment flags, ...).

With ``--learners=N`` (N > 1) the learner replica runs N ranks under torchrun
(``seed_rl.launch.learners``): rank r listens on PORT + r, and each actor gets
``<learner host>:PORT,...,<learner host>:PORT+N-1`` as its ``--learner_address``.

PORT defaults to the port Vertex AI lists for the learner in ``CLUSTER_SPEC``
(``--learner_port`` overrides it); the learner listens on ``--learner_bind_host``
(0.0.0.0), and actors connect to the learner's host in ``CLUSTER_SPEC``.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
from dataclasses import dataclass
from typing import Mapping, Sequence

from seed_rl import exits
from seed_rl.config import roles
from seed_rl.launch import credentials, learners
from seed_rl.launch.cluster_spec import ClusterSpecError, Replica, replica_from_environment
from seed_rl.launch.supervisor import CommandChild, Supervisor

log = logging.getLogger("seed_rl.launch.vertex_task")

# What this entry point sets itself from CLUSTER_SPEC and its own options: every
# launcher's own flags, the number of actors and the security flags.
_SET_HERE = "seed_rl.launch.vertex_task sets it from CLUSTER_SPEC and its own options; leave it out of the train flags"
VERTEX_SET_FLAGS = {
    name: _SET_HERE
    for name in (*roles.LAUNCHER_SET_FLAGS, "num_actors", "tls_cert_file", "tls_key_file", "tls_ca_file",
                 "tls_server_name", "auth_token_file", "insecure")
}


class TaskError(ValueError):
    """A user error in the options or train flags given to this entry point."""


@dataclass(frozen=True)
class TaskOptions:
    credentials_dir: str | None = None
    insecure: bool = False
    tls_server_name: str = credentials.DEFAULT_SERVER_NAME
    learner_port: int | None = None
    learner_bind_host: str = "0.0.0.0"
    actors_per_replica: int = 1
    learners: int = 1
    learner_max_restarts: int = 0


def split_train_flags(train_flags: Sequence[str]) -> tuple[list[str], list[str]]:
    """(learner flags, actor flags) of a train command line: ``roles.split_train_flags`` with this launcher's flags."""
    try:
        return roles.split_train_flags(train_flags, VERTEX_SET_FLAGS)
    except roles.RoleError as e:
        raise TaskError(str(e)) from None


def _security_flags(role: str, options: TaskOptions) -> list[str]:
    if options.insecure:
        return ["--insecure"] if role == "learner" else []
    if options.credentials_dir is None:
        raise TaskError(
            "give --credentials_dir=DIR (holding token, learner.crt and learner.key, as "
            "seed_rl.launch.vertex writes them) or --insecure to run without TLS and token"
        )
    files = credentials.CredentialFiles.in_directory(options.credentials_dir)
    if role == "learner":
        return [f"--tls_cert_file={files.cert}", f"--tls_key_file={files.key}", f"--auth_token_file={files.token}"]
    return [f"--tls_ca_file={files.cert}", f"--tls_server_name={options.tls_server_name}", f"--auth_token_file={files.token}"]


def learner_command(replica: Replica, options: TaskOptions, train_flags: Sequence[str]) -> list[str]:
    """``seed_rl.train --role=learner``, or torchrun running it on ``--learners`` ranks."""
    port = options.learner_port or replica.learner_port
    learners.check_learners(options.learners, options.learner_max_restarts, port)
    return [
        sys.executable, "-m", *learners.learner_module_argv(options.learners, options.learner_max_restarts),
        "--role=learner",
        f"--learner_address={options.learner_bind_host}:{port}",
        f"--num_actors={replica.num_actor_replicas * options.actors_per_replica}",
        *_security_flags("learner", options), *train_flags,
    ]


def actor_commands(replica: Replica, options: TaskOptions, train_flags: Sequence[str]) -> list[list[str]]:
    """This replica's actor processes; each gets every learner rank's address."""
    port = options.learner_port or replica.learner_port
    shared = [
        f"--learner_address={learners.learner_addresses(replica.learner_host, port, options.learners)}",
        *_security_flags("actor", options), *split_train_flags(train_flags)[1],
    ]
    first = replica.index * options.actors_per_replica
    return [
        [sys.executable, "-m", "seed_rl.actor", *shared, f"--actor_id={first + j}"]
        for j in range(options.actors_per_replica)
    ]


def supervise_actors(commands: list[list[str]], **supervisor_options) -> int:
    """Runs the actor processes of this replica under :class:`Supervisor` (the contract of ``seed_rl.exits``).

    SIGTERM and SIGINT stop every process. Returns the replica's exit code:
    the user error's when a process hit one, else 0.
    """
    supervisor = Supervisor(lambda i: CommandChild(commands[i]), len(commands), **supervisor_options)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, frame: supervisor.stop())
    return supervisor.run().exit_code


def parse_args(argv: Sequence[str]) -> tuple[TaskOptions, list[str], bool]:
    argv = list(argv)
    if "--" in argv:
        split = argv.index("--")
        own, train_flags = argv[:split], argv[split + 1:]
    else:
        own, train_flags = argv, []
    parser = exits.ArgumentParser(
        prog="python -m seed_rl.launch.vertex_task",
        description="Start the learner or the actors of this Vertex AI replica, as CLUSTER_SPEC says.",
        epilog="Everything after -- is passed to seed_rl.train (the learner) and, where it knows the flag, seed_rl.actor.",
    )
    parser.add_argument("--credentials_dir", help="directory with token, learner.crt, learner.key (e.g. /gcs/BUCKET/JOB/credentials)")
    parser.add_argument("--insecure", action="store_true", help="no TLS and no token (the learner logs a warning)")
    parser.add_argument("--tls_server_name", default=credentials.DEFAULT_SERVER_NAME, help="name in the learner's certificate")
    parser.add_argument("--learner_port", type=int, help="the learner's port; default: the one CLUSTER_SPEC lists for workerpool0")
    parser.add_argument("--learner_bind_host", default="0.0.0.0",
                        help="interface the learner listens on (actors connect to its host in CLUSTER_SPEC)")
    parser.add_argument("--actors_per_replica", type=int, default=1, help="actor processes on each actor replica")
    parser.add_argument("--learners", type=int, default=1,
                        help="data-parallel learner ranks on the learner replica (torchrun); rank r listens on PORT + r")
    parser.add_argument("--learner_max_restarts", type=int, default=0,
                        help="with --learners > 1: how often torchrun restarts all ranks after one dies")
    parser.add_argument("--dry_run", action="store_true", help="print the command(s) instead of running them")
    args = parser.parse_args(own)
    if args.actors_per_replica < 1:
        parser.error("--actors_per_replica must be at least 1")
    if args.insecure and args.credentials_dir:
        parser.error("give --credentials_dir or --insecure, not both")
    try:
        learners.check_learners(args.learners, args.learner_max_restarts)
    except learners.LearnersError as e:
        parser.error(str(e))
    options = TaskOptions(
        args.credentials_dir, args.insecure, args.tls_server_name, args.learner_port, args.learner_bind_host,
        args.actors_per_replica, args.learners, args.learner_max_restarts,
    )
    return options, train_flags, args.dry_run


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s vertex_task %(message)s")
    options, train_flags, dry_run = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        replica = replica_from_environment(environ)
        split_train_flags(train_flags)  # refuses what this entry point sets itself
        if replica.role == "learner":
            commands = [learner_command(replica, options, train_flags)]
        else:
            commands = actor_commands(replica, options, train_flags)
    except (ClusterSpecError, TaskError, learners.LearnersError) as e:
        print(f"error: {e}", file=sys.stderr)
        return exits.USER_ERROR
    log.info("replica %s %d of this job; learner at %s", replica.role, replica.index, replica.learner_host)
    if dry_run:
        for command in commands:
            print(shlex.join(command))
        return 0
    if replica.role == "learner":
        sys.stdout.flush()
        os.execv(commands[0][0], commands[0])  # the learner gets Vertex AI's signals directly
    return supervise_actors(commands)


if __name__ == "__main__":
    sys.exit(main())
