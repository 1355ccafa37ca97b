"""The actor's shared-memory link to a learner on its machine (protocol in :mod:`seed_rl.transport.shm`).

:class:`ShmConnection` is the actor's end of one connection; the link steps an
:class:`~seed_rl.acting.env_group.EnvGroup` straight into its shared arrays and
reports what goes wrong as :class:`~seed_rl.transport.errors.Refused` or
:class:`~seed_rl.transport.errors.Unavailable`, as the gRPC link does.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import socket
from typing import Iterator

import numpy as np

from seed_rl.acting.env_group import EnvGroup
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


@contextlib.contextmanager
def _transport_errors() -> Iterator[None]:
    """A lost socket (``OSError``) as :class:`Unavailable`; shared memory that cannot work here as :class:`Refused`."""
    try:
        yield
    except shm.ShmError as e:
        raise Refused(str(e)) from None
    except OSError as e:
        raise Unavailable(str(e)) from None


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
        with _transport_errors():
            self._connection = ShmConnection.connect(path, hello)
        self._envs = envs

    def start(self) -> None:
        self._envs.out = self._connection.arrays
        self._envs.reset_all()
        with _transport_errors():
            self._connection.send(np.zeros(0, np.float32), np.zeros(0, np.int32))

    def actions(self) -> np.ndarray:
        with _transport_errors():
            return self._connection.receive()

    def step(self, actions: np.ndarray) -> None:
        _, returns, lengths = self._envs.step(actions)
        with _transport_errors():
            self._connection.send(returns, lengths)

    def close(self) -> None:
        self._envs.out = None
        self._connection.close()


class ShmConnector:
    """Connects each group over shared memory to the learner on this machine whose port the address names."""

    def __init__(self, settings: ActorSettings):
        with _transport_errors():
            shm.check_available()
            self._path = shm.socket_path(shm.port_of(settings.learner_address))
        self._settings = settings
        self.where = f"{self._path} (shared memory)"

    def connect(self, groups: list[EnvGroup], wait_s: float, opened: contextlib.ExitStack) -> list[_ShmLink]:
        """Raises :class:`Unavailable` while no learner listens here (a listening one answers at once, so
        ``wait_s`` goes unused), :class:`Refused` if the learner refuses this actor."""
        del wait_s
        links = []
        try:
            for envs in groups:
                links.append(_ShmLink(self._settings, self._path, envs))
                opened.callback(links[-1].close)
        except Unavailable as e:
            raise Unavailable(
                f"{e}; --transport=shm reaches a learner on this machine only, use --transport=grpc for another"
            ) from None
        return links
