"""MinAtar games through ``make_env('minatar:<Game>')``, the MinAtar torso and a training smoke run."""

from __future__ import annotations

import sys

import gymnasium
import numpy as np
import pytest
import torch

from seed_rl.envs import EnvError, env_spec, make_env
from seed_rl.envs.minatar import GAMES, make_minatar
from seed_rl.networks.torsos import ImpalaDeepTorso, MinAtarTorso, make_torso

pytest.importorskip("minatar", reason="minatar is not installed (pip install -e '.[minatar]')")

# Channels (object planes) and minimal action set sizes of minatar 1.0.15's games.
EXPECTED = {
    "Asterix": (4, 5),
    "Breakout": (4, 3),
    "Freeway": (7, 3),
    "Seaquest": (10, 6),
    "SpaceInvaders": (6, 4),
}


def _check_observation(obs: np.ndarray, channels: int) -> None:
    assert obs.shape == (channels, 10, 10)
    assert obs.dtype == np.uint8
    assert set(np.unique(obs)) <= {0, 255}


@pytest.mark.parametrize("game", GAMES)
def test_each_game_gives_channel_first_0_255_planes(game):
    channels, num_actions = EXPECTED[game]
    env = make_env(f"minatar:{game}", seed=3)
    assert env.observation_space == gymnasium.spaces.Box(0, 255, (channels, 10, 10), np.uint8)
    obs, _ = env.reset(seed=3)
    _check_observation(obs, channels)
    assert obs.any()  # every game shows at least the player at the start
    for _ in range(20):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        _check_observation(obs, channels)
        assert env.observation_space.contains(obs)
        if terminated or truncated:
            obs, _ = env.reset()
    spec = env_spec(env)
    assert spec.observation_shape == (channels, 10, 10)
    assert spec.observation_dtype == "uint8"
    assert spec.num_actions == num_actions


@pytest.mark.parametrize("spelling", ["Breakout", "breakout", "BREAKOUT", "breakOut"])
def test_breakout_spellings(spelling):
    assert make_minatar(spelling, 0).spec.id == "MinAtar/Breakout-v1"


@pytest.mark.parametrize("spelling", ["SpaceInvaders", "space_invaders", "Space_Invaders", "spaceinvaders"])
def test_space_invaders_spellings(spelling):
    assert make_minatar(spelling, 0).spec.id == "MinAtar/SpaceInvaders-v1"


def test_observation_is_the_transposed_minatar_state_times_255():
    env = make_minatar("Seaquest", seed=5)
    obs, _ = env.reset(seed=5)
    for step in range(30):
        state = env.unwrapped.game.state()
        assert state.dtype == np.bool_ and state.shape == (10, 10, 10)
        np.testing.assert_array_equal(obs, state.transpose(2, 0, 1).astype(np.uint8) * 255)
        assert obs.flags.c_contiguous
        obs, _, terminated, _, _ = env.step(step % env.action_space.n)
        if terminated:
            obs, _ = env.reset()


def _rollout(game: str, seed: int, steps: int = 60, *, reset_seed: bool = True):
    env = make_minatar(game, seed)
    obs, _ = env.reset(seed=seed) if reset_seed else env.reset()
    observations, rewards = [obs], []
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        observations.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            obs, _ = env.reset()
            observations.append(obs)
    return np.stack(observations), np.array(rewards)


@pytest.mark.parametrize("game", ["Asterix", "Breakout", "SpaceInvaders"])
def test_same_seed_same_episode(game):
    first_obs, first_rewards = _rollout(game, seed=11)
    again_obs, again_rewards = _rollout(game, seed=11)
    np.testing.assert_array_equal(first_obs, again_obs)
    np.testing.assert_array_equal(first_rewards, again_rewards)
    # Without reset(seed=...), the first reset uses the seed given to make_minatar.
    unseeded_obs, unseeded_rewards = _rollout(game, seed=11, reset_seed=False)
    np.testing.assert_array_equal(first_obs, unseeded_obs)
    np.testing.assert_array_equal(first_rewards, unseeded_rewards)


def test_different_seeds_differ():
    # Asterix spawns enemies at random rows and sides from the first steps.
    assert not np.array_equal(_rollout("Asterix", seed=1)[0], _rollout("Asterix", seed=2)[0])


def test_unknown_game_is_a_clear_error():
    with pytest.raises(EnvError, match="did you mean 'Breakout'") as info:
        make_env("minatar:Breakot", seed=0)
    assert "unknown MinAtar game 'Breakot'" in str(info.value)
    for game in GAMES:
        assert game in str(info.value)
    with pytest.raises(EnvError, match="unknown MinAtar game 'Pong'"):
        make_env("minatar:Pong", seed=0)


def test_raw_minatar_id_points_to_the_prefix():
    with pytest.raises(EnvError, match="minatar:Breakout"):
        make_env("MinAtar/Breakout-v1", seed=0)


def test_missing_minatar_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "minatar.gym", None)  # makes "import minatar.gym" fail
    with pytest.raises(EnvError, match=r"pip install 'seed_rl\[minatar\]'"):
        make_minatar("Breakout", 0)


def test_auto_torso_is_the_minatar_network():
    torso = make_torso("auto", (4, 10, 10), "uint8")
    assert isinstance(torso, MinAtarTorso)
    assert [type(m) for m in torso.modules()].count(torch.nn.Conv2d) == 1
    assert torso.conv.out_channels == 16 and torso.conv.kernel_size == (3, 3) and torso.conv.stride == (1, 1)
    assert torso.output_size == 128 and torso.fc.in_features == 16 * 8 * 8
    batch = torch.randint(0, 2, (5, 4, 10, 10), dtype=torch.uint8) * 255
    features = torso(batch)
    assert features.shape == (5, 128)
    assert (features >= 0).all()
    assert isinstance(make_torso("minatar", (7, 10, 10), "uint8"), MinAtarTorso)
    # Other image sizes keep the IMPALA network.
    assert isinstance(make_torso("auto", (4, 84, 84), "uint8"), ImpalaDeepTorso)
    assert isinstance(make_torso("auto", (4, 10, 12), "uint8"), ImpalaDeepTorso)


def test_auto_torso_runs_on_real_observations():
    env = make_env("minatar:Freeway", seed=0)
    obs, _ = env.reset(seed=0)
    spec = env_spec(env)
    torso = make_torso("auto", spec.observation_shape, spec.observation_dtype)
    assert torso(torch.from_numpy(np.stack([obs, obs]))).shape == (2, torso.output_size)
