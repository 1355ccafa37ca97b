"""The flags of ``seed_rl.train``: defined by :func:`define_train_flags` on any ``FlagValues``.

``seed_rl.train`` defines them on absl's global flags; a test that plans a run
(``plan.py``) defines them on its own ``FlagValues``, beside other commands'.
"""

from __future__ import annotations

from absl import flags

from seed_rl.agents import registry
from seed_rl.config import roles
from seed_rl.config.flags import define_dataclass_flags
from seed_rl.core.precision import PRECISIONS
from seed_rl.learner.plan import LEARNER_ADDRESS, LOCAL_ADDRESS
from seed_rl.transport import protocol


def define_train_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """The train command's own flags, every agent's config flags and the shared ones; ``--help`` lists them
    (``--helpfull`` adds the environment's)."""
    flags.DEFINE_enum("agent", "impala", registry.AGENTS, "agent to train", flag_values=flag_values)
    flags.DEFINE_enum("role", "local", ["local", "learner"], "local: learner plus --num_actors actor processes here; learner: the learner only, actors connect from elsewhere", flag_values=flag_values)
    flags.DEFINE_integer("num_actors", 2, "actor processes (--role=local) or remote actors expected (--role=learner)", flag_values=flag_values)
    flags.DEFINE_integer("total_environment_frames", 10_000_000, "stop after this many environment frames", flag_values=flag_values)
    flags.DEFINE_string("logdir", None, "summaries and checkpoints; default runs/<env>-<agent>", flag_values=flag_values)
    flags.DEFINE_integer(
        "num_eval_envs", -1,
        "of the --num_actors x --envs_per_actor environments, the last this many evaluate: they act as the agent is "
        "evaluated (R2D2 with --eval_epsilon, IMPALA with its policy), are never trained on, and are logged as eval/...; "
        "-1: the environment family's preset (4 on Atari, else 0)", flag_values=flag_values)
    flags.DEFINE_string(
        "learner_address", None,
        f"host:port the learner listens on, which actors connect to; default {LOCAL_ADDRESS} (port 0 picks a free port) "
        f"with --role=local, {LEARNER_ADDRESS} with --role=learner", flag_values=flag_values)
    flags.DEFINE_integer("inference_batch_size", 0, "max environments per inference batch; 0: all of them (half with --double_buffer)", flag_values=flag_values)
    flags.DEFINE_float("inference_timeout_ms", 10.0, "max wait for a full inference batch", flag_values=flag_values)
    flags.DEFINE_float("checkpoint_interval_s", 300.0, "seconds between checkpoints", flag_values=flag_values)
    flags.DEFINE_enum(
        "damaged_replay", "previous", ["previous", "empty"],
        "resuming from a checkpoint whose replay (R2D2) alone is damaged: previous: fall back to the previous "
        "checkpoint; empty: keep its weights and start the replay empty. A checkpoint whose weights are damaged "
        "always falls back", flag_values=flag_values)
    flags.DEFINE_float("log_interval_s", 5.0, "seconds between summaries", flag_values=flag_values)
    flags.DEFINE_float(
        "max_abs_reward", protocol.DEFAULT_LIMITS.max_abs_reward,
        "the learner refuses an actor's step whose reward's magnitude exceeds this (and episode returns beyond it "
        "times their length); far above real environments' rewards, far below where float32 returns overflow", flag_values=flag_values)
    flags.DEFINE_integer(
        "max_envs_per_stream", 0,
        "the most environments one actor stream may step; 0: --envs_per_actor. Bounds what one actor can make the "
        "learner allocate", flag_values=flag_values)
    flags.DEFINE_integer(
        "max_skipped_updates", 100,
        "an update whose loss or gradient norm is NaN or inf is skipped and counted (updates_skipped); this many in a "
        "row stop training with an error, leaving the last finite checkpoint", flag_values=flag_values)
    flags.DEFINE_string(
        "device", "auto",
        "torch device of the learner: auto, cpu, cuda, cuda:1, ...; under torchrun (several learner ranks) auto gives "
        "each rank cuda:LOCAL_RANK, or the CPU", flag_values=flag_values)
    flags.DEFINE_integer(
        "learners", 1,
        "data-parallel learner ranks on this machine (one per GPU, or CPU ranks), started with torchrun's launcher; "
        "the same as torchrun --standalone --nproc_per_node=N -m seed_rl.train", flag_values=flag_values)
    flags.DEFINE_integer(
        "learner_max_restarts", 0,
        "with --learners > 1: times torchrun restarts all ranks (from the last checkpoint) after one fails", flag_values=flag_values)
    flags.DEFINE_float(
        "collective_timeout_s", 300.0,
        "several learner ranks (torchrun): a rank waiting this long for a peer in a collective (a rank that died) "
        "stops with an error, so torchrun can restart the job (--max-restarts) from the last checkpoint", flag_values=flag_values)
    flags.DEFINE_enum(
        "precision", "auto", list(PRECISIONS),
        "arithmetic of the learner's forward passes (weights, optimizer and losses stay float32): bf16 autocast, "
        "fp32, or auto: bf16 for image observations where the device runs it natively (CPUs with AMX or AVX-512 "
        "BF16, CUDA compute capability 8.0+), else fp32", flag_values=flag_values)
    flags.DEFINE_integer(
        "torch_threads", 0,
        "torch intra-op threads on the learner; 0: on a CPU learner the cores its local actors leave (at least 1), "
        "or every core for an agent whose actors wait on the learner (R2D2 on images), else torch's default", flag_values=flag_values)
    flags.DEFINE_string("tls_cert_file", None, "PEM certificate (chain) the learner serves TLS with; needs --tls_key_file", flag_values=flag_values)
    flags.DEFINE_string("tls_key_file", None, "PEM private key of --tls_cert_file", flag_values=flag_values)
    flags.DEFINE_boolean("insecure", False, "allow serving on a non-loopback interface without TLS and a token (logs a warning)", flag_values=flag_values)
    for builder in registry.BUILDERS.values():
        define_dataclass_flags(builder.config_class, flag_values)
    roles.define_shared_flags(flag_values)  # --env, --seed, --envs_per_actor, --auth_token_file, EnvConfig
    # --help shows this module's flags, the shared ones and every agent's; --helpfull adds the environment's.
    for name in sorted(roles.MAIN_SHARED_FLAGS.union(
        *(roles.dataclass_flag_names(b.config_class) for b in registry.BUILDERS.values())
    )):
        flags.declare_key_flag(name, flag_values)
