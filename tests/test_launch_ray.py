"""``python -m seed_rl.launch.ray`` on a local Ray cluster that this module starts.

The launcher joins the cluster by its address, as on a multi-node cluster, and
runs CartPole IMPALA with its actors as Ray actors. One test kills a Ray actor
midway (Ray restarts it), the other SIGKILLs an actor's process and then stops
the run with Ctrl-C. Ray is kept on the loopback interface.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest
from absl import flags

from seed_rl import exits
from seed_rl.launch.ray import (
    LaunchError, actor_command, define_flags, learner_bundle, learner_command, learner_gpus, learner_placement,
    route_flags,
)
from process_helpers import pid_alive
from train_helpers import ROOT, read_metrics

# Ray otherwise advertises this machine's network address; the tests stay on
# loopback. Ray reads this once, when it is imported.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
os.environ.update(LOOPBACK_ENV)
import ray  # noqa: E402


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    try:
        address = ray.get_runtime_context().gcs_address
        assert address.startswith("127.0.0.1:"), f"Ray left loopback: {address}"
        yield address
    finally:
        ray.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_launcher(address: str, namespace: str, logdir, *flags: str) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "seed_rl.launch.ray", f"--ray_address={address}", f"--ray_namespace={namespace}",
        f"--learner_port={_free_port()}", "--num_actors=2", "--envs_per_actor=4", "--env=CartPole-v1",
        f"--logdir={logdir}", "--log_interval_s=1", *flags,
    ]
    return subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, **LOOPBACK_ENV},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _wait_for(predicate, launcher: subprocess.Popen | None, what: str, timeout_s: float = 90.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if launcher is not None and launcher.poll() is not None:
            raise AssertionError(f"the launcher exited ({launcher.returncode}) while waiting for {what}:\n{launcher.stdout.read()[-4000:]}")
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _child_pid(name: str, namespace: str) -> int | None:
    try:
        return ray.get(ray.get_actor(name, namespace=namespace).child_pid.remote(), timeout=5)
    except (ValueError, ray.exceptions.RayError):
        return None  # not registered yet, or restarting


def _gone(pid: int) -> bool:
    return not pid_alive(pid)


def _rejoined_after(logdir, frames: int) -> bool:
    return any(m["frames"] > frames and m.get("actors_connected") == 2 for m in read_metrics(logdir))


def _finish(launcher: subprocess.Popen, timeout_s: float = 120) -> str:
    try:
        output, _ = launcher.communicate(timeout=timeout_s)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    return output


def test_killed_ray_actor_is_restarted_and_the_run_completes(ray_cluster, tmp_path):
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    budget = 50_000
    launcher = _start_launcher(ray_cluster, namespace, tmp_path, f"--total_environment_frames={budget}")
    try:
        _wait_for(lambda: any(m["frames"] >= 2000 and m.get("actors_connected") == 2 for m in read_metrics(tmp_path)),
                  launcher, "training with both actors")
        old_pid = _child_pid("actor-0", namespace)
        learner_pid = _child_pid("learner", namespace)
        assert old_pid and learner_pid
        frames_at_kill = read_metrics(tmp_path)[-1]["frames"]
        ray.kill(ray.get_actor("actor-0", namespace=namespace), no_restart=False)

        new_pid = _wait_for(lambda: (p := _child_pid("actor-0", namespace)) not in (None, old_pid) and p,
                            launcher, "Ray to restart actor-0")
        _wait_for(lambda: _gone(old_pid), launcher, "the killed actor's process to end with its Ray actor", 15)
        _wait_for(lambda: _rejoined_after(tmp_path, frames_at_kill), launcher, "the restarted actor to rejoin")
        actor_pids = [new_pid, _child_pid("actor-1", namespace)]
        output = _finish(launcher)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 0, output[-4000:]
    assert read_metrics(tmp_path)[-1]["frames"] >= budget
    assert list((tmp_path / "checkpoints").glob("ckpt-*.pt"))
    assert "the learner finished" in output
    for pid in [learner_pid, *actor_pids]:
        _wait_for(lambda: _gone(pid), None, f"process {pid} to end", 15)


def test_crashed_actor_process_restarts_and_ctrl_c_stops_the_run_with_a_checkpoint(ray_cluster, tmp_path):
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    launcher = _start_launcher(ray_cluster, namespace, tmp_path, "--total_environment_frames=100000000")
    try:
        _wait_for(lambda: any(m["frames"] >= 2000 and m.get("actors_connected") == 2 for m in read_metrics(tmp_path)),
                  launcher, "training with both actors")
        old_pid = _child_pid("actor-1", namespace)
        frames_at_kill = read_metrics(tmp_path)[-1]["frames"]
        os.kill(old_pid, signal.SIGKILL)  # the seed_rl actor process, not its Ray actor
        _wait_for(lambda: (p := _child_pid("actor-1", namespace)) not in (None, old_pid), launcher,
                  "Ray to restart actor-1")
        _wait_for(lambda: _rejoined_after(tmp_path, frames_at_kill), launcher, "the restarted actor to rejoin")
        pids = [_child_pid(name, namespace) for name in ("learner", "actor-0", "actor-1")]
        launcher.send_signal(signal.SIGINT)
        output = _finish(launcher)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 0, output[-4000:]
    assert "writes a final checkpoint" in output
    checkpoints = sorted((tmp_path / "checkpoints").glob("ckpt-*.pt"))
    assert checkpoints, output[-3000:]
    assert frames_at_kill < int(checkpoints[-1].stem.split("-")[1]) < 100_000_000
    for pid in pids:
        _wait_for(lambda: _gone(pid), None, f"process {pid} to end", 15)


def test_a_bad_environment_stops_the_run_with_one_line(ray_cluster, tmp_path):
    launcher = _start_launcher(ray_cluster, f"test-{uuid.uuid4().hex[:8]}", tmp_path, "--env=CartPoleX-v1")
    output = _finish(launcher)
    assert launcher.returncode == exits.USER_ERROR
    # The launcher's own error line (not Ray's forwarded "(ActorProcess ...)" logs, which
    # may arrive after it) names the problem, from the learner or an actor, whichever failed first.
    own = [line for line in output.strip().splitlines() if line.startswith("error: ")]
    assert len(own) == 1 and "unknown environment id 'CartPoleX-v1'" in own[0], output[-3000:]


def test_flags_are_routed_to_the_learner_and_the_actors():
    learner, actor = route_flags([
        "--env=CartPole-v1", "--agent=r2d2", "--frame_skip=2", "--nograyscale", "--seed=3",
        "--level_cache_dir=/cache", "--nodmlab_instruction",
        "--tls_cert_file=c.pem", "--tls_key_file=k.pem", "--auth_token_file=t", "--tls_ca_file=ca.pem",
        "--tls_server_name=learner.example", "--insecure", "--total_environment_frames=10",
    ])
    assert learner == [
        "--env=CartPole-v1", "--agent=r2d2", "--frame_skip=2", "--nograyscale", "--seed=3",
        "--level_cache_dir=/cache", "--nodmlab_instruction",
        "--tls_cert_file=c.pem", "--tls_key_file=k.pem", "--auth_token_file=t", "--insecure",
        "--total_environment_frames=10",
    ]
    assert actor == [
        "--env=CartPole-v1", "--frame_skip=2", "--nograyscale", "--seed=3",
        "--level_cache_dir=/cache", "--nodmlab_instruction", "--auth_token_file=t",
        "--tls_ca_file=ca.pem", "--tls_server_name=learner.example",
    ]


@pytest.mark.parametrize(
    "arg", ["--learner_address=0.0.0.0:1", "--server_address=0.0.0.0:1", "--role=local", "--actor_id=2", "stray"]
)
def test_flags_the_launcher_sets_are_refused(arg):
    with pytest.raises(LaunchError):
        route_flags([arg])


def _run_launcher_module(*flags: str, hide_ray: bool = False) -> subprocess.CompletedProcess:
    code = (
        ("import sys; sys.modules['ray'] = None\n" if hide_ray else "")
        + "import runpy; runpy.run_module('seed_rl.launch.ray', run_name='__main__')"
    )
    return subprocess.run([sys.executable, "-c", code, *flags], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_missing_ray_says_how_to_install_it():
    result = _run_launcher_module("--env=CartPole-v1", hide_ray=True)
    assert result.returncode == exits.USER_ERROR
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: Ray is not installed") and "pip install 'seed_rl[ray]'" in last


def test_a_launcher_set_flag_is_refused_in_one_line():
    result = _run_launcher_module("--learner_address=127.0.0.1:9", hide_ray=True)
    assert result.returncode == exits.USER_ERROR
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --learner_address is set by the launcher: use --learner_port (and --learner_host)"
    )


CLUSTER_DIR = ROOT / "tools" / "ray_cluster"


def _route_launcher_command(command: str) -> tuple[list[str], list[str]]:
    """Parses a ``python -m seed_rl.launch.ray ...`` line as the launcher would; returns the routed flags."""
    from absl import flags

    args = command.split()
    assert args[:3] == ["python", "-m", "seed_rl.launch.ray"], command
    launcher_flags = flags.FlagValues()
    define_flags(launcher_flags)
    passthrough = launcher_flags(["seed_rl.launch.ray", *args[3:]], known_only=True)[1:]
    assert launcher_flags.ray_address == "auto"
    return route_flags(passthrough)


def test_ray_up_config_passes_rays_cluster_schema():
    import yaml
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((CLUSTER_DIR / "gcp.yaml").read_text())
    validate_config(prepare_config(config))  # raises on unknown or missing fields
    assert config["available_node_types"][config["head_node_type"]]["resources"]["GPU"] == 1
    # The command in its header routes the security flags to both sides.
    header = " ".join(
        line.lstrip("# ").rstrip("\\ ") for line in (CLUSTER_DIR / "gcp.yaml").read_text().splitlines()
        if line.startswith("#")
    )
    command = header.split("ray exec tools/ray_cluster/gcp.yaml '", 1)[1].split("'", 1)[0]
    learner, actor = _route_launcher_command(command)
    assert "--tls_cert_file=/home/ray/secrets/learner.pem" in learner and "--tls_ca_file=/home/ray/secrets/ca.pem" in actor
    assert "--auth_token_file=/home/ray/secrets/token" in learner and "--auth_token_file=/home/ray/secrets/token" in actor


def test_kuberay_rayjob_runs_the_launcher_with_a_gpu_head():
    import yaml

    job = yaml.safe_load((CLUSTER_DIR / "kuberay-rayjob.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    learner, actor = _route_launcher_command(job["spec"]["entrypoint"])
    assert "--env=atari:Pong" in learner and "--env=atari:Pong" in actor
    assert "--tls_server_name=seed-rl-learner" in actor and "--tls_server_name=seed-rl-learner" not in learner
    cluster = job["spec"]["rayClusterSpec"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert any(e["name"] == "SEED_RL_AUTH_TOKEN" for e in head["env"])
    assert cluster["rayVersion"].split(".")[0] == ray.__version__.split(".")[0]


@ray.remote(num_cpus=0)
class _Placeholder:
    def ping(self) -> bool:
        return True


def test_a_second_run_in_the_same_namespace_is_refused_in_one_line(ray_cluster, tmp_path):
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    holder = _Placeholder.options(name="learner", namespace=namespace).remote()
    assert ray.get(holder.ping.remote())
    try:
        launcher = _start_launcher(ray_cluster, namespace, tmp_path, "--total_environment_frames=1000")
        output = _finish(launcher)
    finally:
        ray.kill(holder)
    assert launcher.returncode == exits.USER_ERROR
    last = output.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"give this one its own --ray_namespace" in last, output[-3000:]
    assert not (tmp_path / "metrics.jsonl").exists()


def test_tls_and_token_flags_reach_the_learner_and_the_actors(ray_cluster, tmp_path):
    from tls_helpers import make_self_signed, write_token

    cert = make_self_signed(tmp_path / "certs")
    token = write_token(tmp_path / "token", "ray-launcher-token")
    logdir = tmp_path / "run"
    launcher = _start_launcher(
        ray_cluster, f"test-{uuid.uuid4().hex[:8]}", logdir, "--total_environment_frames=3000",
        f"--tls_cert_file={cert.cert}", f"--tls_key_file={cert.key}", f"--tls_ca_file={cert.cert}",
        f"--auth_token_file={token}",
    )
    output = _finish(launcher)
    assert launcher.returncode == 0, output[-4000:]
    assert read_metrics(logdir)[-1]["frames"] >= 3000
    assert "(TLS, token required)" in output, output[-3000:]


# --- several learner ranks (--learners=N) -----------------------------------------------------


def _launcher_flags(*args: str) -> flags.FlagValues:
    launcher_flags = flags.FlagValues()
    define_flags(launcher_flags)
    launcher_flags(["seed_rl.launch.ray", *args])
    return launcher_flags


def test_one_learner_keeps_todays_commands():
    fv = _launcher_flags("--learner_port=9000", "--num_actors=2")
    assert learner_command(fv, "10.0.0.5", ["--env=CartPole-v1"]) == [
        "seed_rl.train", "--role=learner", "--learner_address=10.0.0.5:9000", "--num_actors=2",
        "--envs_per_actor=8", "--env=CartPole-v1",
    ]
    assert actor_command(fv, "10.0.0.5", 1, ["--env=CartPole-v1"]) == [
        "seed_rl.actor", "--learner_address=10.0.0.5:9000", "--envs_per_actor=8", "--actor_id=1", "--env=CartPole-v1",
    ]
    group, options = learner_placement(None, 1, learner_bundle(1, 1, 1.0))
    assert group is None and options == {"num_cpus": 1.0, "num_gpus": 1.0}


def test_two_learners_run_under_torchrun_and_every_actor_gets_both_addresses():
    fv = _launcher_flags("--learners=2", "--learner_max_restarts=3", "--learner_port=9000", "--num_actors=3")
    assert learner_command(fv, "10.0.0.5", ["--env=CartPole-v1"]) == [
        "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--max-restarts=3", "-m", "seed_rl.train",
        "--role=learner", "--learner_address=10.0.0.5:9000", "--num_actors=3", "--envs_per_actor=8",
        "--env=CartPole-v1",
    ]
    for i in range(3):
        command = actor_command(fv, "10.0.0.5", i, [])
        assert command[:2] == ["seed_rl.actor", "--learner_address=10.0.0.5:9000,10.0.0.5:9001"]
        assert f"--actor_id={i}" in command
    assert learner_bundle(2, 1, 1.5) == {"CPU": 3.0, "GPU": 2.0}
    assert learner_bundle(2, 0, 1.0) == {"CPU": 2.0}


class _FakeRay:
    def __init__(self, *node_gpus: float):
        self._nodes = [{"Alive": True, "Resources": {"CPU": 8, **({"GPU": g} if g else {})}} for g in node_gpus]

    def nodes(self):
        return self._nodes

    def cluster_resources(self):
        return {"GPU": sum(n["Resources"].get("GPU", 0) for n in self._nodes)}


def test_auto_gpu_for_several_learners_needs_a_node_with_that_many():
    assert learner_gpus(_FakeRay(1, 1), "auto") == 1  # one learner: as today
    assert learner_gpus(_FakeRay(2, 4), "auto", 4) == 1
    assert learner_gpus(_FakeRay(0, 0), "auto", 2) == 0  # CPU ranks
    assert learner_gpus(_FakeRay(0), "yes", 2) == 1 and learner_gpus(_FakeRay(8), "no", 2) == 0
    with pytest.raises(LaunchError, match="--learners=4 needs 4 GPUs on one node; the cluster's largest GPU node has 2"):
        learner_gpus(_FakeRay(1, 1, 2), "auto", 4)  # 4 GPUs in all, but not on one node


def test_several_learners_reserve_one_strict_pack_bundle(ray_cluster):
    group, options = learner_placement(ray, 2, learner_bundle(2, 0, 1.0))
    try:
        holder = _Placeholder.options(**options).remote()
        assert ray.get(holder.ping.remote(), timeout=60)
        table = ray.util.placement_group_table(group)
        assert table["strategy"] == "STRICT_PACK" and table["state"] == "CREATED"
        assert table["bundles"] == {0: {"CPU": 2.0}}
        assert options["num_cpus"] == 2.0 and options["num_gpus"] == 0
        ray.kill(holder)
    finally:
        ray.util.remove_placement_group(group)


@pytest.mark.parametrize("args, message", [
    (["--learners=0"], "error: --learners=0: need at least one learner rank"),
    (["--learner_max_restarts=2"], "error: --learner_max_restarts=2 needs --learners > 1"),
    (["--learners=4", "--learner_port=65534"], "error: --learners=4 ranks listen on ports 65534..65537, past 65535"),
])
def test_bad_learner_counts_are_refused_in_one_line(args, message):
    result = _run_launcher_module("--env=CartPole-v1", *args, hide_ray=True)
    assert result.returncode == exits.USER_ERROR
    assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr[-2000:]


def test_stopping_a_torchrun_learner_interrupts_its_ranks_and_it_exits_cleanly(tmp_path):
    """The learner's Ray actor body, run here without Ray, on torchrun with a stand-in for seed_rl.train."""
    from seed_rl.launch import learners
    from seed_rl.launch.ray_processes import LearnerProcess

    learner = LearnerProcess({}, str(ROOT / "tests"), "learner")
    argv = [*learners.learner_module_argv(2)[:-1], "torchrun_probe", str(tmp_path)]
    result = []
    runner = threading.Thread(target=lambda: result.append(learner.run(argv)))
    runner.start()
    try:
        _wait_for(lambda: len(list(tmp_path.glob("rank-*"))) == 2, None, "both ranks to start", 120)
        assert sorted(p.read_text() for p in tmp_path.glob("rank-*")) == ["2", "2"]
        learner.stop()
        runner.join(timeout=60)
    finally:
        if runner.is_alive():
            os.kill(learner.child_pid(), signal.SIGKILL)
            runner.join()
    assert sorted(p.name for p in tmp_path.glob("stopped-*")) == ["stopped-0", "stopped-1"]
    returncode, reason = result[0]
    assert returncode == 0, reason
