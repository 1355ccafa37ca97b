"""gcp/train_*.sh in DRY_RUN mode with a fake `gcloud` on PATH: the commands they would run and the job they print."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from seed_rl.launch import vertex
from train_helpers import ROOT

# script: (env flag, actor replicas, actors per replica, Dockerfile targets = image names)
SCRIPTS = {
    "train_atari_pong.sh": ("--env=atari:Pong", 32, 4, ("actor", "learner")),
    "train_football_11_vs_11_hard_stochastic.sh": ("--env=football:11_vs_11_hard_stochastic", 25, 8,
                                                   ("actor-football", "learner-football")),
    "train_dmlab_rooms_watermaze.sh": ("--env=dmlab:rooms_watermaze", 50, 8, ("actor", "learner")),
}

FAKE_GCLOUD = """#!/usr/bin/env bash
echo "$*" >> "$FAKE_GCLOUD_LOG"
if [ "$*" = "config get-value project" ]; then echo fake-project; fi
"""


@pytest.fixture
def fake_gcloud(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(FAKE_GCLOUD)
    (bin_dir / "gcloud").chmod(0o755)
    log = tmp_path / "gcloud.log"
    env = {k: v for k, v in os.environ.items() if k not in ("PROJECT", "BUCKET", "TAG", "NUM_ACTORS")}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", FAKE_GCLOUD_LOG=str(log), PYTHON=sys.executable, DRY_RUN="1", TAG="t1")
    return env, log


def test_scripts_parse():
    for path in sorted((ROOT / "gcp").glob("*.sh")):
        subprocess.run(["bash", "-n", str(path)], check=True)
    if shutil.which("shellcheck"):
        result = subprocess.run(["shellcheck", "-x", *map(str, sorted((ROOT / "gcp").glob("*.sh")))],
                                cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_dry_run_builds_on_cloud_build_and_prints_a_valid_job(script, fake_gcloud):
    env, log = fake_gcloud
    env_flag, replicas, per_replica, (actor_target, learner_target) = SCRIPTS[script]
    result = subprocess.run(["bash", str(ROOT / "gcp" / script), "--seed=7"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    # gcloud was asked only for the project; everything that changes something was printed instead.
    assert log.read_text().splitlines() == ["config get-value project"]
    registry = "us-central1-docker.pkg.dev/fake-project/seed-rl"
    assert (f"+ gcloud builds submit {ROOT} --project=fake-project --region=us-central1 "
            f"--config={ROOT}/gcp/cloudbuild.yaml "
            f"--substitutions=_ACTOR_IMAGE={registry}/{actor_target}:t1,_LEARNER_IMAGE={registry}/{learner_target}:t1,"
            f"_ACTOR_TARGET={actor_target},_LEARNER_TARGET={learner_target}") in result.stderr
    message = vertex.to_message(json.loads(result.stdout))
    learner, actors = message.job_spec.worker_pool_specs
    # The job runs the images the build pushed (Football's carry gfootball, the others do not).
    assert learner.container_spec.image_uri == f"{registry}/{learner_target}:t1"
    assert actors.container_spec.image_uri == f"{registry}/{actor_target}:t1"
    assert learner.machine_spec.accelerator_count == 1 and actors.machine_spec.accelerator_count == 0
    assert actors.replica_count == replicas
    args = list(actors.container_spec.args)
    assert f"--actors_per_replica={per_replica}" in args
    assert env_flag in args and "--seed=7" in args[args.index("--"):]  # extra flags reach the train command
    assert message.job_spec.base_output_directory.output_uri_prefix.startswith("gs://fake-project-seed-rl/")


def test_no_project_is_one_clear_error(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "gcloud").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "PROJECT"}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", DRY_RUN="1")
    result = subprocess.run(["bash", str(ROOT / "gcp" / "train_atari_pong.sh")], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: no Google Cloud project: set PROJECT=... or run 'gcloud config set project ID'"


def test_unknown_image_variant_is_one_clear_error(fake_gcloud):
    env, _ = fake_gcloud
    env["IMAGE_VARIANT"] = "dmlab"
    source = f"source {ROOT}/gcp/common.sh; NUM_ACTORS=1; start_training x"
    result = subprocess.run(["bash", "-c", source], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: unknown IMAGE_VARIANT 'dmlab'; choose football or leave it unset"


def test_cloud_build_config_uses_the_substitutions_common_sh_passes():
    config = (ROOT / "gcp" / "cloudbuild.yaml").read_text()
    common = (ROOT / "gcp" / "common.sh").read_text()
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    for name in ("_ACTOR_IMAGE", "_LEARNER_IMAGE", "_ACTOR_TARGET", "_LEARNER_TARGET"):
        assert "${" + name + "}" in config and f"{name}=" in common
    # Without substitutions for the targets, Cloud Build builds the Atari images.
    assert re.search(r"^substitutions:\n  _ACTOR_TARGET: actor\n  _LEARNER_TARGET: learner\n", config, re.M)
    for *_, targets in SCRIPTS.values():
        for target in targets:
            assert re.search(rf"^FROM \S+ AS {target}$", dockerfile, re.M), target
