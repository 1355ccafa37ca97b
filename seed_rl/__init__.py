"""SEED RL re-implemented in PyTorch."""
