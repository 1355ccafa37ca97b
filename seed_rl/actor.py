"""Command line for one actor process: ``python -m seed_rl.actor --learner_address=HOST:PORT``.

Use it to run actors on other machines than the learner. The environment flags
must match the learner's (the learner refuses mismatching observations).
"""

from __future__ import annotations

import logging
import sys

from absl import app, flags

from seed_rl.config_flags import dataclass_from_flags, define_dataclass_flags
from seed_rl.core.actor import ActorConfigError, ActorSettings, run_actor
from seed_rl.envs import EnvConfig, EnvError

FLAGS = flags.FLAGS
flags.DEFINE_string("learner_address", "127.0.0.1:8686", "host:port of the learner")
flags.DEFINE_string("env", "atari:Pong", "gymnasium id, atari:<Game>, dmlab:<level> or gym:<old gym id>")
flags.DEFINE_integer("envs_per_actor", 8, "environments stepped by this actor")
flags.DEFINE_integer("actor_id", 0, "index of this actor (seeds and logging)")
flags.DEFINE_integer("seed", 0, "base random seed")
define_dataclass_flags(EnvConfig)


def main(argv: list[str]) -> None:
    del argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        settings = ActorSettings(
            learner_address=FLAGS.learner_address,
            env_name=FLAGS.env,
            env_config=dataclass_from_flags(EnvConfig),
            num_envs=FLAGS.envs_per_actor,
            actor_id=FLAGS.actor_id,
            seed=FLAGS.seed,
        )
        run_actor(settings)
    except (EnvError, ActorConfigError) as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    app.run(main)
