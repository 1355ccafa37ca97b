"""IMPALA hyperparameters. Defaults are the IMPALA paper's Atari settings.

Source for each default: Espeholt et al. 2018, "IMPALA", Appendix (Atari
hyperparameters, shared by the single-task "deep" experiments), unless noted.
``seed_rl/config/presets.py`` overrides some of them per environment family.

How big one update is depends on the loss reduction and the optimizer's
epsilon together, so each optimizer follows one source for both:

- ``rmsprop`` (default): IMPALA's own code (scalable_agent) and TorchBeast
  **sum** the losses over time and batch. TorchBeast uses torch's RMSprop,
  whose epsilon sits outside the square root, at 0.01; that is the value and
  meaning of ``--rmsprop_epsilon``. (scalable_agent's TF1 RMSProp puts its
  epsilon 0.1 inside the square root, a different quantity.) With a mean over
  T*B = 640 entries instead, eps 0.01 would act like eps 6.4 on the sum and
  updates shrink about 50x (measured on Pong batches here; tools/update_ratios.py
  prints how far an update moves each part of the network).
- ``adam``: SEED RL's V-trace learner takes the **mean** of its losses with
  Adam (Football, DMLab), so with ``--optimizer=adam`` the summed loss is
  divided by T*B and ``--adam_epsilon`` means what SEED's flag means.

RMSprop normalises each step by the gradient's running RMS and Adam by its
moments, so the step in parameter space is set by the learning rate, not by
``--unroll_length`` or ``--batch_size``; those change how much data one step
sees (and, for RMSprop, how large the gradient is next to epsilon, exactly as
in TorchBeast).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from seed_rl.config.flags import check_choices
from seed_rl.networks.torsos import TorsoName


@dataclass
class ImpalaConfig:
    unroll_length: int = 20  # IMPALA Atari: unroll length 20
    batch_size: int = 32  # IMPALA Atari: batch size 32
    discount: float = 0.99  # IMPALA Atari: discount 0.99
    optimizer: Literal["rmsprop", "rmsprop_tf", "adam"] = "rmsprop"  # IMPALA: RMSProp; "adam" as in SEED's Football/DMLab configs
    learning_rate: float = 6e-4  # IMPALA Atari: 0.0006
    rmsprop_decay: float = 0.99  # IMPALA Atari: decay 0.99
    rmsprop_epsilon: float = 0.01  # TorchBeast: torch RMSprop eps 0.01 on summed losses (see above)
    rmsprop_momentum: float = 0.0  # IMPALA Atari: momentum 0
    adam_epsilon: float = 3.125e-7  # SEED RL DMLab/Football scripts (gcp/train_*.sh): Adam eps 3.125e-7 on mean losses
    lr_decay: bool = True  # IMPALA: learning rate linearly annealed to 0 over training
    entropy_cost: float = 0.01  # IMPALA Atari: entropy cost 0.01
    baseline_cost: float = 0.5  # IMPALA Atari: baseline cost 0.5
    max_grad_norm: float = 40.0  # IMPALA Atari: global gradient-norm clipping 40
    reward_clipping: Literal["abs_one", "none"] = "abs_one"  # IMPALA Atari: rewards clipped to [-1, 1]; "none" to disable
    vtrace_lambda: float = 1.0  # IMPALA: lambda 1 (pure V-trace)
    clip_rho_threshold: float = 1.0  # IMPALA: rho-bar = 1
    clip_pg_rho_threshold: float = 1.0  # IMPALA: rho-bar for the policy gradient = 1
    clip_c_threshold: float = 1.0  # IMPALA: c-bar = 1
    torso: TorsoName = "auto"  # SEED Football ResNet for 72x96 Football frames, IMPALA deep ResNet for other images, MLP for vectors
    # "torch" (PyTorch's layer defaults) or "orthogonal" (OpenAI Baselines / CleanRL:
    # gain sqrt(2) in the torso, 0.01 policy head, 1 value head, zero biases).
    weight_init: Literal["torch", "orthogonal"] = "torch"
    # PopArt (Hessel et al. 2019): the baseline learns V-trace targets normalised by their running mean
    # and scale, and the advantages are divided by that scale, so updates do not grow with the returns.
    popart: bool = False
    # Step size of PopArt's moving moments of the targets (Hessel et al. 2019: 3e-4).
    popart_step_size: float = 3e-4
    use_lstm: bool = False  # IMPALA Atari experiments ran feed-forward; LSTM optional
    # IMPALA Table G.1 (Atari): "End of episode when life lost: Yes", during training only; episode
    # returns in the logs and in seed_rl.evaluate count whole games. No effect where no lives are reported.
    life_loss_ends_episode: bool = True
    lstm_size: int = 256  # IMPALA deep network LSTM size 256

    def validate(self) -> None:
        check_choices(self)
        for name in ("unroll_length", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
