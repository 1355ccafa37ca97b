"""What the images rely on: the actor image has no torch, and its requirements match pyproject.toml.

Building the images needs root, podman and a few minutes: docker/build_local.sh and
docker/check_local.sh do that (see docs/distributed.md, containers).
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


def _stages(dockerfile: str) -> dict[str, str]:
    """Each stage's name -> its text (from its FROM line to the next)."""
    parts = re.split(r"^(?=FROM )", dockerfile, flags=re.M)
    return {re.match(r"FROM \S+ AS (\S+)", part).group(1): part for part in parts if part.startswith("FROM ")}


def test_football_images_add_gfootball_without_its_build_dependencies():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    stages = _stages(dockerfile)
    order = list(stages)
    # Football stages come after the Atari targets, so building `actor` or `learner` (even with a
    # builder that does not skip unused stages) never compiles gfootball.
    assert order.index("learner") < min(order.index(s) for s in ("football-build", "actor-football", "learner-football"))
    assert stages["actor-football"].startswith("FROM actor AS")
    assert stages["learner-football"].startswith("FROM actor-football AS")
    # The wheel is built by tools/setup_football.sh in its own stage; the image gets only the wheel and
    # runtime libraries, never the -dev packages setup_football.sh installs to build it.
    assert "SEED_RL_FOOTBALL_WHEELS=" in stages["football-build"] and "setup_football.sh" in stages["football-build"]
    assert "COPY --from=football-build" in stages["actor-football"]
    assert not re.search(r"-dev\b|build-essential|cmake", stages["actor-football"] + stages["learner-football"])
    # Both learners install the same torch and TensorBoard.
    torch_arg = re.compile(r'^ARG TORCH=.*$|^RUN pip install "\$\{TORCH\}".*$', re.M)
    assert torch_arg.findall(stages["learner"]) == torch_arg.findall(stages["learner-football"])


def test_setup_football_names_a_missing_venv(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "SEED_RL_VENV": str(tmp_path / "missing")}
    result = subprocess.run(["bash", str(ROOT / "tools" / "setup_football.sh")], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: SEED_RL_VENV={tmp_path}/missing has no bin/python; "
                                     "create the venv first (python3 -m venv ...)")
