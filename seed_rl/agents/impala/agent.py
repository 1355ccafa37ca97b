"""The IMPALA agent as the learner core sees it: sampling actions and V-trace training."""

from __future__ import annotations

import threading

import torch

from seed_rl.agents.impala import losses, popart, vtrace
from seed_rl.agents.impala.config import ImpalaConfig
from seed_rl.agents.impala.network import ActorCriticNet
from seed_rl.agents.impala.optimizers import TFRMSprop
from seed_rl.core.agent import ActInputs, ActResult, TrainResult, all_finite
from seed_rl.core.precision import FP32, Precision
from seed_rl.core.learner_ranks import SINGLE, LearnerRanks
from seed_rl.envs import EnvSpec


class ImpalaAgent:
    """Actor-critic with V-trace off-policy correction (Espeholt et al. 2018)."""

    def __init__(
        self, spec: EnvSpec, config: ImpalaConfig, device: torch.device, total_train_steps: int,
        precision: Precision = FP32, ranks: LearnerRanks = SINGLE,
    ):
        config.validate()
        self.config = config
        self.device = device
        self.precision = precision  # of the network's forward passes; the loss maths is float32
        self.model = ActorCriticNet(
            spec.observation_shape,
            spec.observation_dtype,
            spec.num_actions,
            torso=config.torso,
            use_lstm=config.use_lstm,
            lstm_size=config.lstm_size,
            weight_init=config.weight_init,
            popart_step_size=config.popart_step_size if config.popart else None,
        ).to(device)
        precision.prepare(self.model)
        # With several learner ranks each trains on an equal share of the batch, through a wrapper that
        # averages the ranks' gradients in backward (core/learner_ranks.py); one rank: the model itself.
        self.ranks = ranks
        self._data_parallel = ranks.wrap(self.model) if ranks.distributed else None
        if config.optimizer == "rmsprop_tf":
            self.optimizer = TFRMSprop(
                self.model.parameters(), lr=config.learning_rate, decay=config.rmsprop_decay,
                epsilon=config.rmsprop_epsilon,
            )
        elif config.optimizer == "rmsprop":
            self.optimizer = torch.optim.RMSprop(
                self.model.parameters(),
                lr=config.learning_rate,
                alpha=config.rmsprop_decay,
                eps=config.rmsprop_epsilon,
                momentum=config.rmsprop_momentum,
            )
        else:
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate, eps=config.adam_epsilon)
        total = max(1, total_train_steps)
        decay = (lambda step: max(0.0, 1.0 - step / total)) if config.lr_decay else (lambda step: 1.0)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, decay)

    @property
    def train_model(self) -> torch.nn.Module:
        """The network as the training forward pass calls it: the data-parallel wrapper, or the network itself."""
        return self.model if self._data_parallel is None else self._data_parallel

    def initial_core_state(self, batch_size: int) -> tuple[torch.Tensor, ...]:
        return self.model.initial_state(batch_size)

    @torch.no_grad()
    def act(self, inputs: ActInputs, core_state) -> ActResult:
        with self.precision.autocast():
            logits, _, core_state = self.model(inputs.observation.unsqueeze(0), inputs.done.unsqueeze(0), core_state)
        logits = logits[0]
        action = torch.multinomial(torch.softmax(logits, dim=-1), 1).squeeze(-1)
        return ActResult(action, {"policy_logits": logits}, core_state)

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
        """IMPALA loss on a time-major batch of ``T + 1``-step unrolls (see ``Unroll``).

        The loss is summed over the T*B steps (scalable_agent, TorchBeast) for
        RMSprop, and averaged (SEED RL) for Adam; see ``ImpalaConfig``. With
        PopArt the baseline regresses the normalised targets and the advantages
        are divided by the targets' scale (``popart.py``). Also returns the
        V-trace targets ``vs`` ``[T, B]``, which PopArt's statistics follow.
        """
        cfg = self.config
        with self.precision.autocast():  # the network's heads return float32 (networks/float32.py)
            logits, values, _ = self.train_model(batch["observation"], batch["done"], batch["initial_core_state"])
        statistics = self.model.value_statistics
        if statistics is None:
            unnormalized = values
        else:
            mean, scale = statistics.mean_and_scale()  # once per loss: the targets below use the same
            unnormalized = popart.unnormalize(values, mean, scale)
        rewards = batch["reward"][1:]
        if cfg.reward_clipping == "abs_one":
            rewards = rewards.clamp(-1.0, 1.0)
        discounts = (~batch["done"][1:]).float() * cfg.discount
        actions = batch["action"][:-1]
        returns = vtrace.from_logits(
            behaviour_logits=batch["agent_outputs"]["policy_logits"][:-1],
            target_logits=logits[:-1],
            actions=actions,
            discounts=discounts,
            rewards=rewards,
            values=unnormalized[:-1],
            bootstrap_value=unnormalized[-1],
            clip_rho_threshold=cfg.clip_rho_threshold,
            clip_pg_rho_threshold=cfg.clip_pg_rho_threshold,
            clip_c_threshold=cfg.clip_c_threshold,
            lambda_=cfg.vtrace_lambda,
        )
        if statistics is None:
            advantages, targets = returns.pg_advantages, returns.vs
        else:
            advantages = returns.pg_advantages / scale.to(values.dtype)
            targets = popart.normalize(returns.vs, mean, scale)
        pg_loss = losses.policy_gradient_loss(logits[:-1], actions, advantages)
        v_loss = losses.baseline_loss(values[:-1], targets)
        entropy = losses.entropy_loss(logits[:-1])
        summed = pg_loss + cfg.baseline_cost * v_loss + cfg.entropy_cost * entropy
        entries = actions.numel()
        # Adam: SEED's mean-reduced losses, for which --adam_epsilon is sized. The ranks' gradients are
        # averaged, so a loss summed over the global batch is world_size times each rank's sum.
        total = summed / entries if cfg.optimizer == "adam" else summed * self.ranks.world_size
        # Logged per step (means), so curves compare across unroll and batch sizes.
        logs = {
            "loss/total": summed.item() / entries,
            "loss/policy": pg_loss.item() / entries,
            "loss/baseline": v_loss.item() / entries,
            "policy_entropy": -entropy.item() / entries,
            "mean_rho": returns.log_rhos.exp().mean().item(),
        }
        if statistics is not None:
            logs.update({"popart/mean": float(mean), "popart/scale": float(scale)})
        return total, logs, returns.vs

    def train_step(self, batch: dict, params_lock: threading.Lock) -> TrainResult:
        loss, logs, targets = self.compute_loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        logs["grad_norm"] = float(grad_norm)
        logs["learning_rate"] = self.optimizer.param_groups[0]["lr"]
        # Weights, optimizer, PopArt and schedule stay as they were; every rank skips if any rank's loss is not finite.
        if not self.ranks.all_agree(all_finite(loss, grad_norm)):
            self.optimizer.zero_grad(set_to_none=True)
            return TrainResult(logs, skipped=True)
        with params_lock:
            self.optimizer.step()
            if self.model.value_statistics is not None:
                self.model.value_statistics.update(targets, self.model.baseline, self.ranks.mean)
        self.scheduler.step()
        return TrainResult(logs)

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def load_for_evaluation(self, state: dict) -> None:
        """Loads the network ``act`` uses from a :meth:`state_dict` and puts it in evaluation mode."""
        self.model.load_state_dict(state["model"])
        self.model.eval()
