"""The actor: steps environments and exchanges each step with the learner over a transport link."""
