"""Environment settings shared by actors and the learner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from seed_rl.envs.dmlab_config import DmLabConfig
from seed_rl.envs.errors import EnvError


@dataclass(frozen=True)
class EnvConfig:
    """How environments are built; the defaults follow SEED RL's Atari setup.

    Sources: SEED RL ``atari/env.py`` (which wraps the deterministic
    ``<Game>NoFrameskip-v4`` games in Dopamine's ``AtariPreprocessing``),
    R2D2 (Kapturowski et al. 2019) and Machado et al. 2018, "Revisiting the
    Arcade Learning Environment".  Only the Atari fields apply to other
    gymnasium environments: those take their own time limit from the registry.
    """

    # Action repeat; the observation is the pixel-wise max over the last two of
    # the repeated frames (removes Atari sprite flicker). SEED RL atari/env.py,
    # Mnih et al. 2015.
    frame_skip: int = 4
    # Frames are resized to screen_size x screen_size (84x84 as in DQN/SEED).
    screen_size: int = 84
    # Grayscale (luminance) frames; False keeps RGB (3 channels per frame).
    grayscale: bool = True
    # A random number (1..noop_max) of NOOP actions at the start of each
    # episode, SEED RL atari/env.py / Mnih et al. 2015. 0 disables.
    noop_max: int = 30
    # The number of most recent frames stacked along the channel axis.
    frame_stack: int = 4
    # Probability that ALE repeats the previous action instead of the chosen
    # one ("sticky actions"). SEED RL uses the deterministic NoFrameskip-v4
    # games, i.e. 0.0; Machado et al. 2018 recommend 0.25.
    sticky_action_prob: float = 0.0
    # False: the minimal action set of each game (6 for Pong), as SEED RL.
    # True: all 18 Atari actions.
    full_action_space: bool = False
    # Episode cap in emulator frames: 108,000 frames = 30 minutes of play =
    # 27,000 agent steps at frame_skip 4 (R2D2 / SEED RL / Machado et al.).
    # Reaching it truncates the episode. 0 means no cap.
    max_episode_frames: int = 108_000
    # End the episode (terminated=True) when a life is lost. SEED RL and
    # Machado et al. 2018 keep this off.
    terminal_on_life_loss: bool = False
    # DeepMind Lab (--env=dmlab:<level>); its fields are flags of their own.
    dmlab: DmLabConfig = field(default_factory=DmLabConfig)
    # Google Research Football (football:<scenario>, see seed_rl/envs/football.py).
    # The observation: SEED RL football/env.py trains on the super-mini-map
    # ("extracted"), stacked 4 frames deep (the shared frame_stack above).
    football_representation: Literal["extracted", "simple115v2", "pixels", "pixels_gray"] = "extracted"
    # The reward: "scoring" as SEED RL football/env.py, or "scoring,checkpoints"
    # (Kurach et al. 2020's shaped reward).
    football_rewards: Literal["scoring", "scoring,checkpoints"] = "scoring"

    def __post_init__(self) -> None:
        checks = (
            (self.frame_skip >= 1, f"frame_skip must be >= 1, got {self.frame_skip}"),
            (self.screen_size >= 1, f"screen_size must be >= 1, got {self.screen_size}"),
            (self.noop_max >= 0, f"noop_max must be >= 0 (0 disables no-op starts), got {self.noop_max}"),
            (self.frame_stack >= 1, f"frame_stack must be >= 1 (1 disables stacking), got {self.frame_stack}"),
            (
                0.0 <= self.sticky_action_prob <= 1.0,
                f"sticky_action_prob must be in [0, 1], got {self.sticky_action_prob}",
            ),
            (
                self.max_episode_frames >= 0,
                f"max_episode_frames must be >= 0 (0 means no cap), got {self.max_episode_frames}",
            ),
        )
        for ok, message in checks:
            if not ok:
                raise EnvError(f"bad EnvConfig: {message}")
