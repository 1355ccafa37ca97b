"""R2D2's replay priority of a sequence, from its TD errors (Kapturowski et al. 2019, Sec. 2.3)."""

from __future__ import annotations

import numpy as np
import torch


def sequence_priority(abs_td_errors: np.ndarray | torch.Tensor, eta: float):
    """R2D2's priority of each sequence: ``eta * max_t |d_t| + (1 - eta) * mean_t |d_t|``.

    Kapturowski et al. 2019, Sec. 2.3 (``eta = 0.9``, Table 2, ``R2D2Config.priority_eta``). The reduction is
    over axis 0, the time axis of the time-major ``[T, B, ...]`` layout, so a
    ``[T, B]`` input gives ``[B]`` priorities (and a ``[T]`` input a scalar).
    ``abs`` is applied again, so signed TD errors are fine too.

    A pure function: returns a numpy array for numpy (or array-like) input and a
    detached tensor, on the input's device, for a torch tensor.
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    if isinstance(abs_td_errors, torch.Tensor):
        x = abs_td_errors.detach()
        if x.dim() == 0 or x.shape[0] == 0:
            raise ValueError(f"need a non-empty time axis 0, got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            x = x.double()
        x = x.abs()
        return eta * x.amax(dim=0) + (1.0 - eta) * x.mean(dim=0)
    x = np.asarray(abs_td_errors)
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(f"need a non-empty time axis 0, got shape {x.shape}")
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    x = np.abs(x)
    return eta * x.max(axis=0) + (1.0 - eta) * x.mean(axis=0)
