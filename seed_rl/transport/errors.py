"""The two ways a learner can turn an actor away, whichever transport carried it.

Every transport raises these on the actor's side and the learner's shared-memory
server raises them to pick its answer; gRPC keeps its status codes on the wire
and the actor maps them here (``seed_rl.acting.grpc_link``). A :class:`Refused`
actor process ends as a user error (``seed_rl.exits``), which no supervisor
restarts; on :class:`Unavailable` the actor waits and tries again.
"""

from __future__ import annotations


class Refused(RuntimeError):
    """This actor cannot work with the learner as configured (a wrong token, a certificate it does not trust,
    another environment, a malformed step); retrying cannot fix it."""

    @classmethod
    def by_learner(cls, actor_id: int | str, reason: str) -> "Refused":
        """The learner's own refusal of actor ``actor_id``, in its words."""
        return cls(f"learner refused actor {actor_id}: {reason}")


class Unavailable(RuntimeError):
    """The learner cannot serve now (not reachable yet, shutting down, full); retry later."""
