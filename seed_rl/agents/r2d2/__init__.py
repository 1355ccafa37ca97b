"""R2D2 agent components (Kapturowski et al. 2019, "Recurrent Experience Replay
in Distributed Reinforcement Learning"): value rescaling and n-step double-Q
targets."""
