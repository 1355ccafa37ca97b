"""ResettingLSTM's fused stretches equal a step-by-step LSTMCell loop that zeroes the state at episode starts."""

from __future__ import annotations

import pytest
import torch

from seed_rl.networks.recurrent import ResettingLSTM


def reference(lstm: ResettingLSTM, inputs, done, state):
    """The definition: one cell step per time step, the carried state zeroed where ``done``."""
    h, c = state
    outputs = []
    for t in range(inputs.shape[0]):
        keep = (~done[t]).float().unsqueeze(-1)
        h, c = lstm.cell(inputs[t], (h * keep, c * keep))
        outputs.append(h)
    return torch.stack(outputs), (h, c)


@pytest.mark.parametrize("steps, starts", [(1, [(0, 1)]), (12, []), (12, [(0, 0), (5, 2), (5, 3), (11, 1)]),
                                           (7, [(t, 0) for t in range(7)])])
def test_outputs_states_and_gradients_equal_the_step_loop(steps, starts):
    torch.manual_seed(0)
    lstm = ResettingLSTM(6, 5)
    inputs = torch.randn(steps, 4, 6, requires_grad=True)
    done = torch.zeros(steps, 4, dtype=torch.bool)
    for t, b in starts:
        done[t, b] = True
    state = (torch.randn(4, 5), torch.randn(4, 5))
    fused_out, (fused_h, fused_c) = lstm(inputs, done, state)
    ref_out, (ref_h, ref_c) = reference(lstm, inputs, done, state)
    torch.testing.assert_close(fused_out, ref_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close((fused_h, fused_c), (ref_h, ref_c), rtol=1e-5, atol=1e-6)
    weights = list(lstm.parameters()) + [inputs]
    fused_grads = torch.autograd.grad((fused_out.square().sum() + fused_c.sum()), weights)
    ref_grads = torch.autograd.grad((ref_out.square().sum() + ref_c.sum()), weights)
    for fused, ref in zip(fused_grads, ref_grads):
        torch.testing.assert_close(fused, ref, rtol=1e-4, atol=1e-5)


def test_inference_mode_acting_step():
    lstm = ResettingLSTM(3, 2)
    with torch.inference_mode():
        out, (h, c) = lstm(torch.randn(1, 8, 3), torch.tensor([[True] * 4 + [False] * 4]),
                           (torch.ones(8, 2), torch.ones(8, 2)))
    assert out.shape == (1, 8, 2) and torch.equal(out[0], h)
