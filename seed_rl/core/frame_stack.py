"""Frame stacking on the learner, as SEED RL does it (``atari/networks.py``, ``stack_frames``).

Actors send one frame per step; the learner stacks each environment's last
``S`` frames along the first axis of a frame (channels for images, features
for vectors), oldest first. The ``S - 1`` frames before a step are carried
like a recurrent state. A step that starts an episode (``done``) stacks only
frames of its own episode: the first frame stands in for the ones before it,
as gymnasium's ``FrameStackObservation`` (``padding_type="reset"``) does on an
actor, so both give the same stacks.
"""

from __future__ import annotations

import torch


def stack_frames(
    previous: torch.Tensor, frames: torch.Tensor, done: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacks ``T`` steps of single frames of ``B`` environments.

    Args:
      previous: ``[B, S - 1, *frame]``, the frames before step 0 (oldest first).
      frames: ``[T, B, *frame]``, one frame per step.
      done: ``[T, B]`` bool, the frame starts an episode.

    Returns:
      ``(stacked, last)``: ``stacked`` is ``[T, B, S * frame[0], *frame[1:]]``;
      ``last`` is ``[B, S - 1, *frame]``, the frames before step ``T`` (the next
      call's ``previous``).
    """
    history = previous.shape[1]
    steps, batch = frames.shape[:2]
    frame_shape = frames.shape[2:]
    timeline = torch.cat([previous.transpose(0, 1), frames])  # [S - 1 + T, B, *frame]
    device = frames.device
    time = torch.arange(steps, device=device)
    # The timeline index of the first frame of the episode each step is in; 0 where it began before step 0.
    starts = torch.where(done, time[:, None], torch.full_like(time, -1)[:, None]).cummax(0).values
    first = torch.where(starts >= 0, starts + history, torch.zeros_like(starts))  # [T, B]
    # Frame k (0 = oldest) of step t sits at timeline index t + k, or at its episode's first frame if earlier.
    source = (time[:, None] + torch.arange(history + 1, device=device)[None, :])[:, :, None]  # [T, S, 1]
    source = torch.maximum(source, first[:, None, :])  # [T, S, B]
    columns = torch.arange(batch, device=device)[None, None, :]
    gathered = timeline[source, columns]  # [T, S, B, *frame]
    last = gathered[-1, 1:].transpose(0, 1) if steps else previous
    stacked = gathered.transpose(1, 2).reshape(steps, batch, (history + 1) * frame_shape[0], *frame_shape[1:])
    return stacked, last.contiguous()
