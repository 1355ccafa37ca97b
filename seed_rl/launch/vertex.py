"""Submits a seed_rl training run as a Vertex AI custom job: ``python -m seed_rl.launch.vertex [flags] -- <train flags>``.

The job has two worker pools:

- ``workerpool0``: one learner replica on ``--learner_machine_type`` with
  ``--accelerator_count`` × ``--accelerator_type`` GPUs, image ``--learner_image``;
- ``workerpool1``: ``--num_actors`` actor replicas on ``--actor_machine_type``
  (CPU), each running ``--actors_per_replica`` actor processes, image ``--actor_image``.

``--learners=N`` (default 1) runs N data-parallel learner ranks on the learner
replica under torchrun, one per GPU (see :mod:`seed_rl.launch.learners`). It is
its own flag rather than derived from ``--accelerator_count``, so that a job
keeps today's single learner unless it asks for ranks (a larger GPU count alone
changes nothing), and so that a CPU learner (``--accelerator_count=0``) can run
N gloo ranks. N above a non-zero ``--accelerator_count`` is refused.

Every replica runs ``python3 -m seed_rl.launch.vertex_task``, which reads
``CLUSTER_SPEC`` to become the learner or an actor. The train flags after ``--``
go to the learner and, where an actor knows them, to the actors.

Credentials: at submission a fresh self-signed certificate (for the name
``seed-rl-learner``) and a random token are written under
``<output_dir>/credentials/`` in Cloud Storage; replicas read them through
Vertex AI's Cloud Storage FUSE mount at ``/gcs/<bucket>/...``. The learner
writes summaries and checkpoints to ``<output_dir>/train`` the same way.
``--dry_run`` prints the job and submits nothing.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from absl import app, flags

from seed_rl import exits
from seed_rl.launch import credentials, learners, vertex_task

# Defaults follow SEED RL's gcp/ scripts: n1-standard-4 actor machines ("standard"
# workers); the learner is a GPU machine (SEED used a P100, now deprecated on Vertex
# AI, so a T4 on an n1-standard-8 here).
DEFAULT_LEARNER_MACHINE = "n1-standard-8"
DEFAULT_ACCELERATOR = "NVIDIA_TESLA_T4"
DEFAULT_ACTOR_MACHINE = "n1-standard-4"
ENTRY_POINT = ["python3", "-m", "seed_rl.launch.vertex_task"]
GCS_MOUNT = "/gcs"


class SpecError(ValueError):
    """A user error in the job flags."""


@dataclass(frozen=True)
class VertexJob:
    """Everything a seed_rl Vertex AI custom job is made of."""

    display_name: str
    learner_image: str
    actor_image: str
    output_dir: str  # gs://bucket/path
    num_actors: int
    train_flags: tuple[str, ...] = ()
    actors_per_replica: int = 1
    learner_machine_type: str = DEFAULT_LEARNER_MACHINE
    accelerator_type: str = DEFAULT_ACCELERATOR
    accelerator_count: int = 1
    learners: int = 1
    learner_max_restarts: int = 0
    actor_machine_type: str = DEFAULT_ACTOR_MACHINE
    boot_disk_size_gb: int = 100
    service_account: str | None = None
    insecure: bool = False
    environment: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


def gcs_mount_path(uri: str) -> str:
    """``gs://bucket/a/b`` -> ``/gcs/bucket/a/b``, where Vertex AI replicas see it."""
    match = re.fullmatch(r"gs://([a-z0-9][a-z0-9._-]{1,220}[a-z0-9])(/.*)?", uri.rstrip("/"))
    if not match:
        raise SpecError(f"--output_dir must be a Cloud Storage URI gs://BUCKET/PATH, got {uri!r}")
    return GCS_MOUNT + "/" + match.group(1) + (match.group(2) or "")


def credentials_uri(job: VertexJob) -> str:
    return job.output_dir.rstrip("/") + "/credentials"


def _check(job: VertexJob) -> None:
    if job.num_actors < 1:
        raise SpecError(f"--num_actors must be at least 1, got {job.num_actors}")
    if job.actors_per_replica < 1:
        raise SpecError(f"--actors_per_replica must be at least 1, got {job.actors_per_replica}")
    if job.accelerator_count < 0:
        raise SpecError(f"--accelerator_count must be 0 or more, got {job.accelerator_count}")
    try:
        learners.check_learners(job.learners, job.learner_max_restarts)
    except learners.LearnersError as e:
        raise SpecError(str(e)) from None
    if job.accelerator_count and job.learners > job.accelerator_count:
        raise SpecError(
            f"--learners={job.learners} runs one rank per GPU, but --accelerator_count={job.accelerator_count}: "
            f"give --accelerator_count={job.learners} or fewer --learners"
        )
    if not job.learner_image or not job.actor_image:
        raise SpecError("give the container image with --image (or --learner_image and --actor_image)")
    for token in job.train_flags:
        name = token[2:].split("=", 1)[0] if token.startswith("--") else None
        if name in ("num_actors", "actors_per_replica", "insecure", "learners", "learner_max_restarts"):
            raise SpecError(f"--{name} is a flag of seed_rl.launch.vertex itself: put it before the --")
    try:
        vertex_task.split_train_flags(job.train_flags)  # what the task refuses, refused before submitting
    except vertex_task.TaskError as e:
        raise SpecError(f"train flags after --: {e}") from None
    gcs_mount_path(job.output_dir)


def _container(image: str, task_args: list[str], job: VertexJob) -> dict:
    env = {"PYTHONUNBUFFERED": "1", **job.environment}
    return {
        "image_uri": image,
        "command": list(ENTRY_POINT),
        "args": task_args,
        "env": [{"name": name, "value": value} for name, value in sorted(env.items())],
    }


def build_custom_job(job: VertexJob) -> dict:
    """The CustomJob resource as a dict with the API's field names (``google.cloud.aiplatform_v1.CustomJob``)."""
    _check(job)
    train_flags = list(job.train_flags)
    if not any(token.split("=", 1)[0] == "--logdir" for token in train_flags):
        train_flags.append(f"--logdir={gcs_mount_path(job.output_dir)}/train")
    if job.insecure:
        security = ["--insecure"]
    else:
        security = [f"--credentials_dir={gcs_mount_path(credentials_uri(job))}",
                    f"--tls_server_name={credentials.DEFAULT_SERVER_NAME}"]
    ranks = [f"--learners={job.learners}", f"--learner_max_restarts={job.learner_max_restarts}"] if job.learners > 1 else []
    task_args = [*security, f"--actors_per_replica={job.actors_per_replica}", *ranks, "--", *train_flags]
    learner_machine = {"machine_type": job.learner_machine_type}
    if job.accelerator_count:
        learner_machine.update(accelerator_type=job.accelerator_type, accelerator_count=job.accelerator_count)
    disk = {"boot_disk_type": "pd-ssd", "boot_disk_size_gb": job.boot_disk_size_gb}
    job_spec: dict = {
        "worker_pool_specs": [
            {   # workerpool0: the learner
                "machine_spec": learner_machine,
                "replica_count": 1,
                "disk_spec": disk,
                "container_spec": _container(job.learner_image, task_args, job),
            },
            {   # workerpool1: the actors
                "machine_spec": {"machine_type": job.actor_machine_type},
                "replica_count": job.num_actors,
                "disk_spec": disk,
                "container_spec": _container(job.actor_image, task_args, job),
            },
        ],
        "base_output_directory": {"output_uri_prefix": job.output_dir},
    }
    if job.service_account:
        job_spec["service_account"] = job.service_account
    spec = {"display_name": job.display_name, "job_spec": job_spec}
    if job.labels:
        spec["labels"] = dict(job.labels)
    return spec


def to_message(spec: dict):
    """The spec as a real ``google.cloud.aiplatform_v1.CustomJob``; an unknown field or enum value raises."""
    try:
        from google.cloud import aiplatform_v1
    except ImportError:
        raise SpecError("Vertex AI needs google-cloud-aiplatform: pip install 'seed_rl[gcp]'") from None
    try:
        return aiplatform_v1.CustomJob(spec)
    except KeyError as e:  # proto-plus raises KeyError for an unknown enum name
        names = [t.name for t in aiplatform_v1.AcceleratorType if t.value]
        raise SpecError(f"unknown accelerator type {e.args[0]!r}; Vertex AI knows {', '.join(names)}") from None


def upload_credentials(job: VertexJob, project: str) -> str:
    """Generates this job's certificate, key and token and writes them to ``<output_dir>/credentials/``."""
    from google.cloud import storage

    uri = credentials_uri(job)
    bucket_name, _, prefix = uri[len("gs://"):].partition("/")
    bucket = storage.Client(project=project).bucket(bucket_name)
    with tempfile.TemporaryDirectory() as local:
        files = credentials.generate_credentials(local)
        for path in (files.cert, files.key, files.token):
            bucket.blob(f"{prefix}/{Path(path).name}").upload_from_filename(path)
    return uri


def submit(spec: dict, job: VertexJob, project: str, region: str) -> str:
    """Uploads fresh credentials and creates the custom job; returns its resource name."""
    from google.cloud import aiplatform_v1

    message = to_message(spec)
    if not job.insecure:
        print(f"credentials written to {upload_credentials(job, project)}", file=sys.stderr)
    client = aiplatform_v1.JobServiceClient(client_options={"api_endpoint": f"{region}-aiplatform.googleapis.com"})
    created = client.create_custom_job(parent=f"projects/{project}/locations/{region}", custom_job=message)
    return created.name


FLAGS = flags.FLAGS
flags.DEFINE_string("project", None, "Google Cloud project (required unless --dry_run)")
flags.DEFINE_string("region", "us-central1", "Vertex AI region")
flags.DEFINE_string("image", None, "container image for every replica, e.g. us-central1-docker.pkg.dev/P/seed-rl/learner:TAG")
flags.DEFINE_string("learner_image", None, "learner image; default --image")
flags.DEFINE_string("actor_image", None, "actor image (a CPU image without torch is enough); default --learner_image")
flags.DEFINE_string("output_dir", None, "gs://BUCKET/PATH for credentials, summaries and checkpoints")
flags.DEFINE_string("job_name", None, "display name; default seed-rl-<env>-<time>")
flags.DEFINE_integer("num_actors", 4, "actor replicas (CPU machines)")
flags.DEFINE_integer("actors_per_replica", 1, "actor processes per actor replica (SEED RL ran 8-20 per 4-core machine)")
flags.DEFINE_string("learner_machine_type", DEFAULT_LEARNER_MACHINE, "learner machine type")
flags.DEFINE_string("accelerator_type", DEFAULT_ACCELERATOR, "learner GPU type (Vertex AI AcceleratorType name)")
flags.DEFINE_integer("accelerator_count", 1, "learner GPUs; 0 for a CPU learner")
flags.DEFINE_integer("learners", 1, "data-parallel learner ranks on the learner replica (torchrun), one per GPU")
flags.DEFINE_integer("learner_max_restarts", 0, "with --learners > 1: how often torchrun restarts all ranks after one dies")
flags.DEFINE_string("actor_machine_type", DEFAULT_ACTOR_MACHINE, "actor machine type")
flags.DEFINE_integer("boot_disk_size_gb", 100, "boot disk of every replica")
flags.DEFINE_string("service_account", None, "service account the replicas run as; needs read/write on --output_dir")
flags.DEFINE_bool("insecure", False, "no TLS and no token between actors and learner (not recommended)")
flags.DEFINE_bool("dry_run", False, "print the job as JSON and submit nothing")


def _env_name(train_flags: Sequence[str]) -> str:
    for token in train_flags:
        if token.startswith("--env="):
            return token.split("=", 1)[1]
    return "atari:Pong"


def job_from_flags(train_flags: Sequence[str]) -> VertexJob:
    learner_image = FLAGS.learner_image or FLAGS.image
    slug = re.sub(r"[^a-z0-9]+", "-", _env_name(train_flags).lower()).strip("-")
    return VertexJob(
        display_name=FLAGS.job_name or f"seed-rl-{slug}-{time.strftime('%Y%m%d-%H%M%S')}",
        learner_image=learner_image,
        actor_image=FLAGS.actor_image or learner_image,
        output_dir=FLAGS.output_dir or "",
        num_actors=FLAGS.num_actors,
        train_flags=tuple(train_flags),
        actors_per_replica=FLAGS.actors_per_replica,
        learner_machine_type=FLAGS.learner_machine_type,
        accelerator_type=FLAGS.accelerator_type,
        accelerator_count=FLAGS.accelerator_count,
        learners=FLAGS.learners,
        learner_max_restarts=FLAGS.learner_max_restarts,
        actor_machine_type=FLAGS.actor_machine_type,
        boot_disk_size_gb=FLAGS.boot_disk_size_gb,
        service_account=FLAGS.service_account,
        insecure=FLAGS.insecure,
        labels={"seed_rl": "train"},
    )


def main(argv: list[str]) -> None:
    train_flags = argv[1:]
    try:
        job = job_from_flags(train_flags)
        spec = build_custom_job(job)
        to_message(spec)  # the real message: catches a wrong field or accelerator before submitting
        if FLAGS.dry_run:
            print(json.dumps(spec, indent=2))
            if not job.insecure:
                print(f"(not submitted; a submission writes fresh credentials to {credentials_uri(job)}/)", file=sys.stderr)
            return
        if not FLAGS.project:
            raise SpecError("give --project (or --dry_run to only print the job)")
        name = submit(spec, job, FLAGS.project, FLAGS.region)
    except SpecError as e:
        exits.fail(e)
    print(f"submitted {name}")
    print(f"follow it: gcloud ai custom-jobs stream-logs {name}")


if __name__ == "__main__":
    app.run(main, flags_parser=exits.parse_flags)
