"""R2D2 hyperparameters.

Sources: Kapturowski et al. 2019, "Recurrent Experience Replay in Distributed
Reinforcement Learning" (R2D2), Table 2; SEED RL's R2D2 learner defaults
(Espeholt et al. 2020, ``agents/r2d2/learner.py``) where R2D2's own table has
no value or SEED's choice suits central inference better.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from seed_rl.config.flags import check_choices
from seed_rl.networks.torsos import TorsoName


@dataclass
class R2D2Config:
    unroll_length: int = 80  # R2D2 Table 2: replay sequence length m = 80 (trained steps)
    burn_in: int = 40  # R2D2 Table 2: burn-in prefix l = 40
    sequence_period: int = 40  # R2D2 Table 2: sequences overlap by 40 steps, so one starts every 40
    batch_size: int = 64  # R2D2 Table 2: minibatch of 64 sequences
    discount: float = 0.997  # R2D2 Table 2: gamma 0.997
    n_step: int = 5  # R2D2 Table 2: 5-step returns
    learning_rate: float = 1e-4  # R2D2 Table 2: Adam, lr 1e-4
    adam_epsilon: float = 1e-3  # R2D2 Table 2: Adam epsilon 1e-3
    max_grad_norm: float = 40.0  # SEED RL R2D2 learner: gradient clipping norm 40
    target_update_period: int = 2500  # R2D2 Table 2: target network every 2500 learner updates
    replay_ratio: float = 1.5  # SEED RL R2D2 learner: each inserted step trained on 1.5 times
    # R2D2 Table 2 holds 1e5 sequences (4M observations), the atari preset's
    # value (seed_rl/config/presets.py); families without a preset keep this smaller replay.
    replay_capacity: int = 2000
    min_replay_size: int = 100  # sequences before learning starts (chosen here; SEED uses 5000 at 610 actors)
    priority_exponent: float = 0.9  # R2D2 Table 2: alpha 0.9
    importance_sampling_exponent: float = 0.6  # R2D2 Table 2: beta 0.6
    # SEED RL R2D2 learner: "realistic initial priorities", the TD errors of the
    # new sequence under the Q-values computed while acting; "max" gives new
    # sequences the largest priority seen so far (Schaul et al. 2016).
    initial_priority: Literal["td", "max"] = "td"
    priority_eta: float = 0.9  # R2D2 Table 2: eta 0.9 (max/mean mix of |TD| in a sequence)
    value_rescaling_epsilon: float = 1e-3  # R2D2 Sec. 2 / Pohlen et al. 2018: epsilon 1e-3
    epsilon_base: float = 0.4  # R2D2 / Ape-X: epsilon_i = 0.4 ** (1 + 7 i / (N - 1))
    epsilon_alpha: float = 7.0  # R2D2 / Ape-X exponent 7
    eval_epsilon: float = 1e-3  # SEED RL's R2D2 learner (--eval_epsilon): evaluation environments act at 0.001
    lstm_size: int = 512  # R2D2 Table 2: LSTM 512 units
    head_size: int = 512  # R2D2 Table 2: dueling heads with 512 hidden units
    # "auto": the family's network (IMPALA ResNet for other images, MLP for vectors);
    # the atari preset picks R2D2's own DQN CNN ("nature").
    torso: TorsoName = "auto"
    checkpoint_replay: bool = True  # store replay contents in checkpoints (see docs/agents.md)
    # Draw and decompress the next replay batch on a worker thread while the current one trains (Ape-X's
    # replay serves its learner with priorities one update stale); tools/bench_replay_prefetch.py measures it.
    # "auto": on for an accelerator learner, whose training thread waits on the device; off on a CPU, where
    # the worker takes cores from training (measured here, MinAtar Breakout on 2 cores, 60k frames: 61 s on,
    # 55 s off).
    prefetch_batches: Literal["auto", "on", "off"] = "auto"

    def validate(self) -> None:
        check_choices(self)
        positive = ("unroll_length", "sequence_period", "batch_size", "n_step", "target_update_period",
                    "replay_capacity", "min_replay_size", "lstm_size", "head_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.burn_in < 0:
            raise ValueError(f"--burn_in must be >= 0, got {self.burn_in}")
        if self.sequence_period > self.burn_in + self.unroll_length + 1:
            raise ValueError(
                f"--sequence_period={self.sequence_period} would skip steps: it must be at most "
                f"burn_in + unroll_length + 1 = {self.burn_in + self.unroll_length + 1}"
            )
        if not 0.0 <= self.eval_epsilon <= 1.0:
            raise ValueError(f"--eval_epsilon must be in [0, 1], got {self.eval_epsilon}")
        if self.replay_ratio <= 0:
            raise ValueError(f"--replay_ratio must be > 0, got {self.replay_ratio}")
        if self.min_replay_size > self.replay_capacity:
            raise ValueError(
                f"--min_replay_size={self.min_replay_size} exceeds --replay_capacity={self.replay_capacity}"
            )

    @property
    def sequence_length(self) -> int:
        """Steps stored per sequence: burn-in, trained steps, and one bootstrap step."""
        return self.burn_in + self.unroll_length + 1
