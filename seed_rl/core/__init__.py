"""The types every role shares: the step an actor sends, the unrolls the learner trains on, the
agent protocol and the dynamic batcher. Nothing here imports another seed_rl folder but ``envs``."""
