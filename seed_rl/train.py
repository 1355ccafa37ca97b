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

from seed_rl import exits
from seed_rl.config import roles
from seed_rl.learner.build import build_learner, run_learner
from seed_rl.learner import train_flags
from seed_rl.learner.plan import LearnerBuildError
from seed_rl.launch import learners
from seed_rl.learner.serving import choose_transports
from seed_rl.core.learner_ranks import launched_by_torchrun

FLAGS = flags.FLAGS
train_flags.define_train_flags(FLAGS)
flags.adopt_module_key_flags(train_flags)  # --help lists them as this command's


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
