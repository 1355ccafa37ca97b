"""RMSProp as TensorFlow 1 defines it, the optimizer of IMPALA's own code (scalable_agent).

It differs from ``torch.optim.RMSprop`` in two ways that change the size of
the steps: the running mean of squared gradients starts at 1 (torch: 0), and
epsilon sits inside the square root (torch: outside)::

    ms <- decay * ms + (1 - decay) * g^2        (ms starts at 1)
    p  <- p - lr * g / sqrt(ms + epsilon)

Starting at 1, ``ms`` keeps the first hundreds of steps small while it decays
towards the gradients' scale, where torch's RMSprop, starting at 0, makes its
first steps up to 10x larger than later ones.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class TFRMSprop(torch.optim.Optimizer):
    def __init__(self, params: Iterable, lr: float, decay: float = 0.9, epsilon: float = 1e-10):
        if lr <= 0 or not 0.0 <= decay < 1.0 or epsilon < 0:
            raise ValueError(f"bad RMSProp settings: lr={lr}, decay={decay}, epsilon={epsilon}")
        super().__init__(params, {"lr": lr, "decay": decay, "epsilon": epsilon})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["ms"] = torch.ones_like(p)
                ms = state["ms"]
                ms.mul_(group["decay"]).addcmul_(p.grad, p.grad, value=1.0 - group["decay"])
                p.addcdiv_(p.grad, (ms + group["epsilon"]).sqrt_(), value=-group["lr"])
        return loss
