"""Evaluating a trained policy (``python -m seed_rl.evaluate``): ``loading.py`` rebuilds the agent and its
environment from a checkpoint, ``play.py`` plays episodes as the learner's inference acts, ``video.py``
records the first one."""
