"""DeepMind Lab adapter, level names and level cache, against the scripted stand-in.

The real engine (``deepmind_lab``, built with Bazel) is not installed here;
``tests/dmlab_standin/deepmind_lab`` implements its documented Python API and
is put on ``sys.path`` by the ``standin`` fixture (and on PYTHONPATH for the
training run).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys

import fsspec
import numpy as np
import pytest

from seed_rl.envs import EnvConfig, EnvError, EnvSpec, env_spec, make_env
from seed_rl.envs.dmlab import (
    DEFAULT_ACTION_SET,
    EVAL_MIXER_SEED,
    INSTRUCTION_LENGTH,
    INSTRUCTION_VOCABULARY,
    instruction_tokens,
    make_dmlab,
)
from seed_rl.envs.dmlab_config import DmLabConfig
from seed_rl.envs.dmlab_levels import DMLAB_30, resolve_level
from seed_rl.envs.factory import frames_per_step
from seed_rl.envs.level_cache import LevelCache, cache_path
from train_helpers import ROOT, read_metrics, train_command

STANDIN_PATH = ROOT / "tests" / "dmlab_standin"


@pytest.fixture
def standin(monkeypatch):
    """The stand-in imported as ``deepmind_lab``; removed again after the test."""
    monkeypatch.syspath_prepend(str(STANDIN_PATH))
    monkeypatch.delitem(sys.modules, "deepmind_lab", raising=False)
    module = importlib.import_module("deepmind_lab")
    assert module.STANDIN
    yield module
    sys.modules.pop("deepmind_lab", None)


def _small(**kwargs) -> DmLabConfig:
    return DmLabConfig(**{"dmlab_width": 8, "dmlab_height": 6, **kwargs})


# ----------------------------------------------------------------------------
# Actions


def test_every_action_sends_its_impala_vector_with_the_repeats(standin):
    env = make_dmlab("rooms_watermaze", seed=0, config=_small())
    lab = env.unwrapped._lab
    env.reset(seed=0)
    for action in range(9):
        env.step(action)
    assert lab.actions == [(vector, 4) for vector in DEFAULT_ACTION_SET]
    # The IMPALA set spelled out: forward, backward, strafe left/right, look
    # left/right by 20 pixels, look + forward, fire.
    assert lab.actions[0][0] == (0, 0, 0, 1, 0, 0, 0)
    assert lab.actions[4][0] == (-20, 0, 0, 0, 0, 0, 0)
    assert lab.actions[7][0] == (20, 0, 0, 1, 0, 0, 0)
    assert lab.actions[8][0] == (0, 0, 0, 0, 1, 0, 0)
    assert env.action_space.n == 9


def test_rewards_are_summed_over_the_repeated_frames(standin):
    env = make_dmlab("seekavoid_arena_01", seed=0, config=_small(dmlab_action_repeats=3))
    env.reset(seed=0)
    _, reward, *_ = env.step(0)  # forward: the stand-in pays 1 per forward frame
    assert reward == 3.0
    _, reward, *_ = env.step(1)  # backward
    assert reward == 0.0
    assert env.unwrapped._lab.actions[-1][1] == 3


def test_actions_outside_the_set_are_refused(standin):
    env = make_dmlab("rooms_watermaze", seed=0, config=_small())
    env.reset(seed=0)
    with pytest.raises(ValueError, match="outside the 9"):
        env.step(9)


# ----------------------------------------------------------------------------
# Observations and episodes


def test_observations_are_channel_first_rgb_of_the_configured_size(standin):
    env = make_dmlab("rooms_watermaze", seed=0, config=_small())
    assert env_spec(env) == EnvSpec(observation_shape=(3, 6, 8), observation_dtype="uint8", num_actions=9)
    lab = env.unwrapped._lab
    assert lab.config["width"] == "8" and lab.config["height"] == "6"
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3, 6, 8) and obs.dtype == np.uint8 and obs.flags.c_contiguous
    obs, *_ = env.step(5)  # look right: 20 px
    interleaved = lab.observations()["RGB_INTERLEAVED"]
    np.testing.assert_array_equal(obs, interleaved.transpose(2, 0, 1))
    assert (obs[0] == 4).all()  # stand-in channel 0: frames since reset (1 step x 4 repeats)
    assert (obs[1] == 128 + 20).all()  # channel 1: the last look value + 128
    assert env.observation_space.contains(obs)


def test_default_size_is_seeds_96x72():
    config = DmLabConfig()
    assert (config.dmlab_width, config.dmlab_height, config.dmlab_action_repeats) == (96, 72, 4)
    assert config.dmlab_instruction is True and config.dmlab_renderer == "software"


def test_episode_ends_when_the_engine_stops_running_and_reset_starts_a_new_one(standin):
    config = _small(dmlab_level_options="episodeLengthFrames=10")
    env = make_dmlab("rooms_watermaze", seed=0, config=config)
    lab = env.unwrapped._lab
    assert lab.config["episodeLengthFrames"] == "10"
    env.reset(seed=0)
    results = [env.step(0) for _ in range(3)]  # 4 + 4 + (2 of 4) frames
    assert [r[2] for r in results] == [False, False, True]
    assert [r[3] for r in results] == [False, False, False]  # the engine does not report time limits
    assert [r[1] for r in results] == [4.0, 4.0, 2.0]
    final = results[-1][0]
    np.testing.assert_array_equal(final, results[1][0])  # no frame after the end: the last one stands in
    assert not lab.is_running()
    obs, _ = env.reset()
    assert lab.is_running() and (obs[0] == 0).all()


def test_episodes_are_seeded_from_the_env_seed(standin):
    def seeds(env_seed, episodes=3, reseed=None):
        env = make_dmlab("rooms_watermaze", seed=env_seed, config=_small())
        env.reset(seed=reseed)
        for _ in range(episodes - 1):
            env.reset()
        return env.unwrapped._lab.reset_seeds

    assert seeds(1, reseed=7) == seeds(2, reseed=7)  # reset(seed=...) decides
    assert seeds(1) == seeds(1)
    assert seeds(1) != seeds(2)
    assert len(set(seeds(1, episodes=5))) == 5  # every episode gets its own engine seed


def test_config_reaches_the_engine_as_strings(standin):
    config = _small(
        dmlab_renderer="hardware",
        dmlab_dataset_path="/data/brady",
        dmlab_eval=True,
        dmlab_level_options="botCount=2, mapCount=3",
        dmlab_runfiles_path="/opt/dmlab",
    )
    env = make_dmlab("lt_chasm", seed=0, config=config)
    lab = env.unwrapped._lab
    assert lab.level == "lt_chasm"
    assert lab.renderer == "hardware"
    assert lab.config == {
        "width": "8", "height": "6", "logLevel": "WARN", "datasetPath": "/data/brady",
        "allowHoldOutLevels": "true", "mixerSeed": str(EVAL_MIXER_SEED), "botCount": "2", "mapCount": "3",
    }
    assert standin.runfiles_path() == "/opt/dmlab"


@pytest.mark.parametrize(
    "kwargs, text",
    [
        ({"dmlab_width": 0}, "dmlab_width"),
        ({"dmlab_action_repeats": 0}, "dmlab_action_repeats"),
        ({"dmlab_renderer": "gpu"}, "dmlab_renderer"),
        ({"dmlab_level_options": "botCount"}, "key=value"),
    ],
)
def test_bad_settings_are_one_clear_error(kwargs, text):
    with pytest.raises(EnvError, match=text):
        DmLabConfig(**kwargs)


def test_engine_errors_for_a_level_become_env_errors(standin):
    with pytest.raises(EnvError, match="could not load level 'missing/level'"):
        make_dmlab("missing/level", seed=0, config=_small())


# ----------------------------------------------------------------------------
# Instructions


def test_language_levels_return_the_instruction_in_info(standin):
    env = make_dmlab("language_select_described_object", seed=0, config=_small())
    assert env.unwrapped._lab.level == "contributed/dmlab30/language_select_described_object"
    _, info = env.reset(seed=0)
    text = info["instruction"]
    assert text in standin._INSTRUCTIONS
    tokens = info["instruction_tokens"]
    words = text.lower().replace(".", "").replace("?", "").split()
    assert tokens.dtype == np.int32 and tokens.shape == (INSTRUCTION_LENGTH,)
    assert (tokens[: len(words)] > 0).all() and (tokens[len(words):] == 0).all()
    _, _, _, _, info = env.step(0)
    assert info["instruction"] == text  # the instruction holds for the episode


def test_levels_without_instructions_give_empty_text_and_no_tokens(standin):
    env = make_dmlab("rooms_watermaze", seed=0, config=_small())
    _, info = env.reset(seed=0)
    assert info["instruction"] == "" and not info["instruction_tokens"].any()


def test_instruction_can_be_left_out(standin):
    env = make_dmlab("language_select_described_object", seed=0, config=_small(dmlab_instruction=False))
    _, info = env.reset(seed=0)
    assert info == {}
    assert env.unwrapped._lab._observation_names == ["RGB_INTERLEAVED"]


def test_instruction_tokens_are_stable_hashed_words():
    tokens = instruction_tokens("Pick the red balloon. Pick it!")
    assert tokens[0] == tokens[4]  # the same word, the same token
    assert len(set(tokens[:4].tolist())) == 4
    assert ((tokens[:6] >= 1) & (tokens[:6] < INSTRUCTION_VOCABULARY)).all() and not tokens[6:].any()
    np.testing.assert_array_equal(tokens, instruction_tokens("pick THE red balloon pick it"))
    assert (instruction_tokens(" ".join(["word"] * 40)) > 0).sum() == INSTRUCTION_LENGTH
    # Fixed across processes and runs (Python's own hash() is salted per process).
    code = "from seed_rl.envs.dmlab import instruction_tokens as t; print(t('go to the hat').tolist())"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == str(instruction_tokens("go to the hat").tolist())


# ----------------------------------------------------------------------------
# Level names


@pytest.mark.parametrize(
    "name, path",
    [
        ("rooms_watermaze", "contributed/dmlab30/rooms_watermaze"),
        ("dmlab30/rooms_watermaze", "contributed/dmlab30/rooms_watermaze"),
        ("contributed/dmlab30/rooms_watermaze", "contributed/dmlab30/rooms_watermaze"),
        ("rooms_collect_good_objects_test", "contributed/dmlab30/rooms_collect_good_objects_test"),
        ("seekavoid_arena_01", "seekavoid_arena_01"),
        ("nav_maze_static_01.lua", "nav_maze_static_01"),
        ("demos/extra_entities", "demos/extra_entities"),
    ],
)
def test_level_names(name, path):
    assert resolve_level(name) == path


def test_all_dmlab30_levels_resolve():
    assert len(DMLAB_30) == len(set(DMLAB_30)) == 30
    assert all(resolve_level(level) == f"contributed/dmlab30/{level}" for level in DMLAB_30)


@pytest.mark.parametrize(
    "name, suggestion",
    [
        ("rooms_watermze", "rooms_watermaze"),
        ("contributed/dmlab30/explore_goal_location_small", "explore_goal_locations_small"),
        ("seekavoid_arena_1", "seekavoid_arena_01"),
    ],
)
def test_misspelt_levels_suggest_the_closest(name, suggestion):
    with pytest.raises(EnvError, match=f"did you mean '{suggestion}'"):
        resolve_level(name)


def test_empty_level_is_refused():
    with pytest.raises(EnvError, match="dmlab:<level>"):
        resolve_level(" ")


# ----------------------------------------------------------------------------
# Through make_env and the flags


def test_make_env_builds_dmlab_levels_from_env_config(standin):
    config = EnvConfig(dmlab=_small(dmlab_action_repeats=2))
    env = make_env("dmlab:rooms_watermaze", seed=3, config=config)
    assert env_spec(env).observation_shape == (3, 6, 8)
    assert frames_per_step("dmlab:rooms_watermaze", config) == 2
    assert frames_per_step("atari:Pong", config) == config.frame_skip
    assert frames_per_step("CartPole-v1", config) == 1


def test_dmlab_flags_fill_the_nested_config_and_reach_the_actors():
    from absl import flags

    from seed_rl.config import roles
    from seed_rl.config.flags import dataclass_from_flags

    values = flags.FlagValues()
    roles.define_shared_flags(values)
    values(["prog", "--level_cache_dir=gs://bucket/cache", "--dmlab_width=64", "--nodmlab_instruction", "--frame_skip=2"])
    config = dataclass_from_flags(EnvConfig, values)
    assert config.frame_skip == 2
    assert config.dmlab == DmLabConfig(level_cache_dir="gs://bucket/cache", dmlab_width=64, dmlab_instruction=False)
    # What a local actor gets: the shared flags as a command line, parsed on their own.
    actor_values = roles.parse_shared_flags(roles.shared_flags_argv(values))
    assert dataclass_from_flags(EnvConfig, actor_values) == config


def test_missing_engine_says_how_to_build_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "deepmind_lab", None)  # import deepmind_lab raises ImportError
    with pytest.raises(EnvError) as raised:
        make_env("dmlab:rooms_watermaze", seed=0)
    message = str(raised.value)
    assert "\n" not in message
    assert "bazel build -c opt //python/pip_package:build_pip_package" in message
    assert "https://github.com/google-deepmind/lab/blob/master/docs/users/build.md" in message


# ----------------------------------------------------------------------------
# Level cache


def _pk3(tmp_path, content: bytes, name="level.pk3") -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


def test_local_cache_round_trip(tmp_path):
    cache = LevelCache(str(tmp_path / "cache"))
    target = str(tmp_path / "fetched.pk3")
    assert cache.fetch("key-1", target) is False
    cache.write("key-1", _pk3(tmp_path, b"compiled level"))
    assert cache.fetch("key-1", target) is True
    assert open(target, "rb").read() == b"compiled level"
    assert cache.fetch("key-2", target) is False
    stored = tmp_path / "cache" / cache_path("key-1")
    assert stored.is_file()
    assert [p.name for p in stored.parent.iterdir()] == [stored.name]  # no temporary files left
    assert (cache.hits, cache.misses, cache.writes) == (1, 2, 1)


def test_local_cache_keeps_the_first_write(tmp_path):
    cache = LevelCache(str(tmp_path / "cache"))
    cache.write("key", _pk3(tmp_path, b"first"))
    cache.write("key", _pk3(tmp_path, b"second", "other.pk3"))
    target = str(tmp_path / "out.pk3")
    assert cache.fetch("key", target) and open(target, "rb").read() == b"first"
    assert cache.writes == 1


def test_local_write_is_atomic_when_the_copy_fails(tmp_path, monkeypatch):
    cache = LevelCache(str(tmp_path / "cache"))

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    cache.write("key", _pk3(tmp_path, b"level"))  # logged, not raised: the cache is optional
    monkeypatch.undo()
    folder = (tmp_path / "cache" / cache_path("key")).parent
    assert not folder.exists() or list(folder.iterdir()) == []  # neither a torn file nor a temporary one
    assert cache.fetch("key", str(tmp_path / "out.pk3")) is False


def test_memory_filesystem_round_trip_stands_in_for_gcs(tmp_path):
    # gs:// goes through the same fsspec calls; GCS itself cannot be reached from here.
    cache = LevelCache("memory://dmlab_test_cache/levels")
    target = str(tmp_path / "fetched.pk3")
    try:
        assert cache.fetch("map-7", target) is False
        cache.write("map-7", _pk3(tmp_path, b"remote level"))
        assert fsspec.filesystem("memory").exists(f"/dmlab_test_cache/levels/{cache_path('map-7')}")
        assert cache.fetch("map-7", target) is True
        assert open(target, "rb").read() == b"remote level"
    finally:
        fsspec.filesystem("memory").rm("/dmlab_test_cache", recursive=True)


def test_two_levels_share_a_cache_and_the_second_compiles_nothing(standin, tmp_path):
    config = _small(level_cache_dir=str(tmp_path / "cache"), dmlab_level_options="mapCount=3")
    maps = [f"contributed/dmlab30/explore_goal_locations_small|map{i}" for i in range(3)]
    lab = make_dmlab("explore_goal_locations_small", seed=0, config=config).unwrapped._lab
    for seed in range(6):  # maps 0, 1, 2, 0, 1, 2
        lab.reset(seed=seed)
    assert lab.compiled == maps  # each compiled once; the second round came from the cache
    assert lab.fetched == maps
    assert len(list((tmp_path / "cache").rglob("*.pk3"))) == 3
    other = make_dmlab("explore_goal_locations_small", seed=1, config=config).unwrapped._lab
    for seed in range(3):
        other.reset(seed=seed)
    assert other.compiled == [] and other.fetched == maps


def test_corrupt_cache_entries_are_caught_by_the_engine(standin, tmp_path):
    config = _small(level_cache_dir=str(tmp_path / "cache"), dmlab_level_options="mapCount=1")
    make_dmlab("rooms_watermaze", seed=0, config=config).reset(seed=0)
    (stored,) = (tmp_path / "cache").rglob("*.pk3")
    stored.write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="corrupt"):
        make_dmlab("rooms_watermaze", seed=0, config=config).reset(seed=0)


def test_unknown_protocol_is_one_clear_error():
    with pytest.raises(EnvError, match="not a usable location"):
        LevelCache("nosuchprotocol://bucket/dir")


def test_gcs_without_gcsfs_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "gcsfs", None)
    with pytest.raises(EnvError, match=r"gcsfs.*pip install 'seed_rl\[dmlab\]'"):
        LevelCache("gs://some-bucket/dmlab_cache")


def test_gcs_location_uses_gcsfs_when_installed():
    pytest.importorskip("gcsfs", reason="gcsfs comes with pip install 'seed_rl[dmlab]'")
    # In a fresh process whose google-auth never looks for a GCE metadata server
    # (and would find only a closed loopback port): nothing leaves this machine.
    env = dict(os.environ, NO_GCE_CHECK="true", GCE_METADATA_HOST="127.0.0.1:9", GCE_METADATA_IP="127.0.0.1:9")
    code = (
        "import gcsfs\n"
        "from seed_rl.envs.level_cache import LevelCache, cache_path\n"
        "cache = LevelCache('gs://some-bucket/dmlab_cache')\n"
        "print(isinstance(cache._fs, gcsfs.GCSFileSystem), cache._path('k') == 'some-bucket/dmlab_cache/' + cache_path('k'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.stdout.split() == ["True", "True"], result.stderr[-2000:]


# ----------------------------------------------------------------------------
# Training through python -m seed_rl.train


def _run(args: list[str], with_standin: bool, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if with_standin:
        env["PYTHONPATH"] = str(STANDIN_PATH)
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def test_impala_trains_through_the_standin_with_a_level_cache(tmp_path):
    cache = tmp_path / "level_cache"
    result = _run(
        train_command(
            tmp_path / "run",
            "--env=dmlab:explore_goal_locations_small",
            "--dmlab_width=16",
            "--dmlab_height=12",
            "--dmlab_level_options=episodeLengthFrames=40,mapCount=3",
            f"--level_cache_dir={cache}",
            "--torso=impala_deep",  # 16x12 frames are too small for the CPU preset's Nature CNN
            "--num_actors=1",
            "--envs_per_actor=2",
            "--unroll_length=5",
            "--batch_size=2",
            "--total_environment_frames=400",
        ),
        with_standin=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    last = read_metrics(tmp_path / "run")[-1]
    assert last["frames"] >= 400 and last["train_steps"] > 0
    assert last["episodes"] >= 2 and last["episode_length_mean"] == 10  # 40 frames / 4 repeats
    assert 1 <= len(list(cache.rglob("*.pk3"))) <= 3
    assert list((tmp_path / "run" / "checkpoints").glob("ckpt-*.pt"))


@pytest.mark.skipif(importlib.util.find_spec("deepmind_lab") is not None, reason="a real deepmind_lab is installed")
@pytest.mark.parametrize("command", ["train", "run_local"])
def test_without_the_engine_training_stops_with_one_line(tmp_path, command):
    if command == "train":
        args = train_command(tmp_path, "--env=dmlab:rooms_watermaze")
    else:
        args = ["./run_local.sh", "dmlab", "--level=rooms_watermaze", f"--logdir={tmp_path}"]
    result = _run(args, with_standin=False, timeout=120)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: DeepMind Lab levels need the deepmind_lab module")
    assert "bazel build" in lines[0] and "docs/users/build.md" in lines[0]
    assert not (tmp_path / "checkpoints").exists()
