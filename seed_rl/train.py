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

``torchrun --nproc_per_node=N -m seed_rl.train ...`` runs N data-parallel
learner ranks (docs/distributed.md): each serves the actors whose id is its rank
modulo N, on the given port plus its local rank, and trains on 1/N of every batch.
"""

from __future__ import annotations

import logging
import sys

from absl import app, flags

from seed_rl.agents import registry
from seed_rl import exits
from seed_rl.config import roles
from seed_rl.config.flags import define_dataclass_flags
from seed_rl.core.precision import PRECISIONS
from seed_rl.transport import protocol
from seed_rl.learner.build import build_learner, run_learner
from seed_rl.learner.plan import LEARNER_ADDRESS, LOCAL_ADDRESS, LearnerBuildError
from seed_rl.launch import learners
from seed_rl.learner.serving import choose_transports
from seed_rl.core.learner_ranks import launched_by_torchrun

FLAGS = flags.FLAGS
flags.DEFINE_enum("agent", "impala", registry.AGENTS, "agent to train")
flags.DEFINE_enum("role", "local", ["local", "learner"], "local: learner plus --num_actors actor processes here; learner: the learner only, actors connect from elsewhere")
flags.DEFINE_integer("num_actors", 2, "actor processes (--role=local) or remote actors expected (--role=learner)")
flags.DEFINE_integer("total_environment_frames", 10_000_000, "stop after this many environment frames")
flags.DEFINE_string("logdir", None, "summaries and checkpoints; default runs/<env>-<agent>")
flags.DEFINE_integer(
    "num_eval_envs", -1,
    "of the --num_actors x --envs_per_actor environments, the last this many evaluate: they act as the agent is "
    "evaluated (R2D2 with --eval_epsilon, IMPALA with its policy), are never trained on, and are logged as eval/...; "
    "-1: the environment family's preset (4 on Atari, else 0)",
)
flags.DEFINE_string(
    "learner_address", None,
    f"host:port the learner listens on, which actors connect to; default {LOCAL_ADDRESS} (port 0 picks a free port) "
    f"with --role=local, {LEARNER_ADDRESS} with --role=learner",
)
flags.DEFINE_integer("inference_batch_size", 0, "max environments per inference batch; 0: all of them (half with --double_buffer)")
flags.DEFINE_float("inference_timeout_ms", 10.0, "max wait for a full inference batch")
flags.DEFINE_float("checkpoint_interval_s", 300.0, "seconds between checkpoints")
flags.DEFINE_enum(
    "damaged_replay", "previous", ["previous", "empty"],
    "resuming from a checkpoint whose replay (R2D2) alone is damaged: previous: fall back to the previous "
    "checkpoint; empty: keep its weights and start the replay empty. A checkpoint whose weights are damaged "
    "always falls back",
)
flags.DEFINE_float("log_interval_s", 5.0, "seconds between summaries")
flags.DEFINE_float(
    "max_abs_reward", protocol.DEFAULT_LIMITS.max_abs_reward,
    "the learner refuses an actor's step whose reward's magnitude exceeds this (and episode returns beyond it "
    "times their length); far above real environments' rewards, far below where float32 returns overflow",
)
flags.DEFINE_integer(
    "max_envs_per_stream", 0,
    "the most environments one actor stream may step; 0: --envs_per_actor. Bounds what one actor can make the "
    "learner allocate",
)
flags.DEFINE_integer(
    "max_skipped_updates", 100,
    "an update whose loss or gradient norm is NaN or inf is skipped and counted (updates_skipped); this many in a "
    "row stop training with an error, leaving the last finite checkpoint",
)
flags.DEFINE_string(
    "device", "auto",
    "torch device of the learner: auto, cpu, cuda, cuda:1, ...; under torchrun (several learner ranks) auto gives "
    "each rank cuda:LOCAL_RANK, or the CPU",
)
flags.DEFINE_integer(
    "learners", 1,
    "data-parallel learner ranks on this machine (one per GPU, or CPU ranks), started with torchrun's launcher; "
    "the same as torchrun --standalone --nproc_per_node=N -m seed_rl.train",
)
flags.DEFINE_integer(
    "learner_max_restarts", 0,
    "with --learners > 1: times torchrun restarts all ranks (from the last checkpoint) after one fails",
)
flags.DEFINE_float(
    "collective_timeout_s", 300.0,
    "several learner ranks (torchrun): a rank waiting this long for a peer in a collective (a rank that died) "
    "stops with an error, so torchrun can restart the job (--max-restarts) from the last checkpoint",
)
flags.DEFINE_enum(
    "precision", "auto", list(PRECISIONS),
    "arithmetic of the learner's forward passes (weights, optimizer and losses stay float32): bf16 autocast, "
    "fp32, or auto: bf16 for image observations where the device runs it natively (CPUs with AMX or AVX-512 "
    "BF16, CUDA compute capability 8.0+), else fp32",
)
flags.DEFINE_integer(
    "torch_threads", 0,
    "torch intra-op threads on the learner; 0: on a CPU learner the cores its local actors leave (at least 1), "
    "or every core for an agent whose actors wait on the learner (R2D2 on images), else torch's default",
)
flags.DEFINE_string("tls_cert_file", None, "PEM certificate (chain) the learner serves TLS with; needs --tls_key_file")
flags.DEFINE_string("tls_key_file", None, "PEM private key of --tls_cert_file")
flags.DEFINE_boolean("insecure", False, "allow serving on a non-loopback interface without TLS and a token (logs a warning)")
for _builder in registry.BUILDERS.values():
    define_dataclass_flags(_builder.config_class)
roles.define_shared_flags()  # --env, --seed, --envs_per_actor, --auth_token_file, EnvConfig
# --help shows this module's flags, the shared ones and every agent's; --helpfull adds the environment's.
for _name in sorted(roles.MAIN_SHARED_FLAGS.union(
    *(roles.dataclass_flag_names(b.config_class) for b in registry.BUILDERS.values())
)):
    flags.declare_key_flag(_name)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        exits.fail(f"unexpected arguments {argv[1:]}; flags are written --name=value")
    for name in ("num_actors", "envs_per_actor"):
        if getattr(FLAGS, name) < 1:
            exits.fail(f"--{name} must be >= 1, got {getattr(FLAGS, name)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if launched_by_torchrun():  # a rank: torchrun chose the ranks and restarts them
        if FLAGS.learners > 1:
            exits.fail("--learners starts torchrun itself; under torchrun leave it out (--nproc_per_node sets the ranks)")
    else:
        try:
            learners.check_learners(FLAGS.learners, FLAGS.learner_max_restarts)
        except learners.LearnersError as e:
            exits.fail(f"{e}")
        if FLAGS.learners > 1:
            fatal = learners.run_learner_ranks(FLAGS.learners, FLAGS.learner_max_restarts, sys.argv[1:])
            if fatal:
                exits.fail(fatal)
            return
    try:
        serve_shm, local_transport = choose_transports(FLAGS.transport)
        built = build_learner(FLAGS, serve_shm)
    except (ValueError, LearnerBuildError) as e:
        exits.fail(f"{e}")
    fatal = run_learner(built, local_transport)
    if fatal:
        exits.fail(f"{fatal}")


if __name__ == "__main__":
    app.run(main, flags_parser=roles.parse_flags)
