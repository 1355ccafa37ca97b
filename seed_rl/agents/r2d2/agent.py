"""The R2D2 agent as the learner core sees it: epsilon-greedy acting and sequence Q-learning."""

from __future__ import annotations

import copy
import threading

import numpy as np
import torch

from seed_rl.agents.r2d2.config import R2D2Config
from seed_rl.agents.r2d2.exploration import actor_epsilons, epsilon_greedy
from seed_rl.agents.r2d2.network import R2D2Net
from seed_rl.agents.r2d2.targets import double_q_bootstrap, n_step_targets, truncation_mask
from seed_rl.core.agent import ActInputs, ActResult, TrainResult, all_finite
from seed_rl.core.eval_envs import EvalEnvs
from seed_rl.core.precision import FP32, Precision
from seed_rl.core.learner_ranks import SINGLE, LearnerRanks
from seed_rl.core.unroll import Unroll
from seed_rl.envs import EnvSpec
from seed_rl.agents.r2d2.priorities import sequence_priority


class R2D2Agent:
    """Recurrent replay DQN (Kapturowski et al. 2019) with stored recurrent states and burn-in.

    The recurrent state kept per environment is ``(h, c, previous action)``;
    each replayed sequence starts from the state stored with it.
    """

    def __init__(
        self, spec: EnvSpec, config: R2D2Config, device: torch.device, total_envs: int, precision: Precision = FP32,
        ranks: LearnerRanks = SINGLE, num_eval_envs: int = 0,
    ):
        config.validate()
        self.config = config
        self.device = device
        self.precision = precision  # of the networks' forward passes; targets and loss are float32
        self.model = R2D2Net(
            spec.observation_shape,
            spec.observation_dtype,
            spec.num_actions,
            torso=config.torso,
            lstm_size=config.lstm_size,
            head_size=config.head_size,
        ).to(device)
        precision.prepare(self.model)
        self.ranks = ranks
        # Several learner ranks: each trains on its share of the batch through a wrapper that averages
        # their gradients (core/learner_ranks.py), so the online and target networks stay identical.
        self._data_parallel = ranks.wrap(self.model) if ranks.distributed else None
        self.target_model = copy.deepcopy(self.model).requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate, eps=config.adam_epsilon)
        # SEED RL's R2D2 learner: the training environments get epsilon_i over their own ids; the
        # evaluation environments (the last ones, core/eval_envs.py) act with --eval_epsilon.
        self.eval_envs = EvalEnvs(total_envs, num_eval_envs)
        self.epsilons = actor_epsilons(self.eval_envs.num_training_envs, config.epsilon_base,
                                       config.epsilon_alpha).to(device)
        self.train_steps = 0

    @property
    def train_model(self) -> torch.nn.Module:
        """The network as the training forward pass calls it: the data-parallel wrapper, or the network itself."""
        return self.model if self._data_parallel is None else self._data_parallel

    def initial_core_state(self, batch_size: int) -> tuple[torch.Tensor, ...]:
        h, c = self.model.initial_state(batch_size)
        return h, c, torch.zeros(batch_size, dtype=torch.int64)

    @torch.no_grad()
    def act(self, inputs: ActInputs, core_state) -> ActResult:
        h, c, prev_action = core_state
        with self.precision.autocast():
            q, (h, c) = self.model(
                inputs.observation.unsqueeze(0),
                inputs.reward.unsqueeze(0),
                inputs.done.unsqueeze(0),
                prev_action.unsqueeze(0),
                (h, c),
            )
        epsilon = self.epsilons[inputs.env_index % len(self.epsilons)]
        if self.eval_envs.num_eval_envs:
            epsilon = torch.where(self.eval_envs.is_eval(inputs.env_index), self.config.eval_epsilon, epsilon)
        action = epsilon_greedy(q[0], epsilon)
        # The Q-values behind each action stay with the trajectory: they give
        # the sequence its initial replay priority (see insertion_priority).
        return ActResult(action, {"q": q[0]}, (h, c, action))

    def _unroll(self, model: torch.nn.Module, batch: dict, start: int, stop: int | None, state):
        s = slice(start, stop)
        with self.precision.autocast():  # the network's heads return float32 (networks/float32.py)
            return model(batch["observation"][s], batch["reward"][s], batch["done"][s], batch["prev_action"][s], state)

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """Loss on time-major sequences of ``burn_in + unroll_length + 1`` steps.

        Returns the loss, the per-sequence priorities and logs. The burn-in
        prefix only warms up the recurrent state from the stored one: it gets
        no gradient and no loss term.
        """
        cfg = self.config
        h0, c0, a0 = batch["initial_core_state"]
        batch = dict(batch, prev_action=torch.cat([a0.unsqueeze(0), batch["action"][:-1]]))
        online_state = target_state = (h0, c0)
        if cfg.burn_in > 0:
            with torch.no_grad():
                _, online_state = self._unroll(self.model, batch, 0, cfg.burn_in, online_state)
                _, target_state = self._unroll(self.target_model, batch, 0, cfg.burn_in, target_state)
        q, _ = self._unroll(self.train_model, batch, cfg.burn_in, None, online_state)
        with torch.no_grad():
            target_q, _ = self._unroll(self.target_model, batch, cfg.burn_in, None, target_state)
        td = self._td_errors(q, target_q, batch)
        q_taken = q[:-1].gather(-1, batch["action"][cfg.burn_in : -1].unsqueeze(-1)).squeeze(-1)
        # SEED RL's R2D2 learner: 0.5 * squared TD errors summed over time (steps
        # masked for a time-limit cut add nothing), then the importance-weighted
        # mean over the batch. Adam's epsilon (R2D2 Table 2) is sized for this loss.
        per_sequence = 0.5 * td.pow(2).sum(dim=0)
        weights = batch.get("importance_weights")
        loss = (per_sequence * weights).mean() if weights is not None else per_sequence.mean()
        priorities = sequence_priority(td.detach().abs(), cfg.priority_eta)
        logs = {"loss/total": loss.item(), "q_mean": q_taken.mean().item(), "td_abs_mean": td.abs().mean().item(),
                # How far the actions' values are apart (a policy needs them apart, not just a state value).
                "q_action_std": q[:-1].detach().float().std(dim=-1).mean().item()}
        return loss, priorities, logs

    def _td_errors(self, q: torch.Tensor, target_q: torch.Tensor, batch: dict):
        """n-step double-Q TD errors of the trained steps, ``[L-1, B]``, zero where a target is left out.

        ``q`` and ``target_q`` are ``[L, B, A]`` over the steps after burn-in;
        ``batch`` holds the whole sequence (burn-in included), time-major.
        Targets that would bootstrap across a time-limit cut are zeroed (mask).
        """
        cfg = self.config
        rewards = batch["reward"][cfg.burn_in :]
        discounts = (~batch["done"][cfg.burn_in :]).float() * cfg.discount
        bootstrap = double_q_bootstrap(q.detach(), target_q)
        targets = n_step_targets(rewards, discounts, bootstrap, cfg.n_step, eps=cfg.value_rescaling_epsilon)
        actions = batch["action"][cfg.burn_in : -1]
        td = targets - q[:-1].gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        if "truncated" not in batch:
            return td
        return td * truncation_mask(batch["done"][cfg.burn_in :], batch["truncated"][cfg.burn_in :], cfg.n_step)

    @torch.no_grad()
    def insertion_priority(self, unroll: Unroll) -> float:
        """Initial replay priority of a new sequence, from the Q-values recorded while acting.

        SEED RL's R2D2 learner ("realistic initial priorities"): the TD errors
        of the sequence with the acting-time Q-values standing in for both the
        online and the target network, so no extra forward pass is needed.
        """
        def column(array):  # [L] -> [L, 1] time-major batch of one
            return torch.from_numpy(np.asarray(array)).unsqueeze(1)

        steps = unroll.steps
        batch = {"reward": column(steps["reward"]).float(), "done": column(steps["done"]).bool(),
                 "action": column(steps["action"]).long()}
        if "truncated" in steps:
            batch["truncated"] = column(steps["truncated"]).bool()
        q = column(unroll.agent_outputs["q"])[self.config.burn_in :].float()
        td = self._td_errors(q, q, batch)
        return float(sequence_priority(td.abs(), self.config.priority_eta)[0])

    def train_step(self, batch: dict, params_lock: threading.Lock) -> TrainResult:
        loss, priorities, logs = self.compute_loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        logs["grad_norm"] = float(grad_norm)
        # Weights, optimizer, target network and priorities stay as they were, on every rank if on any.
        if not self.ranks.all_agree(all_finite(loss, grad_norm)):
            self.optimizer.zero_grad(set_to_none=True)
            return TrainResult(logs, skipped=True)
        with params_lock:
            self.optimizer.step()
        self.train_steps += 1
        if self.train_steps % self.config.target_update_period == 0:
            self.target_model.load_state_dict(self.model.state_dict())
        return TrainResult(logs, priorities.cpu().numpy())

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "target_model": self.target_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "train_steps": self.train_steps,
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.target_model.load_state_dict(state["target_model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.train_steps = state["train_steps"]

    def load_for_evaluation(self, state: dict) -> None:
        """Loads the network ``act`` uses from a :meth:`state_dict` and puts it in evaluation mode."""
        self.model.load_state_dict(state["model"])
        self.model.eval()
