"""Observation encoders ("torsos") that map one observation to a feature vector."""

from __future__ import annotations

import typing
from typing import Literal

import math

import torch
from torch import nn


def scaled_pixels(observation: torch.Tensor) -> torch.Tensor:
    """uint8 pixels scaled to [0, 1], in the autocast dtype where autocast is on, else float32.

    Under bf16 autocast the first convolution would cast a float32 input to
    bfloat16 anyway; converting the uint8 pixels straight to bfloat16 gives the
    same values (integers up to 256 are exact in bfloat16) in one pass over half
    the bytes: the R2D2 Pong batch's torso forward took 0.31 s instead of 0.54 s.
    """
    device = observation.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else torch.float32
    return observation.to(dtype).mul_(1.0 / 255.0)


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(torch.relu(self.conv0(torch.relu(x))))


class ImpalaDeepTorso(nn.Module):
    """The IMPALA "deep" ResNet (Espeholt et al. 2018, Fig. 3, right).

    Three sections of (conv 3x3, max-pool 3x3 stride 2, two residual blocks) with
    16, 32, 32 channels, then a 256-unit fully connected layer. Takes uint8
    images ``[N, C, H, W]`` and scales them to [0, 1].
    """

    def __init__(self, observation_shape: tuple[int, ...], channels=(16, 32, 32), output_size: int = 256):
        super().__init__()
        in_channels, height, width = observation_shape
        sections = []
        for out_channels in channels:
            sections += [
                nn.Conv2d(in_channels, out_channels, 3, padding=1),
                nn.MaxPool2d(3, stride=2, padding=1),
                _ResidualBlock(out_channels),
                _ResidualBlock(out_channels),
            ]
            in_channels = out_channels
            height, width = math.ceil(height / 2), math.ceil(width / 2)
        self.sections = nn.Sequential(*sections)
        self.fc = nn.Linear(in_channels * height * width, output_size)
        self.output_size = output_size

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        x = scaled_pixels(observation)
        x = torch.relu(self.sections(x))
        return torch.relu(self.fc(x.flatten(1)))


class GFootballTorso(ImpalaDeepTorso):
    """SEED RL's Google Research Football network (``football/networks.py``, ``GFootball``).

    The IMPALA ResNet with four sections instead of three: (conv 3x3, max-pool
    3x3 stride 2, two residual blocks) with 16, 32, 32, 32 channels, then a
    256-unit fully connected layer. Built for the stacked super-mini-map
    (uint8 0/255 planes ``[N, 4 * stack, 72, 96]``), scaled to [0, 1].
    """

    def __init__(self, observation_shape: tuple[int, ...], output_size: int = 256):
        super().__init__(observation_shape, channels=(16, 32, 32, 32), output_size=output_size)


# Spatial sizes (height, width) of gfootball's super-mini-map and pixel
# observations: SEED RL football/env.py smm_size default, medium, large.
FOOTBALL_FRAME_SIZES = ((72, 96), (90, 120), (108, 144))


class NatureTorso(nn.Module):
    """The DQN "Nature" CNN (Mnih et al. 2015): a cheaper image torso for small machines."""

    def __init__(self, observation_shape: tuple[int, ...], output_size: int = 512):
        super().__init__()
        in_channels, height, width = observation_shape
        if min(height, width) < 36:  # the three convolutions need 36x36 at least
            raise ValueError(
                f"torso 'nature' needs images of at least 36x36, got {height}x{width}; "
                "use --torso=impala_deep or --torso=auto"
            )
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, 32, 8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1),
            nn.ReLU(),
        )
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, *observation_shape)).numel()
        self.fc = nn.Linear(flat, output_size)
        self.output_size = output_size

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        x = self.convs(scaled_pixels(observation))
        return torch.relu(self.fc(x.flatten(1)))


class MinAtarTorso(nn.Module):
    """The MinAtar network (Young & Tian 2019), for 10x10 MinAtar planes.

    One convolution of 16 3x3 filters, stride 1 (no padding), ReLU, then a
    128-unit fully connected layer, ReLU. Takes uint8 images ``[N, C, H, W]``
    and scales them to [0, 1].
    """

    def __init__(self, observation_shape: tuple[int, ...], channels: int = 16, output_size: int = 128):
        super().__init__()
        in_channels, height, width = observation_shape
        self.conv = nn.Conv2d(in_channels, channels, 3, stride=1)
        self.fc = nn.Linear(channels * (height - 2) * (width - 2), output_size)
        self.output_size = output_size

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(scaled_pixels(observation)))
        return torch.relu(self.fc(x.flatten(1)))


# Spatial size (height, width) of MinAtar's planes.
MINATAR_FRAME_SIZE = (10, 10)


class MLPTorso(nn.Module):
    """A fully connected encoder for vector observations (flattened if multi-dimensional)."""

    def __init__(self, observation_shape: tuple[int, ...], hidden_sizes=(64, 64)):
        super().__init__()
        layers: list[nn.Module] = []
        size = int(math.prod(observation_shape))
        for hidden in hidden_sizes:
            layers += [nn.Linear(size, hidden), nn.Tanh()]
            size = hidden
        self.layers = nn.Sequential(*layers)
        self.output_size = size

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.layers(observation.float().flatten(1))


# The torsos a config's ``torso`` field may name (its flag's choices).
TorsoName = Literal["auto", "impala_deep", "gfootball_smm", "nature", "minatar", "mlp"]
TORSOS: tuple[str, ...] = typing.get_args(TorsoName)
_IMAGE_TORSOS = ("impala_deep", "gfootball_smm", "nature", "minatar")


def make_torso(name: str, observation_shape: tuple[int, ...], observation_dtype: str) -> nn.Module:
    """Builds a torso.

    ``auto`` picks SEED's Football network for uint8 images of a Football
    frame size (72x96, 90x120, 108x144), the MinAtar network for 10x10 uint8
    images, the IMPALA deep CNN for other uint8 images, else an MLP.
    """
    if name == "auto":
        is_image = observation_dtype == "uint8" and len(observation_shape) == 3
        if is_image and tuple(observation_shape[1:]) in FOOTBALL_FRAME_SIZES:
            name = "gfootball_smm"
        elif is_image and tuple(observation_shape[1:]) == MINATAR_FRAME_SIZE:
            name = "minatar"
        else:
            name = "impala_deep" if is_image else "mlp"
    if name in _IMAGE_TORSOS and len(observation_shape) != 3:
        raise ValueError(
            f"torso {name!r} needs image observations [C, H, W], got shape {observation_shape}; use --torso=mlp"
        )
    if name == "impala_deep":
        return ImpalaDeepTorso(observation_shape)
    if name == "gfootball_smm":
        return GFootballTorso(observation_shape)
    if name == "nature":
        return NatureTorso(observation_shape)
    if name == "minatar":
        return MinAtarTorso(observation_shape)
    if name == "mlp":
        return MLPTorso(observation_shape)
    raise ValueError(f"unknown torso {name!r}; choose one of {', '.join(TORSOS)}")
