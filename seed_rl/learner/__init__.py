"""The learner: inference for every actor, per-environment state, unroll assembly, the training loop,
checkpoints and metrics."""
