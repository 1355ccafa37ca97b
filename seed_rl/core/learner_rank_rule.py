"""Which learner rank serves which actor, and on which port: the one rule the learner, its launchers and the actors share.

With N learner ranks, actor ``i`` is served by rank ``i % N``, and the rank
with local rank ``r`` on its machine listens on the given port plus ``r``.
Torch-free, so that actors (which never import torch) follow the same rule as
:class:`seed_rl.core.learner_ranks.LearnerRanks`.
"""

from __future__ import annotations


def rank_of_actor(actor_id: int, num_ranks: int) -> int:
    """The learner rank that serves actor ``actor_id``."""
    return actor_id % num_ranks


def actors_of_rank(rank: int, num_ranks: int, num_actors: int) -> list[int]:
    """The ids, among ``num_actors`` actors, that rank ``rank`` serves."""
    return [actor_id for actor_id in range(num_actors) if rank_of_actor(actor_id, num_ranks) == rank]


def rank_port(port: int, local_rank: int) -> int:
    """The port learner rank ``local_rank`` of a machine listens on, when the run was given ``port``."""
    return port + local_rank
