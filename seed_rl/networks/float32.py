"""Parts of a network kept in float32 when its torso runs under bfloat16 autocast."""

from __future__ import annotations

import contextlib

import torch


def float32_region(inputs: torch.Tensor) -> contextlib.AbstractContextManager:
    """Autocast off for what follows ``inputs``; callers cast ``inputs`` to float32 inside it.

    Under ``--precision=bf16`` (``seed_rl/core/precision.py``) only the torso,
    where nearly all the arithmetic is, runs in bfloat16. Kept in float32:

    - the output heads: bfloat16's 8-bit mantissa would round a Q-value of 20
      to a multiple of 0.125, coarser than the gaps between actions' values or
      between behaviour and target logits (V-trace's importance ratios);
    - the LSTM core: its cell state is carried over hundreds of steps, and
      the state the learner stores per environment stays float32.

    Both are small matmuls next to the torso's convolutions.
    """
    return torch.autocast(inputs.device.type, enabled=False)
