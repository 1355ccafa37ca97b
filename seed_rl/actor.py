"""Command line for one actor process: ``python -m seed_rl.actor --learner_address=HOST:PORT``.

Use it to run actors on other machines than the learner. The environment flags
must match the learner's (the learner refuses mismatching observations). With
``--tls_ca_file`` the actor connects over TLS; the token comes from
``--auth_token_file`` or ``$SEED_RL_AUTH_TOKEN``. An actor on the learner's
own machine can use ``--transport=shm`` (shared memory) instead of gRPC.
"""

from __future__ import annotations

import logging
import sys

from absl import app, flags

from seed_rl import exits
from seed_rl.config import roles
from seed_rl.acting.loop import run_actor
from seed_rl.transport.errors import Refused
from seed_rl.transport.security import SecurityConfigError, read_token
from seed_rl.envs import EnvError

FLAGS = flags.FLAGS
roles.define_shared_flags()
roles.define_actor_flags()
# --help lists the flags of both roles and the actor's own (defined in seed_rl.config.roles).
for _name in sorted(roles.MAIN_SHARED_FLAGS | roles.ACTOR_ONLY_FLAGS | {"learner_address", "actor_id"}):
    flags.declare_key_flag(_name)

def main(argv: list[str]) -> None:
    del argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        settings = roles.actor_settings(
            FLAGS,
            learner_address=FLAGS.learner_address,
            actor_id=FLAGS.actor_id,
            transport="shm" if FLAGS.transport == "shm" else "grpc",
            tls_ca_file=FLAGS.tls_ca_file,
            tls_server_name=FLAGS.tls_server_name,
            auth_token=read_token(FLAGS.auth_token_file),
        )
        run_actor(settings)
    except (EnvError, Refused, SecurityConfigError, ValueError) as e:
        exits.fail(e)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    app.run(main, flags_parser=roles.parse_flags)
