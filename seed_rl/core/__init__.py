"""The agent-independent core: transport, dynamic batching, per-environment state
and trajectory assembly, checkpoints and logging."""
