"""A scripted stand-in for DeepMind Lab's ``deepmind_lab`` module. Tests only.

It implements the documented Python API (google-deepmind/lab,
``docs/users/python_api.md``): ``Lab(level, observations, config, renderer,
level_cache)`` with ``reset(episode, seed)``, ``step(action, num_steps)``,
``observations()``, ``is_running()``, ``num_steps()``, ``action_spec()``,
``observation_spec()``, ``events()``, ``fps()``, ``close()``, and the module
functions ``version``, ``runfiles_path``, ``set_runfiles_path``. Where the real
engine's behaviour is undefined (a bad action) the stand-in raises, so that
misuse fails the tests.

The "levels" are scripted, not rendered:

- an episode lasts ``episodeLengthFrames`` engine frames (a level option passed
  in ``config``, default 120);
- the reward of a frame is 1 while MOVE_BACK_FORWARD is +1, else 0;
- ``RGB_INTERLEAVED`` frames (height, width, 3): channel 0 holds the frame count
  since reset (mod 256), channel 1 the last LOOK_LEFT_RIGHT value + 128, channel 2
  the episode seed (mod 256); ``RGB`` is the same, channel-first;
- ``INSTR`` is a sentence for levels whose name contains ``language_``, else empty;
- each reset loads map ``seed % mapCount`` (``mapCount`` option, default 4). A map
  not loaded before is first looked up with ``level_cache.fetch(key, pk3_path)``;
  on a miss it is "compiled" (a small file whose bytes depend on the key) and
  handed to ``level_cache.write(key, pk3_path)``. A fetched file whose bytes are
  wrong raises, so a broken cache fails the tests.

Put ``tests/dmlab_standin`` on ``sys.path`` (or ``PYTHONPATH``) to import it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile

import numpy as np

STANDIN = True  # lets a test tell this module from the real engine
_runfiles_path = os.path.dirname(os.path.abspath(__file__))

_ACTION_SPEC = [
    {"name": "LOOK_LEFT_RIGHT_PIXELS_PER_FRAME", "min": -512, "max": 512},
    {"name": "LOOK_DOWN_UP_PIXELS_PER_FRAME", "min": -512, "max": 512},
    {"name": "STRAFE_LEFT_RIGHT", "min": -1, "max": 1},
    {"name": "MOVE_BACK_FORWARD", "min": -1, "max": 1},
    {"name": "FIRE", "min": 0, "max": 1},
    {"name": "JUMP", "min": 0, "max": 1},
    {"name": "CROUCH", "min": 0, "max": 1},
]
_INSTRUCTIONS = ("Pick the red balloon.", "Go to the blue hat in the green room.", "How many apples are there?")


def version() -> str:
    return "stand-in"


def runfiles_path() -> str:
    return _runfiles_path


def set_runfiles_path(path: str) -> None:
    global _runfiles_path
    _runfiles_path = str(path)


def compiled_map_bytes(key: str) -> bytes:
    """What the stand-in "compiles" for map ``key``; tests compare cached files to it."""
    return b"PK3 stand-in map\n" + hashlib.sha256(key.encode()).digest() * 64


class Lab:
    def __init__(self, level, observations, config=None, renderer="software", level_cache=None):
        config = {} if config is None else config
        if not isinstance(level, str) or not level:
            raise ValueError(f"level must be a non-empty string, got {level!r}")
        for key, value in config.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(f"config keys and values must be strings, got {key!r}: {value!r}")
        if renderer not in ("software", "hardware"):
            raise ValueError(f"renderer must be 'software' or 'hardware', got {renderer!r}")
        if level.startswith("missing/"):
            raise RuntimeError(f"Failed to find level script {level!r}")
        self.level = level
        self.config = dict(config)
        self.renderer = renderer
        self.level_cache = level_cache
        self._width = int(config.get("width", "320"))
        self._height = int(config.get("height", "240"))
        self._episode_frames = int(config.get("episodeLengthFrames", "120"))
        self._map_count = int(config.get("mapCount", "4"))
        names = {spec["name"] for spec in self.observation_spec()}
        for name in observations:
            if name not in names:
                raise ValueError(f"Unknown observation {name!r}")
        self._observation_names = list(observations)
        self._closed = False
        self._running = False
        self._frames = 0
        self._seed = 0
        self._look = 0
        self._instruction = ""
        self._loaded_map: str | None = None
        # Recorded for tests (not part of the real API).
        self.actions: list[tuple[tuple[int, ...], int]] = []
        self.reset_seeds: list[int] = []
        self.compiled: list[str] = []
        self.fetched: list[str] = []

    # -- lifecycle ---------------------------------------------------------

    def _check_open(self, method: str) -> None:
        if self._closed:
            raise RuntimeError(f"Environment closed; {method}() is not allowed")

    def reset(self, episode=-1, seed=None):
        self._check_open("reset")
        if seed is not None and not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an integer or None, got {seed!r}")
        self._seed = int(seed) if seed is not None else int(np.random.randint(0, 2**31 - 1))
        self.reset_seeds.append(self._seed)
        self._load_map(f"{self.level}|map{self._seed % self._map_count}")
        self._running = True
        self._frames = 0
        self._look = 0
        if "language_" in self.level:
            self._instruction = _INSTRUCTIONS[self._seed % len(_INSTRUCTIONS)]
        else:
            self._instruction = ""
        return True

    def _load_map(self, key: str) -> None:
        if key == self._loaded_map:
            return
        expected = compiled_map_bytes(key)
        with tempfile.TemporaryDirectory() as folder:
            pk3_path = os.path.join(folder, "map.pk3")
            if self.level_cache is not None and self.level_cache.fetch(key, pk3_path):
                with open(pk3_path, "rb") as f:
                    if f.read() != expected:
                        raise RuntimeError(f"level cache returned a corrupt map for {key!r}")
                self.fetched.append(key)
            else:
                with open(pk3_path, "wb") as f:
                    f.write(expected)
                self.compiled.append(key)
                if self.level_cache is not None:
                    self.level_cache.write(key, pk3_path)
        self._loaded_map = key

    def close(self):
        self._closed = True
        self._running = False
        return True

    def is_running(self):
        return self._running

    def num_steps(self):
        self._check_open("num_steps")
        return self._frames

    def fps(self):
        return int(self.config.get("fps", "60"))

    def events(self):
        return []

    # -- specs ---------------------------------------------------------------

    def action_spec(self):
        return [dict(spec) for spec in _ACTION_SPEC]

    def observation_spec(self):
        h, w = self._height, self._width
        return [
            {"name": "RGB_INTERLEAVED", "dtype": np.uint8, "shape": (h, w, 3)},
            {"name": "RGB", "dtype": np.uint8, "shape": (3, h, w)},
            {"name": "INSTR", "dtype": str, "shape": ()},
        ]

    # -- stepping ------------------------------------------------------------

    def step(self, action, num_steps=1):
        self._check_open("step")
        if not self._running:
            raise RuntimeError("Environment in wrong status for call to step()")
        if not isinstance(action, np.ndarray) or action.dtype != np.intc or action.shape != (len(_ACTION_SPEC),):
            raise ValueError(f"action must be an np.intc array of shape ({len(_ACTION_SPEC)},), got {action!r}")
        for value, spec in zip(action, _ACTION_SPEC):
            if not spec["min"] <= value <= spec["max"]:
                raise ValueError(f"{spec['name']}={value} is outside [{spec['min']}, {spec['max']}]")
        if not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
            raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
        self.actions.append((tuple(int(v) for v in action), int(num_steps)))
        reward = 0.0
        for _ in range(num_steps):
            self._frames += 1
            reward += 1.0 if action[3] == 1 else 0.0
            if self._frames >= self._episode_frames:
                self._running = False
                break
        self._look = int(action[0])
        return reward

    def observations(self):
        self._check_open("observations")
        if not self._running:
            raise RuntimeError("Environment in wrong status for call to observations()")
        frame = np.empty((self._height, self._width, 3), np.uint8)
        frame[:, :, 0] = self._frames % 256
        frame[:, :, 1] = (self._look + 128) % 256
        frame[:, :, 2] = self._seed % 256
        out = {}
        for name in self._observation_names:
            if name == "RGB_INTERLEAVED":
                out[name] = frame
            elif name == "RGB":
                out[name] = np.ascontiguousarray(frame.transpose(2, 0, 1))
            elif name == "INSTR":
                out[name] = self._instruction
        return out
