"""Reads Vertex AI's ``CLUSTER_SPEC``: which replica this is and where the learner runs.

Vertex AI sets ``CLUSTER_SPEC`` on every replica of a custom job with several
worker pools (documented in "Distributed training", Vertex AI docs). It looks like::

    {"cluster": {"workerpool0": ["cmle-training-workerpool0-ab-0:2222"],
                 "workerpool1": ["cmle-training-workerpool1-ab-0:2222", ...]},
     "environment": "cloud",
     "task": {"type": "workerpool1", "index": 0, "trial": "..."},
     "job": {...the CustomJobSpec the job was created with...}}

seed_rl's jobs (``seed_rl.launch.vertex``) put the learner alone in
``workerpool0`` and the actors in ``workerpool1``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Mapping

ENV_VAR = "CLUSTER_SPEC"
LEARNER_POOL = "workerpool0"
ACTOR_POOL = "workerpool1"


class ClusterSpecError(ValueError):
    """CLUSTER_SPEC is missing or does not describe a seed_rl job."""


@dataclass(frozen=True)
class Replica:
    """This replica's place in the job."""

    role: str  # "learner" or "actor"
    index: int  # index within its worker pool
    learner_host: str
    learner_port: int  # the port Vertex AI lists for the learner replica
    num_actor_replicas: int


def _address(entry: Any, where: str) -> tuple[str, int]:
    if not isinstance(entry, str) or ":" not in entry:
        raise ClusterSpecError(f"{ENV_VAR}: {where} should be 'host:port', got {entry!r}")
    host, port = entry.rsplit(":", 1)
    if not host or not port.isdigit():
        raise ClusterSpecError(f"{ENV_VAR}: {where} should be 'host:port', got {entry!r}")
    return host, int(port)


def _pool(cluster: Mapping[str, Any], name: str) -> list:
    pool = cluster.get(name, [])
    if not isinstance(pool, list):
        raise ClusterSpecError(f"{ENV_VAR}: cluster.{name} should be a list of 'host:port', got {pool!r}")
    return pool


def parse_cluster_spec(text: str | None) -> Replica:
    """Parses the JSON text of ``CLUSTER_SPEC`` into this replica's role and the learner's address."""
    if text is None or not text.strip():
        raise ClusterSpecError(
            f"{ENV_VAR} is not set: seed_rl.launch.vertex_task runs on the replicas of a Vertex AI "
            "custom job, which sets it; on one machine use `python -m seed_rl.train` instead"
        )
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise ClusterSpecError(f"{ENV_VAR} is not valid JSON ({e}): {text[:200]!r}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("cluster"), dict) or not isinstance(spec.get("task"), dict):
        raise ClusterSpecError(f"{ENV_VAR} needs a 'cluster' object and a 'task' object, got {text[:200]!r}")
    cluster, task = spec["cluster"], spec["task"]
    extra = sorted(set(cluster) - {LEARNER_POOL, ACTOR_POOL})
    if extra:
        raise ClusterSpecError(
            f"{ENV_VAR} lists worker pools {extra}, which seed_rl does not use: a seed_rl job has the "
            f"learner in {LEARNER_POOL} and the actors in {ACTOR_POOL} (submit it with seed_rl.launch.vertex)"
        )
    learners, actors = _pool(cluster, LEARNER_POOL), _pool(cluster, ACTOR_POOL)
    if len(learners) != 1:
        raise ClusterSpecError(
            f"{ENV_VAR}: {LEARNER_POOL} must hold exactly one replica (the learner), got {len(learners)}; "
            "set its replica_count to 1"
        )
    host, port = _address(learners[0], f"cluster.{LEARNER_POOL}[0]")
    task_type, index = task.get("type"), task.get("index")
    if task_type not in (LEARNER_POOL, ACTOR_POOL):
        raise ClusterSpecError(
            f"{ENV_VAR}: task.type should be {LEARNER_POOL} (learner) or {ACTOR_POOL} (actor), got {task_type!r}"
        )
    pool = learners if task_type == LEARNER_POOL else actors
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(pool):
        raise ClusterSpecError(
            f"{ENV_VAR}: task.index {index!r} is not a replica of {task_type}, which has {len(pool)}"
        )
    role = "learner" if task_type == LEARNER_POOL else "actor"
    return Replica(role, index, host, port, num_actor_replicas=len(actors))


def replica_from_environment(environ: Mapping[str, str] = os.environ) -> Replica:
    """This replica, from the ``CLUSTER_SPEC`` environment variable."""
    return parse_cluster_spec(environ.get(ENV_VAR))
