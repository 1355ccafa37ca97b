"""Agents (learner-side models, losses and training logic)."""
