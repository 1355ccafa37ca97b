"""Shared-memory transport for actors on the learner's machine (Linux).

gRPC over loopback copies every observation several times (encode, HTTP/2
frames, decode) and wakes several threads per step. Actors on the learner's
machine can instead write their step straight into memory the learner reads,
as Sample Factory's workers do. This module holds what both ends share; the
learner's end is :mod:`seed_rl.transport.shm_server`, the actor's
:mod:`seed_rl.acting.shm_link`. The protocol keeps gRPC's semantics:

- **Connection.** A Unix ``SOCK_SEQPACKET`` socket at :func:`socket_path` for
  the learner's gRPC port, inside a directory only this user can enter. The
  kernel tells each side at once when the other process dies (the socket
  reads end-of-file), so the learner frees a dead actor's environments and
  an actor reconnects to a restarted learner.
- **Handshake.** The actor sends ``HELLO`` with a JSON body (actor id, env,
  environments, the global index of its first environment, token). The learner answers ``READY`` with the array layout,
  passing a ``memfd`` holding the arrays alongside (``SCM_RIGHTS``), or
  ``REFUSED``/``UNAVAILABLE`` with the reason (on both sides
  :class:`~seed_rl.transport.errors.Refused`/:class:`~seed_rl.transport.errors.Unavailable`).
  The memory has no name, so nothing is left behind when either side is killed.
- **Steps.** The actor writes every field of the step
  (:data:`seed_rl.core.step.STEP_FIELDS`) into the shared arrays and sends
  ``STEP`` followed by a :mod:`seed_rl.transport.wire` message with the finished
  episodes' ``episode_return``/``episode_length`` (possibly none). The
  learner validates the step like a gRPC request and answers ``ACTIONS``
  with ``int64[K]``, or ``REFUSED`` with what was wrong, which ends that
  actor's connection only.
"""

from __future__ import annotations

import math
import mmap
import os
import socket
import stat
import tempfile
from dataclasses import dataclass

import numpy as np

from seed_rl.core.step import STEP_FIELDS

HELLO, READY, STEP, ACTIONS, REFUSED, UNAVAILABLE = b"H", b"R", b"S", b"A", b"E", b"U"
MAX_CONTROL_BYTES = 1 << 20  # handshakes and episode statistics; observations travel in shared memory
_ALIGN = 64
# AF_UNIX socket paths are limited to 108 bytes on Linux (sun_path), terminator included.
_MAX_SOCKET_PATH = 107


class ShmError(RuntimeError):
    """The shared-memory transport cannot be used here; the text says why and what to use instead."""


def available() -> bool:
    """Whether this platform has what the transport needs (memfd, SEQPACKET and descriptor passing)."""
    return hasattr(os, "memfd_create") and hasattr(socket, "SOCK_SEQPACKET") and hasattr(socket, "send_fds")


def check_available() -> None:
    """Raises :class:`ShmError` where this platform cannot run the transport (see :func:`available`)."""
    if not available():
        raise ShmError(
            "the shared-memory transport needs Linux (memfd, SEQPACKET sockets and descriptor passing); "
            "use --transport=grpc"
        )


def socket_dir() -> str:
    """This user's directory for learner sockets, created private (0700); refused if anyone else can enter it."""
    path = os.path.join(tempfile.gettempdir(), f"seed_rl-{os.getuid()}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise ShmError(
            f"{path} must be a directory owned by this user and closed to others (mode 0700); "
            f"remove it, set TMPDIR to a private directory, or use --transport=grpc"
        )
    return path


def socket_path(port: int) -> str:
    """Where the learner serving gRPC on ``port`` listens for actors on its machine."""
    path = os.path.join(socket_dir(), f"learner-{port}.sock")
    if len(path.encode()) > _MAX_SOCKET_PATH:
        raise ShmError(f"socket path {path} is longer than Unix sockets allow; set TMPDIR to a shorter directory")
    return path


def port_of(address: str) -> int:
    """The port of a ``host:port`` learner address."""
    try:
        return int(address.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        raise ShmError(f"learner address {address!r} is not host:port") from None


@dataclass(frozen=True)
class ArrayLayout:
    """Where one step's arrays lie in the shared memory."""

    fields: tuple[tuple[str, str, tuple[int, ...], int], ...]  # (name, dtype, shape, byte offset)
    size: int

    @classmethod
    def for_step(cls, num_envs: int, observation_shape: tuple[int, ...], observation_dtype: str) -> "ArrayLayout":
        """Every field of STEP_FIELDS for ``num_envs`` environments, each aligned to a cache line."""
        fields, offset = [], 0
        for field in STEP_FIELDS:
            dtype, shape = field.dtype_for(observation_dtype), field.shape(num_envs, observation_shape)
            fields.append((field.name, dtype, shape, offset))
            offset += -(-math.prod(shape) * np.dtype(dtype).itemsize // _ALIGN) * _ALIGN
        return cls(tuple(fields), max(offset, _ALIGN))

    def to_json(self) -> dict:
        return {"fields": [[n, d, list(s), o] for n, d, s, o in self.fields], "size": self.size}

    @classmethod
    def from_json(cls, data: dict) -> "ArrayLayout":
        fields = tuple((str(n), str(d), tuple(int(x) for x in s), int(o)) for n, d, s, o in data["fields"])
        return cls(fields, int(data["size"]))

    def views(self, memory: mmap.mmap) -> dict[str, np.ndarray]:
        if len(memory) < self.size:
            raise ShmError(f"shared memory holds {len(memory)} bytes, the layout needs {self.size}")
        return {
            name: np.frombuffer(memory, dtype=dtype, count=math.prod(shape), offset=offset).reshape(shape)
            for name, dtype, shape, offset in self.fields
        }


def create_memory(layout: ArrayLayout, name: str) -> tuple[int, mmap.mmap]:
    """An anonymous memory file of the layout's size and its mapping (the caller closes both)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, layout.size)
        return fd, mmap.mmap(fd, layout.size)
    except BaseException:
        os.close(fd)
        raise


def receive(sock: socket.socket) -> bytes:
    """One message; b"" when the peer has gone. A message too long to be ours raises ``ShmError``."""
    data, _, flags, _ = sock.recvmsg(MAX_CONTROL_BYTES)
    if flags & socket.MSG_TRUNC:
        raise ShmError(f"a control message longer than {MAX_CONTROL_BYTES} bytes")
    return data
