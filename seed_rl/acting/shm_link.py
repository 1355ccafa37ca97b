"""The actor's shared-memory link to a learner on its machine (protocol in :mod:`seed_rl.transport.shm`)."""

from __future__ import annotations

import json
import mmap
import os
import socket

import numpy as np

from seed_rl.acting.env_group import EnvGroup, StepArrays
from seed_rl.acting.settings import ActorSettings
from seed_rl.transport import shm, wire
from seed_rl.transport.errors import Refused, Unavailable


class ShmConnection:
    """The actor's end of a shared-memory connection: one handshake, then lock-step steps over shared arrays."""

    def __init__(self, sock: socket.socket, memory: mmap.mmap, arrays: dict[str, np.ndarray], hello: dict):
        self._sock = sock
        self._memory = memory
        self.arrays = arrays
        self._num_envs = hello["num_envs"]
        self._actor_id = hello["actor_id"]

    @classmethod
    def connect(cls, path: str, hello: dict, timeout_s: float = 10.0) -> "ShmConnection":
        """Connects and shakes hands. Raises ``ConnectionRefusedError``/``FileNotFoundError`` when no learner
        listens (retry), :class:`Unavailable` when the learner asks to retry later, :class:`Refused` for a
        refusal that retrying cannot fix (both from :mod:`seed_rl.transport.errors`)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sock.settimeout(timeout_s)
            sock.connect(path)
            sock.sendall(shm.HELLO + json.dumps(hello).encode())
            message, fds, _, _ = socket.recv_fds(sock, shm.MAX_CONTROL_BYTES, 1)
            sock.settimeout(None)
            if not message:
                raise ConnectionResetError("the learner closed the connection during the handshake")
            tag, body = message[:1], message[1:]
            if tag != shm.READY:
                for fd in fds:
                    os.close(fd)
                raise _learner_error(tag, body, hello["actor_id"])
            if len(fds) != 1:
                raise Refused.by_learner(hello["actor_id"], "the learner's handshake carried no shared memory")
            layout = shm.ArrayLayout.from_json(json.loads(body))
            try:
                memory = mmap.mmap(fds[0], layout.size)
            finally:
                os.close(fds[0])
            return cls(sock, memory, layout.views(memory), hello)
        except BaseException:
            sock.close()
            raise

    def send(self, episode_returns: np.ndarray, episode_lengths: np.ndarray) -> None:
        """Says the step written into ``arrays`` is ready, with the episodes it finished."""
        stats = {"episode_return": episode_returns, "episode_length": episode_lengths} if len(episode_returns) else {}
        self._sock.sendall(shm.STEP + wire.encode(stats))

    def receive(self) -> np.ndarray:
        """The learner's actions for the step sent last.

        Raises ``ConnectionResetError`` when the learner went away, :class:`Unavailable` when it is
        shutting down, :class:`Refused` when it refused the step.
        """
        reply = shm.receive(self._sock)
        if not reply:
            raise ConnectionResetError("the learner closed the connection")
        tag, body = reply[:1], reply[1:]
        if tag == shm.ACTIONS:
            actions = np.frombuffer(body, dtype="<i8")
            if actions.shape != (self._num_envs,):
                raise Refused.by_learner(
                    self._actor_id, f"the learner sent {actions.shape} actions for {self._num_envs} environments"
                )
            return actions
        raise _learner_error(tag, body, self._actor_id)

    def step(self, episode_returns: np.ndarray, episode_lengths: np.ndarray) -> np.ndarray:
        """:meth:`send` then :meth:`receive`."""
        self.send(episode_returns, episode_lengths)
        return self.receive()

    def close(self) -> None:
        self.arrays = {}
        self._sock.close()
        try:
            self._memory.close()
        except BufferError:  # a caller still holds a view; the mapping goes with it
            pass


def _learner_error(tag: bytes, body: bytes, actor_id: int | str) -> Refused | Unavailable:
    """What the learner's ``UNAVAILABLE`` (retry later) or ``REFUSED`` answer means to the actor."""
    reason = body.decode(errors="replace")
    return Unavailable(reason) if tag == shm.UNAVAILABLE else Refused.by_learner(actor_id, reason)


class _ShmLink:
    """One shared-memory connection carrying one group's steps."""

    def __init__(self, settings: ActorSettings, path: str, envs: EnvGroup):
        hello = {
            "actor_id": settings.actor_id,
            "env": settings.env_name,
            "num_envs": len(envs.envs),
            "first_env": envs.first_env,
            "token": settings.auth_token,
        }
        self._connection = ShmConnection.connect(path, hello)
        self._envs = envs

    def start(self) -> None:
        self._envs.out = StepArrays(**self._connection.arrays)
        self._envs.reset_all()
        self._connection.send(np.zeros(0, np.float32), np.zeros(0, np.int32))

    def actions(self) -> np.ndarray:
        return self._connection.receive()

    def step(self, actions: np.ndarray) -> None:
        _, returns, lengths = self._envs.step(actions)
        self._connection.send(returns, lengths)

    def close(self) -> None:
        self._envs.out = None
        self._connection.close()
