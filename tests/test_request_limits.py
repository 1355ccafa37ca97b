"""Value checks on an actor's step, with framing from the project's own encoder and one bad value at a time."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from seed_rl.envs import EnvSpec
from seed_rl.transport import protocol

VECTOR = EnvSpec(observation_shape=(3,), observation_dtype="float32", num_actions=2)
IMAGES = EnvSpec(observation_shape=(2, 4, 4), observation_dtype="uint8", num_actions=2)


def _step(spec: EnvSpec = VECTOR, **changes) -> dict:
    step = {
        "observation": np.zeros((2, *spec.observation_shape), spec.observation_dtype),
        "reward": np.array([1.0, -2.0], np.float32),
        "done": np.array([True, False]),
    }
    step.update(changes)
    return step


def _decode(step: dict, returns=None, lengths=None, spec: EnvSpec = VECTOR, limits=protocol.DEFAULT_LIMITS):
    return protocol.decode_request(protocol.encode_request(step, returns, lengths), spec, None, limits)


def test_an_honest_step_with_its_finished_episode_passes():
    fields = _decode(_step(), np.array([21.0]), np.array([800]))
    assert fields["episode_return"].tolist() == [21.0]


@pytest.mark.parametrize("reward", [3e38, -2e7])
def test_a_reward_beyond_the_bound_is_refused_naming_the_flag(reward):
    with pytest.raises(protocol.ProtocolError, match=r"exceeds --max_abs_reward=1e\+07.*raise --max_abs_reward"):
        _decode(_step(reward=np.array([1.0, reward], np.float32)))


def test_the_bound_is_configurable():
    limits = protocol.RequestLimits(max_abs_reward=1e39)
    assert _decode(_step(reward=np.array([1.0, 3e38], np.float32)), limits=limits)["reward"][1] == np.float32(3e38)


def test_nonfinite_observations_of_float_spaces_are_refused():
    observation = np.zeros((2, 3), np.float32)
    observation[1, 2] = np.nan
    with pytest.raises(protocol.ProtocolError, match="observation contains NaN or infinity"):
        _decode(_step(observation=observation))
    observation[1, 2] = np.inf
    with pytest.raises(protocol.ProtocolError, match="observation contains NaN"):
        _decode(_step(observation=observation))
    images = np.full((2, *IMAGES.observation_shape), 255, np.uint8)  # integer images are finite by construction
    assert _decode(_step(IMAGES, observation=images), spec=IMAGES)["observation"].max() == 255


@pytest.mark.parametrize(
    "returns, lengths, message",
    [
        ([1.0, 2.0], [10, 10], "2 episodes reported, but only 1 environments' done flags are set"),
        ([np.nan], [10], "episode_return contains NaN"),
        ([np.inf], [10], "episode_return contains NaN or infinity"),
        ([1.0], [0], "episode_length must be at least 1"),
        ([1e9], [10], "exceeds its length times --max_abs_reward"),
    ],
)
def test_episode_statistics_must_be_finite_and_match_the_step(returns, lengths, message):
    with pytest.raises(protocol.ProtocolError, match=message):
        _decode(_step(), np.array(returns, np.float32), np.array(lengths, np.int32))


def test_four_million_fake_episodes_in_one_step_are_refused():
    many = 4_000_000
    with pytest.raises(protocol.ProtocolError, match="4000000 episodes reported"):
        _decode(_step(), np.zeros(many, np.float32), np.ones(many, np.int32))


def test_more_environments_than_the_run_allows_are_refused_naming_the_flag():
    limits = protocol.RequestLimits(max_envs_per_stream=2)
    assert _decode(_step(), limits=limits)["observation"].shape[0] == 2
    many = _step(observation=np.zeros((100_000, 3), np.float32), reward=np.zeros(100_000, np.float32),
                 done=np.zeros(100_000, bool))
    with pytest.raises(protocol.ProtocolError, match=r"100000 environments; this learner accepts 1 to 2 per stream "
                                                     r"\(--max_envs_per_stream"):
        _decode(many, limits=limits)


@pytest.mark.parametrize("field", ["done", "truncated", "life_lost"])
@pytest.mark.parametrize("byte", [2, 9, 255])
def test_a_bool_field_holding_a_byte_other_than_0_or_1_is_refused(field, byte):
    """Over gRPC a bool array is a view of the request's bytes, so a byte of 2 once reached the learner as True."""
    flags = np.zeros(2, np.uint8)
    flags[0] = byte
    step = _step(**{field: flags.view(bool)})
    if field == "truncated":
        step["done"] = np.array([True, True])  # the one other check on truncated
    with pytest.raises(protocol.ProtocolError, match=rf"{field} must hold 0 or 1 \(a bool field\), got a byte of {byte}"):
        _decode(step)


class _CallError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str):
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def test_an_actor_whose_requests_are_too_large_is_told_which_flag_to_change():
    from seed_rl.acting.grpc_link import learner_error
    from seed_rl.transport.errors import Refused, Unavailable

    too_large = learner_error(3, _CallError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                            "SERVER: Received message larger than max (2100097 vs. 66176)"))
    assert isinstance(too_large, Refused)
    assert "learner refused actor 3" in str(too_large) and "--max_envs_per_stream" in str(too_large)
    other = learner_error(3, _CallError(grpc.StatusCode.RESOURCE_EXHAUSTED, "Concurrent RPC limit exceeded"))
    assert isinstance(other, Unavailable)  # a full learner: retry
