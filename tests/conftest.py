"""Shared helpers for the learner-core tests: a fake agent, a real learner server, a raw client."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import grpc
import numpy as np
import pytest
import torch

from seed_rl.transport import protocol
from seed_rl.core.agent import ActInputs, ActResult
from seed_rl.core.batcher import DynamicBatcher
from seed_rl.core.unroll import Unroll, UnrollShape
from seed_rl.learner.inference import InferenceEngine
from seed_rl.learner.serving import InferenceService
from seed_rl.transport.security import ClientSecurity
from seed_rl.transport.grpc_server import LearnerServer
from seed_rl.transport.shm_server import ShmLearnerServer
from seed_rl.envs import EnvSpec

FAKE_ENV = "FakeEnv-v0"
FAKE_SPEC = EnvSpec(observation_shape=(3,), observation_dtype="float32", num_actions=5)


class CountingAgent:
    """A model-free agent whose actions can be predicted by the client.

    Its recurrent state is one int64 per environment: the number of steps since
    the episode started (``done`` resets it). The action is
    ``int(observation[:, 0]) * 1000 + counter``, so each environment's action
    depends on its own observation and on the state the learner kept for it.
    With ``num_actions`` the action is taken modulo it, and ``fixed_action``
    replaces it (for real environments).
    """

    device = torch.device("cpu")

    def __init__(self, num_actions: int | None = None, fixed_action: int | None = None):
        self.num_actions = num_actions
        self.fixed_action = fixed_action
        self.act_batch_sizes: list[int] = []
        self.env_indices: set[int] = set()

    def initial_core_state(self, batch_size: int) -> tuple[torch.Tensor, ...]:
        return (torch.zeros(batch_size, dtype=torch.int64),)

    def act(self, inputs: ActInputs, core_state) -> ActResult:
        observation, done = inputs.observation, inputs.done
        self.act_batch_sizes.append(observation.shape[0])
        self.env_indices.update(inputs.env_index.tolist())
        (steps,) = core_state
        counter = torch.where(done, torch.zeros_like(steps), steps) + 1
        action = observation[:, 0].to(torch.int64) * 1000 + counter
        if self.num_actions:
            action = action % self.num_actions
        if self.fixed_action is not None:
            action = torch.full_like(action, self.fixed_action)
        return ActResult(action, {"counter": counter.clone()}, (counter,))

    def train_step(self, batch: dict, params_lock: threading.Lock) -> dict[str, float]:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


@dataclass
class LearnerHarness:
    """A real LearnerServer in front of the learner's InferenceService (InferenceEngine, DynamicBatcher) around a
    fake agent; its servers are built here, with the knobs transport tests turn."""

    server: LearnerServer
    batcher: DynamicBatcher
    engine: InferenceEngine
    agent: CountingAgent
    unrolls: list[Unroll] = field(default_factory=list)
    episodes: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    shm_server: ShmLearnerServer | None = None
    stopped: bool = False

    @property
    def address(self) -> str:
        return self.server.address

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            if self.shm_server is not None:
                self.shm_server.stop()
            self.server.stop(grace_s=0.2)
            self.batcher.close()


def start_learner(
    *,
    address: str = "127.0.0.1:0",
    spec: EnvSpec = FAKE_SPEC,
    env_name: str = FAKE_ENV,
    batch_size: int = 64,
    timeout_s: float = 0.002,
    unroll: UnrollShape = UnrollShape(5),
    agent: CountingAgent | None = None,
    serve_shm: bool = False,
    shm_kwargs: dict | None = None,
    **server_kwargs,
) -> LearnerHarness:
    agent = agent or CountingAgent()
    unrolls: list[Unroll] = []
    episodes: list = []
    batch_sizes: list[int] = []
    engine = InferenceEngine(agent, unroll, lambda batch: unrolls.extend(batch.unrolls()), threading.Lock())
    service = InferenceService(engine, env_name, batch_size, timeout_s, on_batch=batch_sizes.append,
                               on_episodes=lambda r, l: episodes.append((r.copy(), l.copy())))
    streams = service.streams
    try:
        server = LearnerServer(address, spec, streams, **server_kwargs)
    except BaseException:
        service.close()
        raise
    server.start()
    shm_server = None
    if serve_shm:
        token = server.security.auth_token
        shm_server = ShmLearnerServer(server.port, spec, streams, auth_token=token, **(shm_kwargs or {}))
        shm_server.start()
    return LearnerHarness(server, service.batcher, engine, agent, unrolls, episodes, batch_sizes, shm_server)


@pytest.fixture
def learner():
    """Factory fixture: ``learner(**kwargs)`` starts a LearnerHarness, stopped at teardown."""
    made: list[LearnerHarness] = []

    def make(**kwargs) -> LearnerHarness:
        harness = start_learner(**kwargs)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.stop()


class Client:
    """One raw actor stream: send a request, wait for its reply (lock-step, like the actor)."""

    def __init__(
        self,
        address: str,
        env_name: str | None = FAKE_ENV,
        actor_id: str = "test",
        timeout_s: float = 60.0,
        security: ClientSecurity | None = None,
    ):
        security = security or ClientSecurity()
        self.channel = security.channel(address, [])
        call = self.channel.stream_stream(
            protocol.FULL_METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        self._outbox: queue.Queue = queue.Queue()
        metadata = [(protocol.ACTOR_ID_KEY, actor_id), *security.metadata()]
        if env_name is not None:
            metadata.append((protocol.ENV_KEY, env_name))
        self.responses = call(self._requests(), metadata=tuple(metadata), timeout=timeout_s)

    def _requests(self):
        while True:
            item = self._outbox.get()
            if item is None:
                return
            yield item

    def send(self, data: bytes) -> np.ndarray:
        """Sends one raw request and returns the decoded actions; raises grpc.RpcError on failure."""
        self._outbox.put(data)
        return protocol.decode_reply(next(self.responses))

    def step(self, observation, reward, done, episode_return=None, episode_length=None) -> np.ndarray:
        return self.send(protocol.encode_request(
            {"observation": observation, "reward": reward, "done": done}, episode_return, episode_length
        ))

    def close(self) -> None:
        """Ends the request stream (a clean disconnect) and waits for the server to finish."""
        self._outbox.put(None)
        try:
            for _ in self.responses:
                pass
        except grpc.RpcError:
            pass
        self.channel.close()

    def abort(self) -> None:
        """Disconnects without ending the stream, like an actor that crashed."""
        self.responses.cancel()
        self.channel.close()


def wait_for(predicate: Callable[[], bool], timeout_s: float = 20.0, interval_s: float = 0.01, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}")
        time.sleep(interval_s)
