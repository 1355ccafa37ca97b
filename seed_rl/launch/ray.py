"""Train on a Ray cluster: ``python -m seed_rl.launch.ray --num_actors=N [training flags...]``.

Places the learner (``seed_rl.train --role=learner``) as one Ray actor, with a
GPU when the cluster has one, and N actors (``seed_rl.actor``) as Ray actors
spread over the nodes. Ray restarts an actor that dies (``max_restarts=-1``);
its environments rejoin the learner. The run ends when the learner reaches its
frame budget; Ctrl-C stops the learner first (it writes a final checkpoint),
then the actors. Every flag this launcher does not define is passed through:
to the learner, and the environment and client-security ones to the actors too.

``--learners=N`` (N > 1) runs N data-parallel learner ranks as one Ray actor:
``torchrun --standalone --nproc_per_node=N`` (see :mod:`seed_rl.launch.learners`)
in a placement group of one bundle, N GPUs (or N x ``--learner_num_cpus`` CPUs for
CPU ranks) on one node (``STRICT_PACK``). Rank r listens on ``--learner_port`` + r,
and the actors get the N addresses as one comma-separated ``--learner_address``.

``--ray_address``: empty starts a local cluster for this run; ``auto`` joins the
cluster of this machine (``ray start``); ``HOST:PORT`` or ``ray://HOST:10001``
(Ray client) joins a remote one. On a cluster the learner listens on its
node's IP, which needs the learner's security flags (TLS and a token, or
``--insecure``); on a local cluster it listens on 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

from absl import app, flags

from seed_rl import exits
from seed_rl.config import roles
from seed_rl.launch import learners

log = logging.getLogger("seed_rl.launch.ray")
FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines this launcher's flags; only the command line needs them (importing this module defines none)."""
    if "ray_address" in flag_values:
        return
    flags.DEFINE_string("ray_address", "", "Ray cluster: empty starts a local one; 'auto', HOST:PORT or ray://HOST:10001 joins one", flag_values=flag_values)
    flags.DEFINE_string("ray_namespace", "seed_rl", "Ray namespace of this run's named actors (learner, actor-0, ...)", flag_values=flag_values)
    flags.DEFINE_integer("num_actors", 2, "seed_rl actors, one Ray actor each, spread over the nodes", flag_values=flag_values)
    flags.DEFINE_integer("envs_per_actor", 8, "environments stepped by each actor", flag_values=flag_values)
    flags.DEFINE_integer("learner_port", 8686, "port the learner listens on", flag_values=flag_values)
    flags.DEFINE_string(
        "learner_host", "auto",
        "interface the learner listens on and actors dial: auto is 127.0.0.1 on a local cluster "
        "(empty --ray_address), else the learner node's IP",
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        "learner_gpu", "auto", ["auto", "yes", "no"],
        "auto: one GPU for the learner when the cluster has one now; yes: wait for a GPU node (autoscaling clusters)",
        flag_values=flag_values,
    )
    flags.DEFINE_float("learner_num_cpus", 1.0, "CPUs Ray reserves for the learner (for each rank with --learners > 1)", flag_values=flag_values)
    flags.DEFINE_integer(
        "learners", 1,
        "data-parallel learner ranks on one node: N > 1 runs them under torchrun in a placement group of N GPUs "
        "(or N CPU ranks); rank r listens on --learner_port + r",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "learner_max_restarts", 0,
        "with --learners > 1: how often torchrun restarts all ranks after one dies (they resume from the last checkpoint)",
        flag_values=flag_values,
    )
    flags.DEFINE_float("actor_num_cpus", 1.0, "CPUs Ray reserves for each actor", flag_values=flag_values)
    flags.DEFINE_float("stop_timeout_s", 300.0, "after Ctrl-C, how long the learner may take to write its checkpoint", flag_values=flag_values)


# Every launcher's own flags, with this launcher's way of choosing the address.
RAY_LAUNCHER_SET_FLAGS = {
    **roles.LAUNCHER_SET_FLAGS,
    "learner_address": "use --learner_port (and --learner_host)",
}
# Passed to the learner and actor processes when set here.
FORWARDED_ENV_VARS = ("SEED_RL_AUTH_TOKEN",)
RAY_INSTALL_HINT = "pip install 'seed_rl[ray]'"


class LaunchError(Exception):
    """A user-facing problem, printed as one ``error:`` line."""


def route_flags(passthrough: list[str]) -> tuple[list[str], list[str]]:
    """Splits the flags this launcher does not define into (learner flags, actor flags): ``roles.split_train_flags``."""
    try:
        return roles.split_train_flags(passthrough, RAY_LAUNCHER_SET_FLAGS)
    except roles.RoleError as e:
        raise LaunchError(str(e)) from None


def import_ray():
    try:
        import ray
    except ImportError as e:
        raise LaunchError(f"Ray is not installed ({e}); install it with {RAY_INSTALL_HINT}") from None
    return ray


def connect(ray, address: str, needed_cpus: float) -> None:
    """Starts a local cluster (empty address) or joins one."""
    kwargs = dict(namespace=FLAGS.ray_namespace, log_to_driver=True)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            # Like --role=local, a local run starts every process even if they
            # outnumber the cores; Ray would otherwise leave actors waiting.
            ray.init(num_cpus=max(os.cpu_count() or 1, int(needed_cpus + 0.999)), include_dashboard=False, **kwargs)
    except Exception as e:  # Ray raises ConnectionError, ValueError, RuntimeError, ...
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise LaunchError(f"could not connect to {where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def learner_gpus(ray, mode: str, num_learners: int = 1) -> int:
    """1 when each learner rank gets a GPU, else 0; ``auto``: when the cluster has one now (N ranks: a node with N)."""
    if mode == "yes":
        return 1
    if mode == "no":
        return 0
    if num_learners == 1:
        return 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    most = max((n.get("Resources", {}).get("GPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)
    if most >= num_learners:
        return 1
    if most:
        raise LaunchError(
            f"--learners={num_learners} needs {num_learners} GPUs on one node; the cluster's largest GPU node has "
            f"{most:g} now: give --learner_gpu=yes to wait for one, --learner_gpu=no for CPU ranks, or fewer --learners"
        )
    return 0


def learner_bundle(num_learners: int, gpu: int, cpus_per_rank: float) -> dict[str, float]:
    """What the learner's Ray actor reserves: ``cpus_per_rank`` CPUs per rank, and one GPU per rank when ``gpu``."""
    bundle = {"CPU": num_learners * cpus_per_rank}
    if gpu:
        bundle["GPU"] = float(num_learners * gpu)
    return bundle


def learner_placement(ray, num_learners: int, bundle: dict[str, float]) -> tuple[object | None, dict]:
    """(placement group or None, Ray actor options) for the learner.

    One learner reserves the bundle as plain ``num_cpus``/``num_gpus``, as always;
    N ranks get a new ``STRICT_PACK`` placement group holding the bundle, so all
    of it is on one node; the caller removes the group when the run ends.
    """
    options = {"num_cpus": bundle["CPU"], "num_gpus": bundle.get("GPU", 0)}
    if num_learners == 1:
        return None, options
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    group = ray.util.placement_group([bundle], strategy="STRICT_PACK")
    options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(placement_group=group, placement_group_bundle_index=0)
    return group, options


def learner_command(flag_values: flags.FlagValues, host: str, learner_argv: list[str]) -> list[str]:
    """``python -m`` arguments of the learner: ``seed_rl.train``, or torchrun running it on ``--learners`` ranks."""
    fv = flag_values
    return [
        *learners.learner_module_argv(fv.learners, fv.learner_max_restarts), "--role=learner",
        f"--learner_address={host}:{fv.learner_port}", f"--num_actors={fv.num_actors}",
        f"--envs_per_actor={fv.envs_per_actor}", *learner_argv,
    ]


def actor_command(flag_values: flags.FlagValues, host: str, actor_id: int, actor_argv: list[str]) -> list[str]:
    """``python -m`` arguments of actor ``actor_id``: it gets every learner rank's address, comma-separated."""
    fv = flag_values
    return [
        "seed_rl.actor", f"--learner_address={learners.learner_addresses(host, fv.learner_port, fv.learners)}",
        f"--envs_per_actor={fv.envs_per_actor}", f"--actor_id={actor_id}", *actor_argv,
    ]


class RayRun:
    """The learner and actors of one run, placed as Ray actors."""

    def __init__(self, ray, learner_argv: list[str], actor_argv: list[str], local_cluster: bool):
        from seed_rl.launch.ray_processes import ActorProcess, LearnerProcess

        self.ray = ray
        extra_env = {k: os.environ[k] for k in FORWARDED_ENV_VARS if k in os.environ}
        cwd = os.getcwd()
        resources = ray.cluster_resources()
        num_learners = FLAGS.learners
        bundle = learner_bundle(num_learners, learner_gpus(ray, FLAGS.learner_gpu, num_learners), FLAGS.learner_num_cpus)
        num_gpus = bundle.get("GPU", 0)
        log.info(
            "Ray cluster: %d node(s), %g CPUs, %g GPUs; learner (%d rank(s)) with %d GPU; %d actors x %d envs",
            sum(1 for n in ray.nodes() if n.get("Alive")), resources.get("CPU", 0), resources.get("GPU", 0),
            num_learners, num_gpus, FLAGS.num_actors, FLAGS.envs_per_actor,
        )
        needed = bundle["CPU"] + FLAGS.num_actors * FLAGS.actor_num_cpus
        if needed > resources.get("CPU", 0):
            log.warning("this run reserves %g CPUs, the cluster has %g now: some actors wait for resources", needed, resources.get("CPU", 0))
        learner_env = dict(extra_env)
        if num_learners > 1:
            # torchrun gives its ranks this long to stop (final checkpoint) after a signal; its default is 30 s.
            learner_env["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"] = str(int(FLAGS.stop_timeout_s))
        self.placement_group, placement = learner_placement(ray, num_learners, bundle)
        try:
            self.learner = ray.remote(LearnerProcess).options(
                name="learner", **placement,
                # One learner; if its node dies, rerunning the command resumes
                # from the last checkpoint (a restart elsewhere would move its address).
                max_restarts=0, max_concurrency=4,
            ).remote(learner_env, cwd, "learner")
        except ValueError as e:  # the name is taken
            self.remove_placement_group()
            raise LaunchError(
                f"{e} Another run uses Ray namespace {FLAGS.ray_namespace!r}; give this one its own --ray_namespace"
            ) from None
        host = FLAGS.learner_host
        if host == "auto":
            if num_learners > 1:
                log.info("placing the learner's %d ranks on one node with %s (waits until one exists)",
                         num_learners, f"{num_gpus:g} GPUs" if num_gpus else f"{bundle['CPU']:g} CPUs")
            elif num_gpus:
                log.info("placing the learner on a node with a GPU (waits until one exists)")
            # Placing the learner first tells us its node.
            host = "127.0.0.1" if local_cluster else ray.get(self.learner.node_ip.remote())
        self.learner_address = learners.learner_addresses(host, FLAGS.learner_port, num_learners)
        self.learner_run = self.learner.run.remote(learner_command(FLAGS, host, learner_argv))
        log.info("learner serving at %s", self.learner_address)
        actor_class = ray.remote(ActorProcess)
        self.actors = []
        self.actor_runs = {}
        for i in range(FLAGS.num_actors):
            handle = actor_class.options(
                name=f"actor-{i}", num_cpus=FLAGS.actor_num_cpus, scheduling_strategy="SPREAD",
                max_restarts=-1, max_task_retries=-1, max_concurrency=4,
            ).remote(extra_env, cwd, f"actor {i}")
            self.actors.append(handle)
            self.actor_runs[handle.run.remote(actor_command(FLAGS, host, i, actor_argv))] = i

    def wait(self) -> None:
        """Returns when the learner finishes; raises LaunchError if it or an actor fails."""
        ray = self.ray
        while True:
            pending = [self.learner_run, *self.actor_runs]
            ready, _ = ray.wait(pending, num_returns=1, timeout=1.0)
            if not ready:
                continue
            ref = ready[0]
            if ref == self.learner_run:
                self.check_learner()
                return
            i = self.actor_runs.pop(ref)
            try:
                ray.get(ref)
                message = f"actor {i} stopped on its own"
            except ray.exceptions.RayError as e:
                message = _first_line(getattr(e, "cause", None) or e)
            log.error("%s; stopping the learner", message)
            self.stop_learner()
            raise LaunchError(message)

    def check_learner(self) -> None:
        try:
            returncode, reason = self.ray.get(self.learner_run)
        except self.ray.exceptions.RayError as e:
            raise LaunchError(
                f"the learner's Ray actor died ({_first_line(e)}); rerun the same command to resume from its last checkpoint"
            ) from None
        if returncode != 0:
            raise LaunchError(f"the learner failed: {reason}")

    def stop_learner(self, timeout_s: float | None = None) -> None:
        """Asks the learner to stop and write its checkpoint, and waits for it."""
        ray = self.ray
        try:
            ray.get(self.learner.stop.remote())
            ray.wait([self.learner_run], timeout=timeout_s if timeout_s is not None else FLAGS.stop_timeout_s)
        except ray.exceptions.RayError:
            pass  # already gone

    def kill(self) -> None:
        """Stops the actors' processes (briefly gracefully), then removes every Ray actor of the run."""
        ray = self.ray
        try:
            ray.wait([a.stop.remote() for a in self.actors], num_returns=len(self.actors), timeout=5)
            ray.wait(list(self.actor_runs), num_returns=len(self.actor_runs), timeout=5)
        except ray.exceptions.RayError:
            pass
        for handle in [*self.actors, self.learner]:
            try:
                self.ray.kill(handle, no_restart=True)
            except Exception:  # already dead
                pass
        self.remove_placement_group()

    def remove_placement_group(self) -> None:
        """Frees the learner ranks' placement group, if the run made one."""
        if self.placement_group is not None:
            try:
                self.ray.util.remove_placement_group(self.placement_group)
            except Exception:  # the cluster is gone
                pass
            self.placement_group = None


def _first_line(error) -> str:
    text = str(error).strip()
    for line in text.splitlines():
        if line.strip() and not line.startswith(("Traceback", "ray::", "  ")):
            return line.strip()
    return type(error).__name__


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        learner_argv, actor_argv = route_flags(argv[1:])
        if FLAGS.num_actors < 1:
            raise LaunchError(f"--num_actors={FLAGS.num_actors}: need at least one actor")
        try:
            learners.check_learners(FLAGS.learners, FLAGS.learner_max_restarts, FLAGS.learner_port)
        except learners.LearnersError as e:
            raise LaunchError(str(e)) from None
        ray = import_ray()
        # Explicitly: a shell starts background jobs with SIGINT ignored.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        connect(ray, FLAGS.ray_address, FLAGS.learners * FLAGS.learner_num_cpus + FLAGS.num_actors * FLAGS.actor_num_cpus)
    except LaunchError as e:
        exits.fail(e)
    except KeyboardInterrupt:
        exits.fail("interrupted while connecting to Ray")
    run = None
    started = time.monotonic()
    try:
        try:
            run = RayRun(ray, learner_argv, actor_argv, local_cluster=not FLAGS.ray_address)
            run.wait()
            log.info("the learner finished after %.0f s; stopping the actors", time.monotonic() - started)
        except KeyboardInterrupt:
            if run is None:
                raise LaunchError("interrupted while placing the learner and actors") from None
            log.info("stopping: the learner writes a final checkpoint (Ctrl-C again to abort)")
            try:
                run.stop_learner()
            except KeyboardInterrupt:
                raise LaunchError("aborted before the learner finished its checkpoint") from None
            if not ray.wait([run.learner_run], timeout=0)[0]:
                raise LaunchError(f"the learner did not stop within --stop_timeout_s={FLAGS.stop_timeout_s:g}")
            run.check_learner()
    except LaunchError as e:
        exits.fail(e)
    finally:
        if run is not None:
            run.kill()
        ray.shutdown()


def run_cli() -> None:
    """Console-script entry point (``seed-rl-ray``)."""
    define_flags()
    app.run(main, flags_parser=exits.parse_known_flags)  # the flags it does not define go through


if __name__ == "__main__":
    run_cli()
