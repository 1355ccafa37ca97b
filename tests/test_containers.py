"""What the images rely on: the actor image has no torch, and its requirements match pyproject.toml.

Building the images needs root, podman and a few minutes: docker/build_local.sh and
docker/check_local.sh do that (see the README's container section).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

from train_helpers import ROOT


def _requirements(path) -> list[str]:
    lines = (ROOT / path).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_actor_entry_points_never_import_torch():
    code = ("import sys, seed_rl.actor, seed_rl.launch.vertex_task, seed_rl.launch.cluster_spec; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorboard')); "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"the actor image has no torch, but these were imported: {result.stdout}{result.stderr}"


def test_image_requirements_are_the_ones_pyproject_declares():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = set(project["dependencies"]) | set(project["optional-dependencies"]["atari"])
    name = lambda spec: re.split(r"[<>=!~ ]", spec, 1)[0].lower()
    actor = _requirements("docker/actor-requirements.txt")
    learner = _requirements("docker/learner-requirements.txt")
    assert set(actor) <= declared, set(actor) - declared
    assert set(learner) <= declared, set(learner) - declared
    # Everything seed_rl and its Atari extra depend on is in one of the images; torch comes from the TORCH build arg.
    assert {name(d) for d in declared} == {name(r) for r in actor + learner} | {"torch"}
    assert re.search(r'ARG TORCH="torch==[0-9.]+"', (ROOT / "docker" / "Dockerfile").read_text())
