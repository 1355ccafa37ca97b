"""The learner's intra-op thread count: what --torch_threads=0 picks for each kind of run."""

import torch

from seed_rl.learner.plan import learner_threads

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_a_cpu_learner_leaves_its_local_actors_their_cores():
    assert learner_threads(0, CPU, local_actors=2, cores=2) == 1
    assert learner_threads(0, CPU, local_actors=2, cores=16) == 14
    assert learner_threads(0, CPU, local_actors=40, cores=16) == 1


def test_remote_actors_a_gpu_or_a_given_count_keep_their_choice():
    assert learner_threads(0, CPU, local_actors=0, cores=16) == 0  # torch's default: every core
    assert learner_threads(0, CUDA, local_actors=2, cores=16) == 0
    assert learner_threads(3, CPU, local_actors=2, cores=2) == 3
    # An agent whose actors wait on the learner (R2D2) takes every core (of its rank's share).
    assert learner_threads(0, CPU, local_actors=2, cores=2, learner_bound=True) == 2
    assert learner_threads(0, CUDA, local_actors=2, cores=2, learner_bound=True) == 0


def test_only_large_frames_make_a_learner_bound_agent_take_every_core():
    from seed_rl.learner.plan import is_large_image

    assert is_large_image((84, 84, 4)) and is_large_image((4, 84, 84))  # Atari, either layout
    assert not is_large_image((10, 10, 4))  # MinAtar: its actors' cores stay theirs
    assert not is_large_image((4,)) and not is_large_image((8, 16))
