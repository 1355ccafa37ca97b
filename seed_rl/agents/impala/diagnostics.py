"""Diagnostics of a trained IMPALA network: is its torso still looking at the observations?

ReLU units that are never positive get no gradient again: they are dead. A
torso whose features no longer change with the observation gives the same
value and policy in every state, and the agent cannot learn any more
(``tools/torso_health.py`` prints this for a run's newest checkpoint).
"""

from __future__ import annotations

import torch

from seed_rl.networks.torsos import scaled_pixels


@torch.no_grad()
def torso_health(agent, observations: torch.Tensor) -> dict[str, float]:
    """Over ``observations`` ([N, ...]): the share of live units and how much value and policy vary."""
    model = agent.model
    torso = model.torso
    report = {}
    if hasattr(torso, "convs"):  # the Nature CNN
        conv = torso.convs(scaled_pixels(observations)).flatten(1)
        report["conv outputs ever positive"] = float((conv > 0).any(0).float().mean())
        report["conv outputs positive (mean)"] = float((conv > 0).float().mean())
    features = torso(observations)
    report["torso features ever positive"] = float((features > 0).any(0).float().mean())
    report["torso features that vary between states"] = float((features.std(0) > 1e-6).float().mean())
    steps = observations.shape[0]
    logits, values, _ = model(observations.unsqueeze(1), torch.zeros(steps, 1, dtype=torch.bool),
                              model.initial_state(1))
    probs = torch.softmax(logits[:, 0], -1)
    report["value std between states"] = float(values.std())
    report["action probability std between states (mean over actions)"] = float(probs.std(0).mean())
    report["policy entropy (mean)"] = float(-(probs * probs.clamp_min(1e-12).log()).sum(-1).mean())
    return report
