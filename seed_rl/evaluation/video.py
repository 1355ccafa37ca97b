"""An MP4 of an episode: the env's own RGB rendering where it has one, else pictures of its image observations."""

from __future__ import annotations

import colorsys
import math
import shlex
import sys
import warnings
from pathlib import Path

import gymnasium
import numpy as np

from seed_rl.envs import EnvConfig
from seed_rl.envs.families import parse_env_name
from seed_rl.evaluation.errors import EvaluationError
from seed_rl.exits import first_line

# With this interpreter's pip, so the extra lands where seed_rl runs (a venv's, not the system's).
VIDEO_HINT = f"{shlex.quote(sys.executable)} -m pip install 'seed_rl[video]'"
MIN_VIDEO_SIDE = 160  # small frames (MinAtar's 10x10) are scaled up by an integer factor to at least this
DEFAULT_VIDEO_FPS = 30


def require_video_packages() -> None:
    """Raises EvaluationError, with the install hint, unless imageio and imageio-ffmpeg import."""
    try:
        import imageio.v2  # noqa: F401
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        raise EvaluationError(f"--video needs imageio and imageio-ffmpeg: {VIDEO_HINT}") from None


def observation_frame(observation: np.ndarray, layout: str | None = None) -> np.ndarray | None:
    """An ``[H, W, 3]`` uint8 picture of a channel-first image observation, or None for vectors.

    ``layout``: ``"rgb"`` (stacked RGB frames: the last 3 channels), ``"gray"``
    (stacked gray frames: the last channel) or ``"planes"`` (one object kind per
    channel, as MinAtar's: each drawn in its own hue). None: ``"rgb"`` for 3
    uint8 channels, ``"gray"`` for other uint8 images, ``"planes"`` for floats.
    """
    planes = np.asarray(observation)
    if planes.ndim == 2:
        planes = planes[None]
    if planes.ndim != 3:
        return None
    channels = planes.shape[0]
    if layout is None:
        layout = "planes" if planes.dtype != np.uint8 else "rgb" if channels == 3 else "gray"
    if layout == "rgb" and channels % 3 == 0:
        return np.ascontiguousarray(planes[-3:].transpose(1, 2, 0)).astype(np.uint8)
    if layout != "planes":
        return np.repeat(planes[-1][:, :, None], 3, axis=2).astype(np.uint8)
    values = planes / 255.0 if planes.dtype == np.uint8 else np.nan_to_num(planes.astype(np.float32))
    values = np.clip(values, 0.0, 1.0)
    if channels == 1:
        colours = np.ones((1, 3), np.float32)
    else:
        colours = np.array([colorsys.hsv_to_rgb(c / channels, 1.0, 1.0) for c in range(channels)], np.float32)
    picture = (values[:, :, :, None] * colours[:, None, None, :]).max(axis=0)
    return (picture * 255).round().astype(np.uint8)


def _as_uint8(frame: np.ndarray) -> np.ndarray:
    """RGB frames as uint8; float ones (MinAtar renders colours in [0, 1]) are scaled from [0, 1]."""
    frame = np.asarray(frame)
    if np.issubdtype(frame.dtype, np.floating):
        return (np.clip(np.nan_to_num(frame), 0.0, 1.0) * 255).round().astype(np.uint8)
    return frame.astype(np.uint8)


def video_frame(frame: np.ndarray) -> np.ndarray:
    """Scales ``frame`` up by nearest neighbour to at least MIN_VIDEO_SIDE and pads it to even sides (H.264)."""
    height, width = frame.shape[:2]
    scale = max(1, math.ceil(MIN_VIDEO_SIDE / min(height, width)))
    frame = frame.repeat(scale, axis=0).repeat(scale, axis=1)
    return np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)))


def _can_render_rgb(env: gymnasium.Env) -> tuple[bool, str]:
    """Turns on ``rgb_array`` rendering where the env offers it; (True, "") if ``env.render()`` then gives frames.

    Else (False, why not). Call after ``env.reset``. ``make_env`` builds envs
    without a render mode; the mode only selects what ``render()`` returns, not the dynamics.
    """
    base = env.unwrapped
    switched = False
    if env.render_mode != "rgb_array":
        if base.render_mode is not None or "rgb_array" not in base.metadata.get("render_modes", ()):
            return False, "it renders no rgb_array frames"
        base.render_mode, switched = "rgb_array", True
    try:
        with warnings.catch_warnings():  # gymnasium's checker on a first render: fps, dtype
            warnings.simplefilter("ignore")
            frame, why = env.render(), "its render() gave no RGB frame"
    except Exception as e:  # e.g. CartPole without pygame
        frame, why = None, f"its rgb_array rendering failed ({first_line(e)})"
    if isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3:
        return True, ""
    if switched:
        base.render_mode = None
    return False, why


class VideoRecorder:
    """Writes the frames of one episode to an MP4 with imageio-ffmpeg."""

    def __init__(self, path: Path, env: gymnasium.Env, env_name: str, config: EnvConfig, observation: np.ndarray):
        self.path = path
        self.env = env
        self.render, why = _can_render_rgb(env)
        self.layout = parse_env_name(env_name)[0].observation_layout(config)
        if not self.render and observation_frame(observation, self.layout) is None:
            raise EvaluationError(
                f"cannot record a video of {env_name}: {why} and its observations of shape "
                f"{np.shape(observation)} are not images"
            )
        import imageio.v2 as imageio

        fps = env.metadata.get("render_fps") if self.render else None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = imageio.get_writer(
                path, format="FFMPEG", fps=fps or DEFAULT_VIDEO_FPS, codec="libx264", macro_block_size=2
            )
        except Exception as e:
            raise EvaluationError(f"cannot write the video {path}: {first_line(e)}") from None

    def add(self, observation: np.ndarray) -> None:
        frame = self.env.render() if self.render else observation_frame(observation, self.layout)
        try:
            self._writer.append_data(video_frame(_as_uint8(frame)))
        except Exception as e:  # ffmpeg died: a full disk, a path it cannot write
            raise EvaluationError(f"cannot write the video {self.path}: {first_line(e)}") from None

    def close(self) -> None:
        try:
            self._writer.close()
        except Exception as e:
            raise EvaluationError(f"cannot write the video {self.path}: {first_line(e)}") from None
