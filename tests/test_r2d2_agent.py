"""R2D2 agent internals: exploration, burn-in, stored states, target updates, replay data."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from seed_rl.agents.r2d2.agent import R2D2Agent
from seed_rl.agents.r2d2.config import R2D2Config
from seed_rl.agents.r2d2.exploration import actor_epsilons, epsilon_greedy
from seed_rl.agents.r2d2.replay_data import ReplayData
from seed_rl.core.unroll import Unroll
from seed_rl.core.unroll import UnrollBatch
from seed_rl.envs import EnvSpec
from seed_rl.replay.prioritized import PrioritizedReplay

SPEC = EnvSpec(observation_shape=(3,), observation_dtype="float32", num_actions=2)


def _agent(**overrides) -> R2D2Agent:
    settings = dict(
        unroll_length=4, burn_in=3, sequence_period=4, batch_size=5, lstm_size=8, head_size=8,
        target_update_period=3, min_replay_size=1,
    )
    config = R2D2Config(**{**settings, **overrides})
    torch.manual_seed(0)
    return R2D2Agent(SPEC, config, torch.device("cpu"), total_envs=4)


def _batch(agent: R2D2Agent, seed: int = 0) -> dict:
    cfg = agent.config
    g = torch.Generator().manual_seed(seed)
    steps, batch = cfg.sequence_length, cfg.batch_size
    done = torch.rand(steps, batch, generator=g) < 0.15
    return {
        "observation": torch.rand(steps, batch, 3, generator=g),
        "reward": torch.randn(steps, batch, generator=g),
        "done": done,
        "action": torch.randint(2, (steps, batch), generator=g),
        "initial_core_state": (
            torch.randn(batch, cfg.lstm_size, generator=g),
            torch.randn(batch, cfg.lstm_size, generator=g),
            torch.randint(2, (batch,), generator=g),
        ),
        "importance_weights": torch.rand(batch, generator=g) + 0.5,
    }


def test_epsilons_follow_the_r2d2_schedule():
    eps = actor_epsilons(8)
    assert eps[0] == pytest.approx(0.4)
    assert eps[-1] == pytest.approx(0.4**8)
    for i in range(8):
        assert eps[i] == pytest.approx(0.4 ** (1 + 7 * i / 7))
    assert torch.all(eps[1:] < eps[:-1])
    assert actor_epsilons(1).tolist() == [0.4]


def test_epsilon_greedy_explores_at_the_given_rate():
    q = torch.tensor([[0.0, 1.0]]).repeat(20000, 1)
    g = torch.Generator().manual_seed(0)
    greedy_only = epsilon_greedy(q, torch.zeros(20000), g)
    assert torch.all(greedy_only == 1)
    half = epsilon_greedy(q, torch.full((20000,), 0.5), g)
    # Exploring picks uniformly, so action 0 appears with probability 0.25.
    assert (half == 0).float().mean().item() == pytest.approx(0.25, abs=0.02)


def test_burn_in_gets_no_gradient_and_no_loss_term():
    agent = _agent()
    batch = _batch(agent)
    observation = batch["observation"].clone().requires_grad_(True)
    loss, _, _ = agent.compute_loss(dict(batch, observation=observation))
    loss.backward()
    burn_in = agent.config.burn_in
    assert torch.all(observation.grad[:burn_in] == 0)
    assert observation.grad[burn_in:-1].abs().sum() > 0

    # The same loss from an agent without burn-in that starts after the prefix
    # from the state the prefix produced: the prefix adds no terms of its own.
    h0, c0, a0 = batch["initial_core_state"]
    prev_action = torch.cat([a0.unsqueeze(0), batch["action"][:-1]])
    with torch.no_grad():
        _, (h, c) = agent.model(
            batch["observation"][:burn_in], batch["reward"][:burn_in], batch["done"][:burn_in],
            prev_action[:burn_in], (h0, c0),
        )
    no_burn_in = _agent(burn_in=0)
    no_burn_in.model.load_state_dict(agent.model.state_dict())
    no_burn_in.target_model.load_state_dict(agent.model.state_dict())
    agent.target_model.load_state_dict(agent.model.state_dict())
    tail = {k: v[burn_in:] for k, v in batch.items() if k not in ("initial_core_state", "importance_weights")}
    tail["initial_core_state"] = (h, c, prev_action[burn_in])
    tail["importance_weights"] = batch["importance_weights"]
    expected, _, _ = no_burn_in.compute_loss(tail)
    got, _, _ = agent.compute_loss(batch)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("burn_in", [0, 3])
def test_stored_state_is_used(burn_in):
    agent = _agent(burn_in=burn_in)
    batch = _batch(agent)
    base, _, _ = agent.compute_loss(batch)
    h0, c0, a0 = batch["initial_core_state"]
    changed, _, _ = agent.compute_loss(dict(batch, initial_core_state=(h0 + 1.0, c0 - 1.0, a0)))
    assert changed.item() != pytest.approx(base.item(), rel=1e-6)


def test_target_network_updates_every_period():
    agent = _agent()
    lock = threading.Lock()

    def same() -> bool:
        return all(
            torch.equal(p, q) for p, q in zip(agent.model.parameters(), agent.target_model.parameters())
        )

    assert same()
    for step in range(1, 7):
        result = agent.train_step(_batch(agent, seed=step), lock)
        assert result.priorities.shape == (agent.config.batch_size,)
        assert np.all(result.priorities >= 0)
        assert "priorities" not in result.logs
        assert same() == (step % agent.config.target_update_period == 0)


def _unroll(value: float) -> UnrollBatch:
    """One sequence, as the inference side hands it over."""
    return UnrollBatch.from_unrolls([Unroll(
        steps={"observation": np.full((3, 3), value, np.float32), "reward": np.zeros(3, np.float32),
               "done": np.zeros(3, bool), "action": np.zeros(3, np.int64)},
        agent_outputs={}, initial_core_state=(),
    )], torch.device("cpu"))


def test_replay_data_holds_the_replay_ratio_and_round_trips_through_a_checkpoint():
    replay = PrioritizedReplay(100, seed=0)
    data = ReplayData(replay, batch_size=2, replay_ratio=2.0, min_size=3,
                      trained_steps_per_sequence=4, new_steps_per_sequence=2)
    for i in range(3):
        assert data.wants_data()
        data.add(_unroll(i))
    # 6 inserted steps allow 12 trained steps: a batch trains 8, so one batch.
    assert not data.wants_data()
    _, extras, ids = data.sample()
    data.after_train(ids, np.array([5.0, 0.5]))
    assert data.trained_steps == 8 and not data.wants_data()
    _, _, ids = data.sample()
    assert data.trained_steps == 16 and data.wants_data()
    assert extras["importance_weights"].shape == (2,)
    assert data.max_priority == 5.0

    restored = ReplayData(PrioritizedReplay(100, seed=0), 2, 2.0, 3, 4, 2)
    restored.load_state_dict(data.state_dict())
    assert len(restored.replay) == 3
    assert (restored.inserted_steps, restored.trained_steps, restored.max_priority) == (6, 16, 5.0)

    without = ReplayData(PrioritizedReplay(100, seed=0), 2, 2.0, 3, 4, 2, checkpoint_contents=False)
    without.add(_unroll(0))
    assert "replay" not in without.state_dict()


@pytest.mark.parametrize("is_truncated", [True, False])
def test_transition_into_a_time_limit_adds_no_loss(is_truncated):
    agent = _agent(n_step=1)
    batch = _batch(agent, seed=3)
    step = agent.config.burn_in + 2  # the transition from local step 1 ends an episode here
    batch["done"][:] = False
    batch["done"][step] = True
    batch["truncated"] = batch["done"] & is_truncated
    base, _, _ = agent.compute_loss(batch)
    reward = batch["reward"].clone()
    reward[step] += 10.0  # the last reward of the cut episode (the network input is zeroed at done)
    changed, _, _ = agent.compute_loss(dict(batch, reward=reward))
    if is_truncated:
        assert changed.item() == pytest.approx(base.item(), rel=1e-6)
    else:
        assert changed.item() != pytest.approx(base.item(), rel=1e-3)


def _reference_insertion_priority(q, reward, done, action, cfg) -> float:
    """SEED RL's initial priority written as loops: n-step double-Q TD errors with the
    acting-time Q-values as both networks, then eta * max + (1 - eta) * mean of |TD|."""
    from seed_rl.agents.r2d2.value_rescaling import inverse_value_rescale, value_rescale

    def h(x):
        return float(value_rescale(torch.tensor(x, dtype=torch.float64), cfg.value_rescaling_epsilon))

    def h_inv(x):
        return float(inverse_value_rescale(torch.tensor(x, dtype=torch.float64), cfg.value_rescaling_epsilon))

    q, reward, done, action = q[cfg.burn_in:], reward[cfg.burn_in:], done[cfg.burn_in:], action[cfg.burn_in:]
    length = len(reward)
    errors = []
    for t in range(length - 1):
        m = min(cfg.n_step, length - 1 - t)
        g, scale, alive = 0.0, 1.0, True
        for k in range(1, m + 1):
            g += scale * reward[t + k]
            if done[t + k]:
                alive = False
                break
            scale *= cfg.discount
        if alive:
            greedy = int(np.argmax(q[t + m]))
            g += scale * h_inv(q[t + m][greedy])
        errors.append(abs(h(g) - q[t][action[t]]))
    return cfg.priority_eta * max(errors) + (1 - cfg.priority_eta) * float(np.mean(errors))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_insertion_priority_is_the_td_priority_of_acting_time_q_values(seed):
    agent = _agent(n_step=3, unroll_length=7, burn_in=2)
    cfg = agent.config
    rng = np.random.default_rng(seed)
    steps = cfg.sequence_length
    q = rng.normal(size=(steps, 2)).astype(np.float32) * 2
    reward = rng.normal(size=steps).astype(np.float32)
    done = rng.random(steps) < 0.2
    action = rng.integers(0, 2, steps)
    unroll = Unroll(
        steps={"observation": np.zeros((steps, 3), np.float32), "reward": reward, "done": done, "action": action},
        agent_outputs={"q": q}, initial_core_state=(np.zeros(8, np.float32),) * 2 + (np.int64(0),),
    )
    expected = _reference_insertion_priority(q, reward, done, action, cfg)
    assert agent.insertion_priority(unroll) == pytest.approx(expected, rel=1e-4)


def test_replay_data_inserts_new_sequences_at_their_td_priority():
    agent = _agent()
    replay = PrioritizedReplay(10, priority_exponent=1.0, importance_sampling_exponent=0.0, seed=0)
    data = ReplayData(replay, batch_size=1, replay_ratio=1.0, min_size=1, trained_steps_per_sequence=4,
                      new_steps_per_sequence=4, initial_priority=lambda unroll: float(unroll.steps["reward"].sum()))
    for total in (0.5, 3.0):
        reward = np.zeros(agent.config.sequence_length, np.float32)
        reward[0] = total
        steps = len(reward)
        data.add(UnrollBatch.from_unrolls([Unroll(
            steps={"observation": np.zeros((steps, 3), np.float32), "reward": reward, "done": np.zeros(steps, bool),
                   "action": np.zeros(steps, np.int64)},
            agent_outputs={}, initial_core_state=(),
        )], torch.device("cpu")))
    assert data.max_priority == 1.0  # untouched: only training results raise it
    assert replay.get_priorities([0, 1]).tolist() == pytest.approx([0.5, 3.0])  # alpha = 1
