"""Launchers that start the learner and actors on existing engines (Vertex AI, Ray, containers)."""
