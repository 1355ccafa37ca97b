"""A lost life ends the episode in training where the agent asks for it (IMPALA on Atari, Table G.1),
while the episode returns in the logs and in evaluation count whole games."""

from __future__ import annotations

import threading

import numpy as np
import torch

from seed_rl.acting.env_group import EnvGroup
from seed_rl.acting.settings import ActorSettings
from seed_rl.agents import registry
from seed_rl.agents.impala.config import ImpalaConfig
from seed_rl.core.step import StepRequest
from seed_rl.envs import EnvConfig, EnvSpec
from seed_rl.evaluation.play import play
from seed_rl.learner.inference import InferenceEngine
from seed_rl.core.unroll import UnrollShape

import lives_env  # noqa: F401  (registers Lives-v0)

ENV = "lives_env:Lives-v0"


def test_the_actor_reports_each_lost_life_and_whole_game_returns():
    group = EnvGroup(ActorSettings("unused", ENV, EnvConfig(), envs_per_actor=2), range(2))
    out = group.reset_all()
    assert not out["life_lost"].any()
    lost, done, returns = [], [], []
    for _ in range(12):
        out, finished_returns, _ = group.step(np.zeros(2, np.int64))
        lost.append(out["life_lost"].copy())
        done.append(out["done"].copy())
        returns.extend(finished_returns)
    lost, done = np.array(lost)[:, 0], np.array(done)[:, 0]
    # Lives are lost after steps 4 and 8; the game ends after step 12 (done, not a life loss).
    assert lost.nonzero()[0].tolist() == [3, 7]
    assert done.nonzero()[0].tolist() == [11]
    assert returns == [12.0, 12.0]  # whole games
    group.close()


def _engine(life_loss_ends_episode: bool):
    spec = EnvSpec((2,), "float32", 2)
    built = registry.build("impala", ImpalaConfig(unroll_length=20, torso="mlp"), spec, torch.device("cpu"),
                           registry.RunShape(total_environment_frames=10**6, frames_per_step=1, total_envs=1))
    assert built.unroll.life_loss_ends_episode  # IMPALA's default (Table G.1)
    unrolls, seen = [], []
    act = built.agent.act

    def spying_act(inputs, state):
        seen.append(bool(inputs.done[0]))
        return act(inputs, state)

    built.agent.act = spying_act
    unroll = UnrollShape(21, overlap=1, life_loss_ends_episode=life_loss_ends_episode)
    engine = InferenceEngine(built.agent, unroll, unrolls.append, threading.Lock())
    return engine, unrolls, seen


def _feed(engine) -> None:
    group = EnvGroup(ActorSettings("unused", ENV, EnvConfig(), envs_per_actor=1), range(1))
    out = group.reset_all()
    for _ in range(21):
        actions = engine([StepRequest(0, 0, {k: v.copy() for k, v in out.items()})])[0]
        out, _, _ = group.step(actions)
    group.close()


def test_the_learner_ends_training_episodes_at_a_lost_life_when_the_agent_asks():
    engine, unrolls, seen = _engine(life_loss_ends_episode=True)
    _feed(engine)
    # Step 0 starts the game; lives are lost before steps 4 and 8; the game ends before step 12.
    starts = [0, 4, 8, 12, 16, 20]
    assert [t for t, d in enumerate(seen) if d] == starts
    assert unrolls[0].steps["done"][:, 0].nonzero().flatten().tolist() == starts


def test_without_it_only_whole_games_end_episodes():
    engine, unrolls, seen = _engine(life_loss_ends_episode=False)
    _feed(engine)
    assert [t for t, d in enumerate(seen) if d] == [0, 12]
    assert unrolls[0].steps["life_lost"][:, 0].nonzero().flatten().tolist() == [4, 8, 16, 20]


def test_evaluation_counts_whole_games_and_resets_the_agent_where_training_did():
    import gymnasium

    spec = EnvSpec((2,), "float32", 2)
    for ends in (True, False):
        agent = registry.build_for_evaluation("impala", ImpalaConfig(torso="mlp"), spec, torch.device("cpu"), 0.0)
        seen = []
        act = agent.act

        def spying_act(inputs, state, act=act, seen=seen):
            seen.append(bool(inputs.done[0]))
            return act(inputs, state)

        agent.act = spying_act
        env = gymnasium.make("Lives-v0")
        episodes = play(agent, env, 2, seed=0, life_loss_ends_episode=ends)
        assert [e.episode_return for e in episodes] == [12.0, 12.0]
        assert [t for t, d in enumerate(seen) if d] == ([0, 4, 8, 12, 16, 20] if ends else [0, 12])
