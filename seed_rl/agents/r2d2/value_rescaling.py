"""Invertible value-function rescaling used by R2D2.

References:
  * Pohlen et al. 2018, "Observe and Look Further: Achieving Consistent
    Performance on Atari", Sec. 3.2 (the transformed Bellman operator with
    ``h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps * x``) and Proposition A.2
    (its closed-form inverse).
  * Kapturowski et al. 2019, "Recurrent Experience Replay in Distributed
    Reinforcement Learning" (R2D2), Sec. 2, which uses ``h`` with
    ``eps = 1e-3`` in the n-step target
    ``h(sum_k r_{t+k} gamma^k + gamma^n h^{-1}(Q(s_{t+n}, a*)))``.

Numerics. Both functions are evaluated in algebraically equivalent forms that
contain no subtraction of nearly equal quantities, so they keep (close to)
full relative precision in float32 and float64 from tiny magnitudes up to
``|x| ~ 1e6`` and beyond:

* ``sign(x)(sqrt(|x| + 1) - 1) = x / (sqrt(|x| + 1) + 1)``.
* For ``h^{-1}``, write ``y = |x|`` and ``u = sqrt(|z| + 1)`` where ``z`` is
  the pre-image. Then ``eps u^2 + u - (1 + eps + y) = 0``, whose positive root
  is ``u = (sqrt(1 + 4 eps (1 + eps + y)) - 1) / (2 eps)`` (the paper's form)
  ``= 2 (1 + eps + y) / (1 + sqrt(1 + 4 eps (1 + eps + y)))`` (stable form,
  also valid for ``eps = 0``). Factoring the quadratic as
  ``(u - 1)(1 + eps (u + 1)) = y`` gives
  ``|z| = u^2 - 1 = (u - 1)(u + 1) = y (u + 1) / (1 + eps (u + 1))``,
  so ``h^{-1}(x) = x w / (1 + eps w)`` with ``w = u + 1``.

Both functions are differentiable everywhere (including at 0) and preserve the
input dtype and device.
"""

from __future__ import annotations

import torch

DEFAULT_EPS = 1e-3


def value_rescale(x: torch.Tensor, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """Value rescaling ``h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps * x``.

    Pohlen et al. 2018, Sec. 3.2; used with ``eps = 1e-3`` by R2D2
    (Kapturowski et al. 2019, Sec. 2). Computed as
    ``x / (sqrt(|x| + 1) + 1) + eps * x`` to avoid cancellation near 0.

    Args:
      x: tensor of (unscaled) values, any shape, floating dtype.
      eps: the linear term's coefficient (``>= 0``).

    Returns:
      ``h(x)``, same shape and dtype as ``x``.
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    return x / (torch.sqrt(torch.abs(x) + 1.0) + 1.0) + eps * x


def inverse_value_rescale(x: torch.Tensor, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """Exact inverse of :func:`value_rescale`.

    ``h^{-1}(x) = sign(x) * (((sqrt(1 + 4 eps (|x| + 1 + eps)) - 1) / (2 eps))^2 - 1)``
    (Pohlen et al. 2018, Proposition A.2; Kapturowski et al. 2019, Sec. 2).
    Evaluated in the cancellation-free form ``x * w / (1 + eps * w)`` with
    ``w = 1 + 2 (1 + eps + |x|) / (1 + sqrt(1 + 4 eps (1 + eps + |x|)))``
    (see the module docstring for the derivation); this form is also exact
    for ``eps = 0``, where it reduces to ``sign(x)((|x| + 1)^2 - 1)``.

    Args:
      x: tensor of rescaled values, any shape, floating dtype.
      eps: must match the ``eps`` used by :func:`value_rescale` (``>= 0``).

    Returns:
      ``h^{-1}(x)``, same shape and dtype as ``x``.
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    c = torch.abs(x) + (1.0 + eps)  # 1 + eps + |x|
    u = 2.0 * c / (1.0 + torch.sqrt(1.0 + (4.0 * eps) * c))  # sqrt(|h^{-1}(x)| + 1)
    w = u + 1.0
    return x * w / (1.0 + eps * w)
