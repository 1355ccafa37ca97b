"""Launchers that place the learner and actors on existing cluster engines (Ray)."""
