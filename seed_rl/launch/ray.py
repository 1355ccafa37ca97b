"""Train on a Ray cluster: ``python -m seed_rl.launch.ray --num_actors=N [training flags...]``.

Places the learner (``seed_rl.train --role=learner``) as one Ray actor, with a
GPU when the cluster has one, and N actors (``seed_rl.actor``) as Ray actors
spread over the nodes. Ray restarts an actor that dies (``max_restarts=-1``);
its environments rejoin the learner. The run ends when the learner reaches its
frame budget; Ctrl-C stops the learner first (it writes a final checkpoint),
then the actors. Every flag this launcher does not define is passed through:
to the learner, and the environment and client-security ones to the actors too.

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
    flags.DEFINE_float("learner_num_cpus", 1.0, "CPUs Ray reserves for the learner", flag_values=flag_values)
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


def learner_gpus(ray, mode: str) -> int:
    if mode == "yes":
        return 1
    if mode == "no":
        return 0
    return 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0


class RayRun:
    """The learner and actors of one run, placed as Ray actors."""

    def __init__(self, ray, learner_argv: list[str], actor_argv: list[str], local_cluster: bool):
        from seed_rl.launch.ray_processes import ActorProcess, LearnerProcess

        self.ray = ray
        extra_env = {k: os.environ[k] for k in FORWARDED_ENV_VARS if k in os.environ}
        cwd = os.getcwd()
        resources = ray.cluster_resources()
        num_gpus = learner_gpus(ray, FLAGS.learner_gpu)
        log.info(
            "Ray cluster: %d node(s), %g CPUs, %g GPUs; learner with %d GPU; %d actors x %d envs",
            sum(1 for n in ray.nodes() if n.get("Alive")), resources.get("CPU", 0), resources.get("GPU", 0),
            num_gpus, FLAGS.num_actors, FLAGS.envs_per_actor,
        )
        needed = FLAGS.learner_num_cpus + FLAGS.num_actors * FLAGS.actor_num_cpus
        if needed > resources.get("CPU", 0):
            log.warning("this run reserves %g CPUs, the cluster has %g now: some actors wait for resources", needed, resources.get("CPU", 0))
        try:
            self.learner = ray.remote(LearnerProcess).options(
                name="learner", num_cpus=FLAGS.learner_num_cpus, num_gpus=num_gpus,
                # One learner; if its node dies, rerunning the command resumes
                # from the last checkpoint (a restart elsewhere would move its address).
                max_restarts=0, max_concurrency=4,
            ).remote(extra_env, cwd, "learner")
        except ValueError as e:  # the name is taken
            raise LaunchError(
                f"{e} Another run uses Ray namespace {FLAGS.ray_namespace!r}; give this one its own --ray_namespace"
            ) from None
        host = FLAGS.learner_host
        if host == "auto":
            if num_gpus:
                log.info("placing the learner on a node with a GPU (waits until one exists)")
            # Placing the learner first tells us its node.
            host = "127.0.0.1" if local_cluster else ray.get(self.learner.node_ip.remote())
        self.learner_address = f"{host}:{FLAGS.learner_port}"
        self.learner_run = self.learner.run.remote([
            "seed_rl.train", "--role=learner", f"--learner_address={self.learner_address}",
            f"--num_actors={FLAGS.num_actors}", f"--envs_per_actor={FLAGS.envs_per_actor}", *learner_argv,
        ])
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
            self.actor_runs[handle.run.remote([
                "seed_rl.actor", f"--learner_address={self.learner_address}",
                f"--envs_per_actor={FLAGS.envs_per_actor}", f"--actor_id={i}", *actor_argv,
            ])] = i

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
        ray = import_ray()
        # Explicitly: a shell starts background jobs with SIGINT ignored.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        connect(ray, FLAGS.ray_address, FLAGS.learner_num_cpus + FLAGS.num_actors * FLAGS.actor_num_cpus)
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
