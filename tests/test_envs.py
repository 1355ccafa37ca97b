"""Tests for seed_rl.envs: names, spaces, Atari preprocessing."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import gymnasium
import numpy as np
import pytest

from seed_rl.envs import EnvConfig, EnvError, EnvSpec, env_spec, make_env, probe_spec


# ----------------------------------------------------------------------------
# Config


def test_config_defaults_follow_seed_rl():
    config = EnvConfig()
    assert config.frame_skip == 4
    assert config.screen_size == 84
    assert config.grayscale is True
    assert config.noop_max == 30
    assert config.frame_stack == 4
    assert config.sticky_action_prob == 0.0
    assert config.full_action_space is False
    assert config.max_episode_frames == 108_000
    assert config.terminal_on_life_loss is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.frame_skip = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs, text",
    [
        ({"frame_skip": 0}, "frame_skip"),
        ({"frame_stack": 0}, "frame_stack"),
        ({"sticky_action_prob": 1.5}, "sticky_action_prob"),
        ({"noop_max": -1}, "noop_max"),
    ],
)
def test_config_rejects_bad_values(kwargs, text):
    with pytest.raises(EnvError, match=text):
        EnvConfig(**kwargs)


# ----------------------------------------------------------------------------
# gymnasium ids


def test_cartpole_spec():
    env = make_env("CartPole-v1", seed=0)
    spec = env_spec(env)
    assert spec == EnvSpec(observation_shape=(4,), observation_dtype="float32", num_actions=2)
    obs, _ = env.reset(seed=0)
    assert isinstance(obs, np.ndarray) and obs.dtype == np.float32 and obs.shape == (4,)
    obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert obs.dtype == np.float32
    env.close()


def test_float64_observations_become_float32():
    # Gymnasium's classic-control Boxes are float32; build a float64 one by hand.
    inner = gymnasium.wrappers.TransformObservation(
        gymnasium.make("CartPole-v1"),
        lambda o: o.astype(np.float64),
        gymnasium.spaces.Box(-np.inf, np.inf, (4,), np.float64),
    )
    from seed_rl.envs.gymnasium_ids import Float32Observation

    wrapped = Float32Observation(inner)
    obs, _ = wrapped.reset(seed=1)
    assert obs.dtype == np.float32
    assert wrapped.observation_space.dtype == np.float32
    assert env_spec(wrapped).observation_dtype == "float32"
    wrapped.close()


def test_action_space_is_seeded():
    a = make_env("CartPole-v1", seed=3)
    b = make_env("CartPole-v1", seed=3)
    assert [a.action_space.sample() for _ in range(20)] == [
        b.action_space.sample() for _ in range(20)
    ]


def test_unknown_id_suggests_close_match():
    with pytest.raises(EnvError) as info:
        make_env("CartPol-v1", seed=0)
    message = str(info.value)
    assert "unknown environment id 'CartPol-v1'" in message
    assert "did you mean 'CartPole-v1'?" in message
    assert "atari:<Game>" in message and "atari:Pong" in message
    assert "\n" not in message


def test_box_action_space_is_rejected():
    env = make_env("Pendulum-v1", seed=0)
    with pytest.raises(EnvError) as info:
        env_spec(env)
    message = str(info.value)
    assert message.startswith("action space Box(")
    assert "of 'Pendulum-v1' is not supported" in message
    assert "Discrete action space" in message
    env.close()


def test_discrete_observation_space_suggests_one_hot():
    env = make_env("FrozenLake-v1", seed=0)
    with pytest.raises(EnvError, match="OneHotObservation"):
        env_spec(env)
    from seed_rl.envs.factory import OneHotObservation

    wrapped = OneHotObservation(env)
    assert env_spec(wrapped) == EnvSpec((16,), "float32", 4)
    obs, _ = wrapped.reset(seed=0)
    assert obs.dtype == np.float32 and obs.sum() == 1.0 and obs[0] == 1.0
    env.close()


def test_integer_box_observations_are_rejected():
    env = gymnasium.wrappers.TransformObservation(
        gymnasium.make("CartPole-v1"),
        lambda o: o.astype(np.int64),
        gymnasium.spaces.Box(-10, 10, (4,), np.int64),
    )
    with pytest.raises(EnvError, match="uint8 or float"):
        env_spec(env)


# ----------------------------------------------------------------------------
# Atari


@pytest.fixture(scope="module")
def pong():
    pytest.importorskip("ale_py")
    pytest.importorskip("cv2")
    env = make_env("atari:Pong", seed=0)
    yield env
    env.close()


def test_pong_spec(pong):
    # Actors send single frames; the learner stacks --frame_stack of them (tests/test_frame_stacking.py).
    assert env_spec(pong) == EnvSpec((1, 84, 84), "uint8", 6)
    assert pong.observation_space.shape == (1, 84, 84)
    assert pong.observation_space.dtype == np.uint8
    spec = probe_spec("atari:Pong")
    assert spec == EnvSpec((1, 84, 84), "uint8", 6, frame_stack=4)
    assert spec.model_observation_shape == (4, 84, 84)
    assert probe_spec("atari:Pong", config=EnvConfig(frame_stack=1)).model_observation_shape == (1, 84, 84)


def test_pong_steps_and_resets(pong):
    obs, info = pong.reset(seed=0)
    assert obs.shape == (1, 84, 84) and obs.dtype == np.uint8
    assert info["lives"] >= 0
    first = obs
    changed = False
    for _ in range(60):
        obs, reward, terminated, truncated, _ = pong.step(pong.action_space.sample())
        assert obs.shape == (1, 84, 84) and obs.dtype == np.uint8
        assert reward in (-1.0, 0.0, 1.0)
        assert not truncated
        changed |= not np.array_equal(obs, first)
        if terminated:
            break
    assert changed, "Pong's screen never changed over 60 random steps"


def test_pong_noop_start_is_deterministic_per_seed():
    pytest.importorskip("ale_py")
    config = EnvConfig(noop_max=30)
    a = make_env("atari:Pong", seed=7, config=config)
    b = make_env("atari:Pong", seed=7, config=config)
    obs_a, _ = a.reset(seed=123)
    obs_b, _ = b.reset(seed=123)
    np.testing.assert_array_equal(obs_a, obs_b)
    for _ in range(5):
        action = a.action_space.sample()
        assert action == b.action_space.sample()
        obs_a, *_ = a.step(action)
        obs_b, *_ = b.step(action)
        np.testing.assert_array_equal(obs_a, obs_b)
    a.close()
    b.close()


@pytest.mark.parametrize(
    "name",
    ["Pong", "pong", "PONG", "PongNoFrameskip-v4", "ALE/Pong-v5", "atari:Pong"],
)
def test_game_name_spellings(name):
    pytest.importorskip("ale_py")
    from seed_rl.envs.atari import canonical_game_name

    assert canonical_game_name(name) == "Pong"


def test_snake_case_game_name():
    pytest.importorskip("ale_py")
    from seed_rl.envs.atari import canonical_game_name

    assert canonical_game_name("space_invaders") == "SpaceInvaders"
    assert canonical_game_name("MontezumaRevenge") == "MontezumaRevenge"
    env = make_env("atari:space_invaders", seed=0)
    assert env_spec(env) == EnvSpec((1, 84, 84), "uint8", 6)
    env.close()


def test_unknown_game_suggests_close_match():
    pytest.importorskip("ale_py")
    with pytest.raises(EnvError) as info:
        make_env("atari:Pongg", seed=0)
    message = str(info.value)
    assert message.startswith("unknown Atari game 'Pongg' (did you mean 'Pong'")
    assert "python -m seed_rl.envs.atari lists them" in message
    assert "\n" not in message and len(message) < 200, message


def test_the_game_listing_names_every_game_make_env_accepts():
    pytest.importorskip("ale_py")
    from seed_rl.envs.atari import canonical_game_name

    listing = subprocess.run(
        [sys.executable, "-m", "seed_rl.envs.atari"], capture_output=True, text=True, timeout=120, check=True
    ).stdout.split()
    assert len(listing) > 50 and {"Pong", "Breakout", "SpaceInvaders", "MontezumaRevenge"} <= set(listing)
    assert all(canonical_game_name(game) == game for game in listing)


def test_raw_ale_id_points_to_atari_prefix():
    pytest.importorskip("ale_py")
    with pytest.raises(EnvError, match="atari:Pong"):
        make_env("ALE/Pong-v5", seed=0)
    with pytest.raises(EnvError, match="atari:Breakout"):
        make_env("BreakoutNoFrameskip-v4", seed=0)


def test_rgb_frames_are_channel_first():
    pytest.importorskip("ale_py")
    config = EnvConfig(grayscale=False, frame_stack=2, noop_max=0)
    env = make_env("atari:Pong", seed=0, config=config)
    assert env_spec(env, frame_stack=2) == EnvSpec((3, 84, 84), "uint8", 6, frame_stack=2)
    assert env_spec(env, frame_stack=2).model_observation_shape == (6, 84, 84)
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        obs, *_ = env.step(0)
    assert obs.shape == (3, 84, 84) and obs.dtype == np.uint8
    # Pong's playfield is orange-brown (144, 72, 17): channels come as R, G, B.
    np.testing.assert_array_equal(obs[:, 42, 42], [144, 72, 17])
    env.close()


def test_missing_ale_py_is_explained(monkeypatch):
    import sys

    from seed_rl.envs import atari

    atari._known_games.cache_clear()
    monkeypatch.setitem(sys.modules, "ale_py", None)  # makes `import ale_py` fail
    try:
        with pytest.raises(EnvError, match=r"pip install 'seed_rl\[atari\]'"):
            make_env("atari:Pong", seed=0)
    finally:
        atari._known_games.cache_clear()


def test_module_prefixed_id_imports_the_registering_module(tmp_path, monkeypatch):
    (tmp_path / "my_envs_pkg.py").write_text(
        "import gymnasium\n"
        "gymnasium.register('MyCartPole-v0', entry_point='gymnasium.envs.classic_control:CartPoleEnv')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    env = make_env("my_envs_pkg:MyCartPole-v0", seed=0)
    assert env_spec(env).num_actions == 2
    with pytest.raises(EnvError, match="could not import 'no_such_module_xyz'"):
        make_env("no_such_module_xyz:Foo-v0", seed=0)


def test_env_names_are_parsed_into_families():
    from seed_rl.envs.families import GYMNASIUM, parse_env_name

    cases = {
        "atari:Pong": ("atari", "Pong"),
        "minatar:Breakout": ("minatar", "Breakout"),
        "football:academy_empty_goal_close": ("football", "academy_empty_goal_close"),
        "dmlab:rooms_watermaze": ("dmlab", "rooms_watermaze"),
        "gym:CartPole-v1": ("gym", "CartPole-v1"),
    }
    for env_name, (family, rest) in cases.items():
        parsed, name = parse_env_name(env_name)
        assert (parsed.name, name) == (family, rest), env_name
    assert parse_env_name("odd_envs:OddVector1-v0") == (GYMNASIUM, "odd_envs:OddVector1-v0")
    assert parse_env_name("CartPole-v1")[0].preset_family((4,)) == "vector"
    assert parse_env_name("gym:CartPole-v1")[0].preset_family((1, 8, 8)) == "other"
    assert parse_env_name("minatar:Breakout")[0].preset_family((10, 10, 4)) == "minatar"
    config = EnvConfig()
    assert parse_env_name("atari:Pong")[0].observation_layout(config) == ("gray" if config.grayscale else "rgb")
    assert parse_env_name("CartPole-v1")[0].observation_layout(config) is None
