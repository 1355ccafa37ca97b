"""Old-gym-API environments through shimmy: ``--env=gym:<id>`` and ``wrap_old_gym_env``."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from seed_rl.envs import EnvError, EnvSpec, env_spec, make_env
from any_env_helpers import SMALL_IMPALA, check_run, train_with_tests_on_path

gym = pytest.importorskip("gym", reason="the gym:<id> path needs pip install 'seed_rl[shimmy]'")
pytest.importorskip("shimmy", reason="the gym:<id> path needs pip install 'seed_rl[shimmy]'")


def test_old_api_instance_is_converted_to_the_gymnasium_api():
    from old_gym_envs import OldApiCorridor
    from seed_rl.envs.old_gym import wrap_old_gym_env

    inner = OldApiCorridor(length=2)
    env = wrap_old_gym_env(inner)
    obs, info = env.reset(seed=5)
    assert info == {} and obs.tolist() == [0.0, 1.0]
    assert 5 in inner.seeds  # the seed reached the old env's seed()
    obs, reward, terminated, truncated, info = env.step(1)
    assert (reward, terminated, truncated) == (0.0, False, False) and info["position"] == 1
    obs, reward, terminated, truncated, info = env.step(1)
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert env_spec(env) == EnvSpec(observation_shape=(2,), observation_dtype="float32", num_actions=2)


def test_gym_prefix_builds_a_registered_old_api_env_and_reports_time_limits_as_truncation():
    import old_gym_envs

    env = make_env("gym:old_gym_envs:OldApiCorridor-v0", seed=0)
    assert env_spec(env) == EnvSpec(observation_shape=(2,), observation_dtype="float32", num_actions=2)
    obs, _ = env.reset(seed=1)
    assert obs.dtype == np.float32
    outcome = None
    for step in range(1, 100):
        _, _, terminated, truncated, _ = env.step(0)  # walking left never reaches the goal
        if terminated or truncated:
            outcome = (step, terminated, truncated)
            break
    assert outcome == (old_gym_envs.MAX_EPISODE_STEPS, False, True)
    env.close()


def test_gym_prefix_unknown_id_suggests_a_close_one():
    import old_gym_envs  # noqa: F401  (registers OldApiCorridor-v0)

    with pytest.raises(EnvError, match="did you mean 'OldApiCorridor-v0'"):
        make_env("gym:OldApiCoridor-v0", seed=0)


def test_gym_prefix_without_shimmy_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "shimmy", None)  # import shimmy now raises ImportError
    with pytest.raises(EnvError, match=r"pip install 'seed_rl\[shimmy\]'"):
        make_env("gym:CartPole-v1", seed=0)


def test_impala_trains_on_an_old_gym_api_env(tmp_path):
    result = train_with_tests_on_path(tmp_path, "--env=gym:old_gym_envs:OldApiCorridor-v0", *SMALL_IMPALA,
                    "--total_environment_frames=200")
    check_run(result, tmp_path, 200)
