"""Vertex AI: CLUSTER_SPEC parsing, the replica entry point, and the CustomJob spec as the real API message."""

from __future__ import annotations

import copy
import json
import os
import shlex
import subprocess
import sys

import pytest
from google.cloud import aiplatform_v1

from seed_rl import exits
from seed_rl.launch import vertex, vertex_task
from seed_rl.launch.cluster_spec import ClusterSpecError, Replica, parse_cluster_spec
from train_helpers import ROOT

LEARNER_HOST = "cmle-training-workerpool0-ab-0"


def documented_cluster_spec(task_type: str, index: int, actors: int = 2, job: dict | None = None) -> str:
    """CLUSTER_SPEC as Vertex AI's distributed-training page documents it."""
    return json.dumps({
        "cluster": {
            "workerpool0": [f"{LEARNER_HOST}:2222"],
            "workerpool1": [f"cmle-training-workerpool1-ab-{i}:2222" for i in range(actors)],
        },
        "environment": "cloud",
        "task": {"type": task_type, "index": index, "trial": ""},
        "job": job or {"worker_pool_specs": [{"machine_spec": {"machine_type": "n1-standard-8"}, "replica_count": 1}]},
    })


# --- CLUSTER_SPEC ---------------------------------------------------------------------------


def test_cluster_spec_learner_replica():
    assert parse_cluster_spec(documented_cluster_spec("workerpool0", 0, actors=3)) == Replica(
        role="learner", index=0, learner_host=LEARNER_HOST, learner_port=2222, num_actor_replicas=3
    )


def test_cluster_spec_actor_replica():
    replica = parse_cluster_spec(documented_cluster_spec("workerpool1", 1, actors=2))
    assert replica == Replica(role="actor", index=1, learner_host=LEARNER_HOST, learner_port=2222, num_actor_replicas=2)


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "CLUSTER_SPEC is not set"),
        ("", "CLUSTER_SPEC is not set"),
        ("{not json", "not valid JSON"),
        ('{"cluster": {}}', "needs a 'cluster' object and a 'task' object"),
        ('{"cluster": {"workerpool0": ["h:1"], "workerpool2": ["r:1"]}, "task": {"type": "workerpool0", "index": 0}}',
         "worker pools ['workerpool2']"),
        ('{"cluster": {"workerpool0": ["a:1", "b:1"]}, "task": {"type": "workerpool0", "index": 0}}',
         "exactly one replica"),
        ('{"cluster": {"workerpool0": ["nohostport"]}, "task": {"type": "workerpool0", "index": 0}}',
         "should be 'host:port'"),
        ('{"cluster": {"workerpool0": ["h:1"], "workerpool1": ["a:1"]}, "task": {"type": "workerpool1", "index": 1}}',
         "task.index 1 is not a replica of workerpool1, which has 1"),
        ('{"cluster": {"workerpool0": ["h:1"]}, "task": {"type": "chief", "index": 0}}', "task.type should be"),
    ],
)
def test_cluster_spec_errors_name_the_problem(text, message):
    with pytest.raises(ClusterSpecError, match=message.replace("[", r"\[").replace("(", r"\(")):
        parse_cluster_spec(text)


# --- the replica entry point -----------------------------------------------------------------


def run_task(*args: str, cluster_spec: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CLUSTER_SPEC"}
    if cluster_spec is not None:
        env["CLUSTER_SPEC"] = cluster_spec
    return subprocess.run(
        [sys.executable, "-m", "seed_rl.launch.vertex_task", *args], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=120,
    )


TRAIN_FLAGS = ["--env=atari:Pong", "--envs_per_actor=16", "--agent=r2d2", "--learning_rate=1e-4",
               "--logdir=/gcs/b/job/train", "--nofull_action_space"]


def test_learner_replica_runs_the_learner_on_all_interfaces_with_tls_and_token():
    result = run_task("--credentials_dir=/gcs/b/job/credentials", "--actors_per_replica=4", "--dry_run", "--",
                      *TRAIN_FLAGS, cluster_spec=documented_cluster_spec("workerpool0", 0, actors=3))
    assert result.returncode == 0, result.stderr
    [command] = [shlex.split(line) for line in result.stdout.splitlines()]
    assert command[1:5] == ["-m", "seed_rl.train", "--role=learner", "--learner_address=0.0.0.0:2222"]
    assert "--num_actors=12" in command  # 3 replicas x 4 processes
    assert {"--tls_cert_file=/gcs/b/job/credentials/learner.crt", "--tls_key_file=/gcs/b/job/credentials/learner.key",
            "--auth_token_file=/gcs/b/job/credentials/token"} <= set(command)
    assert command[-len(TRAIN_FLAGS):] == TRAIN_FLAGS


def test_actor_replica_runs_its_actors_with_the_flags_an_actor_knows():
    result = run_task("--credentials_dir=/gcs/b/job/credentials", "--actors_per_replica=2", "--dry_run", "--",
                      *TRAIN_FLAGS, cluster_spec=documented_cluster_spec("workerpool1", 1, actors=3))
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line) for line in result.stdout.splitlines()]
    assert len(commands) == 2
    for j, command in enumerate(commands):
        assert command[1:3] == ["-m", "seed_rl.actor"]
        assert f"--learner_address={LEARNER_HOST}:2222" in command
        assert f"--actor_id={2 + j}" in command  # replica 1 of 2 processes each: ids 2 and 3
        assert {"--tls_ca_file=/gcs/b/job/credentials/learner.crt", "--tls_server_name=seed-rl-learner",
                "--auth_token_file=/gcs/b/job/credentials/token"} <= set(command)
        # environment flags go to actors, learner-only flags do not
        assert {"--env=atari:Pong", "--envs_per_actor=16", "--nofull_action_space"} <= set(command)
        assert not [t for t in command if t.startswith(("--agent", "--learning_rate", "--logdir", "--tls_key"))]


def test_replica_entry_point_errors_are_one_line():
    missing = run_task("--insecure", cluster_spec=None)
    assert missing.returncode == exits.USER_ERROR
    assert missing.stderr.strip().splitlines()[-1].startswith("error: CLUSTER_SPEC is not set")
    no_credentials = run_task("--", "--env=CartPole-v1", cluster_spec=documented_cluster_spec("workerpool0", 0))
    assert no_credentials.returncode == exits.USER_ERROR and "--credentials_dir=DIR" in no_credentials.stderr
    reserved = run_task("--insecure", "--", "--learner_address=1.2.3.4:1", cluster_spec=documented_cluster_spec("workerpool0", 0))
    assert reserved.returncode == exits.USER_ERROR and "--learner_address is set by the launcher: seed_rl.launch.vertex_task" in reserved.stderr
    for result in (missing, no_credentials, reserved):
        assert "Traceback" not in result.stderr


def test_actors_get_the_shared_flags_and_negated_booleans():
    flags = ["--env=x", "--seed=3", "--nofull_action_space", "--agent=impala", "--nouse_lstm", "--full_action_space"]
    learner, actor = vertex_task.split_train_flags(flags)
    assert actor == ["--env=x", "--seed=3", "--nofull_action_space", "--full_action_space"]
    assert learner == flags
    with pytest.raises(vertex_task.TaskError, match="--name=value"):
        vertex_task.split_train_flags(["--env", "x"])


# --- the CustomJob spec ----------------------------------------------------------------------


def pong_job(**overrides) -> vertex.VertexJob:
    settings = dict(
        display_name="seed-rl-pong", learner_image="us-docker.pkg.dev/p/seed-rl/learner:1",
        actor_image="us-docker.pkg.dev/p/seed-rl/actor:1", output_dir="gs://seed-bucket/runs/pong",
        num_actors=3, actors_per_replica=4, train_flags=("--env=atari:Pong", "--envs_per_actor=16"),
    )
    settings.update(overrides)
    return vertex.VertexJob(**settings)


def test_spec_is_a_valid_custom_job_message():
    message = vertex.to_message(vertex.build_custom_job(pong_job()))
    assert isinstance(message, aiplatform_v1.CustomJob)
    learner, actors = message.job_spec.worker_pool_specs
    assert learner.replica_count == 1
    assert learner.machine_spec.machine_type == "n1-standard-8"
    assert learner.machine_spec.accelerator_type == aiplatform_v1.AcceleratorType.NVIDIA_TESLA_T4
    assert learner.machine_spec.accelerator_count == 1
    assert learner.container_spec.image_uri == "us-docker.pkg.dev/p/seed-rl/learner:1"
    assert actors.replica_count == 3
    assert actors.machine_spec.machine_type == "n1-standard-4"
    assert actors.machine_spec.accelerator_count == 0
    assert actors.container_spec.image_uri == "us-docker.pkg.dev/p/seed-rl/actor:1"
    for pool in (learner, actors):
        assert list(pool.container_spec.command) == ["python3", "-m", "seed_rl.launch.vertex_task"]
        assert list(pool.container_spec.args) == [
            "--credentials_dir=/gcs/seed-bucket/runs/pong/credentials", "--tls_server_name=seed-rl-learner",
            "--actors_per_replica=4", "--", "--env=atari:Pong", "--envs_per_actor=16",
            "--logdir=/gcs/seed-bucket/runs/pong/train",
        ]
        assert {e.name: e.value for e in pool.container_spec.env}["PYTHONUNBUFFERED"] == "1"
    assert message.job_spec.base_output_directory.output_uri_prefix == "gs://seed-bucket/runs/pong"


def test_spec_round_trips_through_the_rest_json_parser():
    spec = vertex.build_custom_job(pong_job(service_account="trainer@p.iam.gserviceaccount.com"))
    parsed = aiplatform_v1.CustomJob.from_json(json.dumps(spec))
    assert parsed == vertex.to_message(spec)
    assert parsed.job_spec.service_account == "trainer@p.iam.gserviceaccount.com"


def test_a_wrong_field_name_or_accelerator_fails():
    spec = vertex.build_custom_job(pong_job())
    broken = copy.deepcopy(spec)
    broken["job_spec"]["worker_pool_specs"][1]["replica_cout"] = broken["job_spec"]["worker_pool_specs"][1].pop("replica_count")
    with pytest.raises(ValueError, match="replica_cout"):
        vertex.to_message(broken)
    with pytest.raises(vertex.SpecError, match="unknown accelerator type 'NVIDIA_TESLA_X1'"):
        vertex.to_message(vertex.build_custom_job(pong_job(accelerator_type="NVIDIA_TESLA_X1")))


def test_cpu_learner_and_insecure_job():
    spec = vertex.build_custom_job(pong_job(accelerator_count=0, insecure=True))
    learner = vertex.to_message(spec).job_spec.worker_pool_specs[0]
    assert learner.machine_spec.accelerator_count == 0
    assert learner.container_spec.args[0] == "--insecure"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(output_dir="/tmp/out"), "gs://BUCKET/PATH"),
        (dict(num_actors=0), "--num_actors must be at least 1"),
        (dict(train_flags=("--num_actors=8",)), "put it before the --"),
        (dict(train_flags=("--role=local",)), "--role is set by the launcher: seed_rl.launch.vertex_task"),
        (dict(train_flags=("env=atari:Pong",)), "--name=value"),
        (dict(learners=0), "--learners=0: need at least one learner rank"),
        (dict(learners=3, accelerator_count=2), "--learners=3 runs one rank per GPU, but --accelerator_count=2"),
        (dict(learner_max_restarts=1), "--learner_max_restarts=1 needs --learners > 1"),
        (dict(train_flags=("--learners=2",)), "put it before the --"),
    ],
)
def test_bad_job_flags_are_refused(overrides, message):
    with pytest.raises(vertex.SpecError, match=message.replace("-", r"\-")):
        vertex.build_custom_job(pong_job(**overrides))


def _replica_commands(spec: dict) -> tuple[list[str], list[list[str]]]:
    """(the learner's command, every actor's command), each replica fed its CLUSTER_SPEC as Vertex AI would."""
    job_spec = spec["job_spec"]
    learner_pool, actor_pool = job_spec["worker_pool_specs"]
    learner, actors = None, []
    for task_type, pool in (("workerpool0", learner_pool), ("workerpool1", actor_pool)):
        for index in range(pool["replica_count"]):
            replica = parse_cluster_spec(documented_cluster_spec(task_type, index, actor_pool["replica_count"], job_spec))
            options, train_flags, _ = vertex_task.parse_args(pool["container_spec"]["args"])
            if replica.role == "learner":
                learner = vertex_task.learner_command(replica, options, train_flags)
            else:
                actors += vertex_task.actor_commands(replica, options, train_flags)
    return learner, actors


def test_every_replica_of_the_generated_job_gets_a_distinct_role():
    """Feeds each replica of the generated job its CLUSTER_SPEC, as Vertex AI would, and checks the result."""
    learner, actors = _replica_commands(vertex.build_custom_job(pong_job()))
    assert "--num_actors=12" in learner
    actor_ids = [int(t.split("=")[1]) for command in actors for t in command if t.startswith("--actor_id=")]
    assert sorted(actor_ids) == list(range(12))


def test_vertex_cli_dry_run_prints_the_job_and_refuses_bad_input():
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "seed_rl.launch.vertex", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    ok = cli("--dry_run", "--image=img:1", "--output_dir=gs://seed-bucket/x", "--num_actors=2", "--", "--env=CartPole-v1")
    assert ok.returncode == 0, ok.stderr
    spec = json.loads(ok.stdout)
    assert vertex.to_message(spec).job_spec.worker_pool_specs[1].replica_count == 2
    assert spec["display_name"].startswith("seed-rl-cartpole-v1-")
    no_project = cli("--image=img:1", "--output_dir=gs://seed-bucket/x")
    assert no_project.returncode != 0 and "error: give --project" in no_project.stderr
    assert "Traceback" not in no_project.stderr


# --- several learner ranks (--learners=N) ----------------------------------------------------


def test_one_learner_keeps_todays_commands():
    learner, actors = _replica_commands(vertex.build_custom_job(pong_job(insecure=True)))
    assert learner == [
        sys.executable, "-m", "seed_rl.train", "--role=learner", "--learner_address=0.0.0.0:2222", "--num_actors=12",
        "--insecure", "--env=atari:Pong", "--envs_per_actor=16", "--logdir=/gcs/seed-bucket/runs/pong/train",
    ]
    assert {t for a in actors for t in a if t.startswith("--learner_address=")} == {f"--learner_address={LEARNER_HOST}:2222"}


def test_two_learner_ranks_run_under_torchrun_and_every_actor_gets_both_addresses():
    spec = vertex.build_custom_job(pong_job(learners=2, learner_max_restarts=1, accelerator_count=2, insecure=True))
    learner_pool = vertex.to_message(spec).job_spec.worker_pool_specs[0]
    assert learner_pool.machine_spec.accelerator_count == 2
    assert list(learner_pool.container_spec.args[:4]) == [
        "--insecure", "--actors_per_replica=4", "--learners=2", "--learner_max_restarts=1",
    ]
    learner, actors = _replica_commands(spec)
    assert learner == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--max-restarts=1",
        "-m", "seed_rl.train", "--role=learner", "--learner_address=0.0.0.0:2222", "--num_actors=12",
        "--insecure", "--env=atari:Pong", "--envs_per_actor=16", "--logdir=/gcs/seed-bucket/runs/pong/train",
    ]
    assert len(actors) == 12
    for command in actors:
        assert f"--learner_address={LEARNER_HOST}:2222,{LEARNER_HOST}:2223" in command


def test_cpu_learner_may_run_several_ranks():
    spec = vertex.build_custom_job(pong_job(learners=2, accelerator_count=0))
    assert "--learners=2" in spec["job_spec"]["worker_pool_specs"][0]["container_spec"]["args"]


def test_replica_entry_point_refuses_a_bad_learner_count_in_one_line():
    result = run_task("--insecure", "--learners=0", cluster_spec=documented_cluster_spec("workerpool0", 0))
    assert result.returncode == exits.USER_ERROR
    assert result.stderr.strip().splitlines() == [
        "error: --learners=0: need at least one learner rank; see python -m seed_rl.launch.vertex_task --help"
    ]
