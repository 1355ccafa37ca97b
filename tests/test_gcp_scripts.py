"""gcp/train_*.sh in DRY_RUN mode with a fake `gcloud` on PATH: the commands they would run and the job they print."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from seed_rl.launch import vertex
from train_helpers import ROOT

SCRIPTS = {
    "train_atari_pong.sh": ("--env=atari:Pong", 32, 4),
    "train_football_11_vs_11_hard_stochastic.sh": ("--env=football:11_vs_11_hard_stochastic", 25, 8),
    "train_dmlab_rooms_watermaze.sh": ("--env=dmlab:rooms_watermaze", 50, 8),
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
    env_flag, replicas, per_replica = SCRIPTS[script]
    result = subprocess.run(["bash", str(ROOT / "gcp" / script), "--seed=7"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    # gcloud was asked only for the project; everything that changes something was printed instead.
    assert log.read_text().splitlines() == ["config get-value project"]
    registry = "us-central1-docker.pkg.dev/fake-project/seed-rl"
    assert (f"+ gcloud builds submit {ROOT} --project=fake-project --region=us-central1 "
            f"--config={ROOT}/gcp/cloudbuild.yaml "
            f"--substitutions=_ACTOR_IMAGE={registry}/actor:t1,_LEARNER_IMAGE={registry}/learner:t1") in result.stderr
    message = vertex.to_message(json.loads(result.stdout))
    learner, actors = message.job_spec.worker_pool_specs
    assert learner.container_spec.image_uri == f"{registry}/learner:t1"
    assert actors.container_spec.image_uri == f"{registry}/actor:t1"
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


def test_cloud_build_config_uses_the_substitutions_common_sh_passes():
    config = (ROOT / "gcp" / "cloudbuild.yaml").read_text()
    common = (ROOT / "gcp" / "common.sh").read_text()
    for name in ("_ACTOR_IMAGE", "_LEARNER_IMAGE"):
        assert "${" + name + "}" in config and f"{name}=" in common
    for target in ("actor", "learner"):
        assert f"--target={target}" in config
        assert f"AS {target}" in (ROOT / "docker" / "Dockerfile").read_text()
