"""The learner's shared-memory endpoint for actors on its machine (protocol in :mod:`seed_rl.transport.shm`).

One thread accepts connections and reads their handshakes (a selector loop, so
a silent or slow connection costs a descriptor but no thread); each actor that
has shaken hands gets a thread that waits for its steps, as gRPC gives each
stream a worker. A step is validated with the same checks as a gRPC request, so
a bad step ends only that actor's connection.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import selectors
import socket
import threading

import numpy as np

from seed_rl.transport import protocol, shm, wire
from seed_rl.transport.refusal_log import RefusalLog
from seed_rl.transport.errors import Refused, Unavailable
from seed_rl.core.batcher import BatcherClosed
from seed_rl.transport.streams import ActorStreams, parse_first_env
from seed_rl.transport.waiting import WaitingList
from seed_rl.envs import EnvSpec

log = logging.getLogger(__name__)


# A connection that has not sent its handshake this long after connecting is dropped, so
# connections that never speak hold no descriptor for long; one that shook hands but sends
# no first step is dropped after gRPC's first-request timeout.
HANDSHAKE_TIMEOUT_S = 10.0
# Connections waiting for their handshake beyond this many: the oldest is dropped (an honest
# actor sends its handshake as soon as it connects), so a flood cannot take every descriptor.
MAX_WAITING_HANDSHAKES = 64
HANDSHAKE_ACTOR = "(a shared-memory handshake)"  # refusals before the actor is known, logged under this name


class ShmLearnerServer:
    """Serves actors over shared memory on the socket for ``port`` (the learner's gRPC port)."""

    def __init__(
        self,
        port: int,
        spec: EnvSpec,
        streams: ActorStreams,
        auth_token: str | None = None,
        max_streams: int = 256,
        limits: protocol.RequestLimits = protocol.DEFAULT_LIMITS,
        handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
        first_step_timeout_s: float = protocol.FIRST_REQUEST_TIMEOUT_S,
        max_waiting_handshakes: int = MAX_WAITING_HANDSHAKES,
    ):
        shm.check_available()
        self.spec = spec
        self.limits = limits
        self._handshake_timeout_s = handshake_timeout_s
        self._first_step_timeout_s = first_step_timeout_s
        self._max_waiting_handshakes = max_waiting_handshakes
        self.refusals = RefusalLog(log)
        self.streams = streams
        self._auth_token = auth_token
        self._max_streams = max_streams
        self.path = shm.socket_path(port)
        # The gRPC port is ours, so a socket file for it was left by a learner that died: replace it.
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._listener.bind(self.path)
        os.chmod(self.path, 0o600)
        self._listener.listen(64)
        self._listener.setblocking(False)  # the handshake loop accepts what the selector says has come
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()  # past their handshake, each served by a thread
        self._serving = 0  # connections past their handshake
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._handshake_loop, name="shm-accept", daemon=True)

    def start(self) -> None:
        self._acceptor.start()
        log.info("learner serving actors on this machine over shared memory at %s", self.path)

    def stop(self) -> None:
        """Refuses new actors, ends every connection (actors see the learner go) and removes the socket."""
        self._stopping.set()
        if self._acceptor.is_alive():
            self._acceptor.join()
        self._listener.close()
        with self._lock:
            for conn in self._connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in recv
                except OSError:
                    pass
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=5)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def _handshake_loop(self) -> None:
        """Accepts connections and answers their handshakes on this one thread, until :meth:`stop`."""
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ)
        waiting: WaitingList[socket.socket] = WaitingList(self._handshake_timeout_s)

        def drop(conn: socket.socket) -> None:
            selector.unregister(conn)
            waiting.discard(conn)
            conn.close()

        try:
            while not self._stopping.is_set():
                next_deadline = waiting.seconds_to_next()
                timeout = 0.2 if next_deadline is None else min(0.2, next_deadline)  # wakes up to notice stop()
                for key, _ in selector.select(timeout):
                    if key.fileobj is self._listener:
                        self._accept(selector, waiting, drop)
                    else:
                        conn = key.fileobj
                        selector.unregister(conn)
                        waiting.discard(conn)
                        self._answer_handshake(conn)
                for conn in waiting.pop_expired():
                    selector.unregister(conn)
                    conn.close()
        finally:
            for key in list(selector.get_map().values()):
                if key.fileobj is not self._listener:
                    key.fileobj.close()
            selector.close()

    def _accept(self, selector: selectors.BaseSelector, waiting: WaitingList, drop) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # none left to accept (BlockingIOError), or out of descriptors until deadlines free some
                return
            if len(waiting) >= self._max_waiting_handshakes:
                drop(waiting.pop_oldest())
            conn.setblocking(False)
            selector.register(conn, selectors.EVENT_READ)
            waiting.add(conn)

    def _answer_handshake(self, conn: socket.socket) -> None:
        """Shakes hands with a connection whose handshake has come, and starts its actor's thread."""
        try:
            conn.settimeout(self._handshake_timeout_s)  # for the answer: the handshake itself has come
            actor, num_envs, first_env, memory, arrays = self._handshake(conn, shm.receive(conn))
        except (Refused, Unavailable) as e:
            self.refusals.warn(HANDSHAKE_ACTOR, f"refused: {e}")
            self._send(conn, (shm.UNAVAILABLE if isinstance(e, Unavailable) else shm.REFUSED) + str(e).encode())
            conn.close()
            return
        except (OSError, shm.ShmError):  # left, or broke the framing: nothing to answer
            conn.close()
            return
        except Exception as e:  # anything else a hostile handshake provokes costs its connection only
            self.refusals.warn(HANDSHAKE_ACTOR, f"dropped: its handshake failed with {type(e).__name__}")
            conn.close()
            return
        conn.settimeout(self._first_step_timeout_s)  # then none: steps may be minutes apart (a slow environment)
        thread = threading.Thread(
            target=self._serve, args=(conn, actor, num_envs, first_env, memory, arrays), name="shm-actor", daemon=True
        )
        with self._lock:
            self._connections.add(conn)
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _serve(self, conn: socket.socket, actor: str, num_envs: int, first_env: int | None, memory, arrays) -> None:
        stream = self.streams.open(actor, "shared memory", first_env)
        try:
            self._steps(conn, actor, num_envs, arrays, stream)
        finally:
            stream.close()
            arrays = None
            try:
                memory.close()
            except BufferError:  # a view is still referenced somewhere; the mapping goes with it
                pass
            self._release_slot()
            self._forget(conn)

    def _handshake(self, conn: socket.socket, message: bytes):
        if not message:
            raise OSError("the actor left during the handshake")
        if message[:1] != shm.HELLO:
            raise Refused("the first message must be a handshake; is the actor the same seed_rl version?")
        try:
            hello = json.loads(message[1:])
            if not isinstance(hello, dict):
                raise TypeError("it must be a JSON object")
            actor, env, num_envs = str(hello["actor_id"])[:64], hello.get("env"), hello["num_envs"]
            if not isinstance(num_envs, int) or isinstance(num_envs, bool):
                raise TypeError(f"num_envs must be an integer, got {str(num_envs)[:40]}")
            first_env = parse_first_env(hello.get("first_env"))
        # ProtocolError is a ValueError; RecursionError: JSON nested too deep for the parser.
        except (ValueError, KeyError, TypeError, RecursionError) as e:
            raise Refused(f"malformed handshake: {type(e).__name__}: {str(e)[:200]}") from None
        if self._auth_token is not None and not hmac.compare_digest(
            str(hello.get("token") or "").encode(), self._auth_token.encode()
        ):
            raise Refused("missing or wrong auth token; give the actor the learner's token")
        refusal = self.streams.env_mismatch(actor, env)
        if refusal:
            raise Refused(refusal)
        try:
            self.limits.check_num_envs(num_envs)
        except protocol.ProtocolError as e:
            raise Refused(str(e)) from None
        with self._lock:  # shared memory's own count, so gRPC's streams never lock its actors out
            if self._serving >= self._max_streams:
                raise Unavailable(f"the learner serves its maximum of {self._max_streams} actors over shared memory")
            self._serving += 1
        try:
            layout = shm.ArrayLayout.for_step(num_envs, self.spec.observation_shape, self.spec.observation_dtype)
            fd, memory = shm.create_memory(layout, f"seed_rl-actor-{actor}")
            try:
                socket.send_fds(conn, [shm.READY + json.dumps(layout.to_json()).encode()], [fd])
            except BaseException:
                memory.close()
                raise
            finally:
                os.close(fd)  # the actor holds its own descriptor now; the memory lives while either maps it
        except BaseException:
            self._release_slot()
            raise
        return actor, num_envs, first_env, memory, layout.views(memory)

    def _release_slot(self) -> None:
        with self._lock:
            self._serving -= 1

    def _steps(self, conn: socket.socket, actor: str, num_envs: int, arrays: dict[str, np.ndarray], stream) -> None:
        first = True  # the handshake's first-step timeout holds until the first step arrives
        while True:
            try:
                message = shm.receive(conn)
            except (OSError, shm.ShmError) as e:
                if isinstance(e, shm.ShmError):
                    self._refuse(conn, actor, str(e))
                elif isinstance(e, TimeoutError):
                    self.refusals.warn(actor, f"dropped: no step within {self._first_step_timeout_s:.0f} s of its handshake")
                return
            if first:
                conn.settimeout(None)  # steps may be minutes apart (a slow environment, a paused learner)
                first = False
            if not message:
                return  # the actor closed its end or its process died
            try:
                if message[:1] != shm.STEP:
                    raise protocol.ProtocolError(f"expected a step message, got tag {message[:1]!r}")
                # Copy, then validate: the actor can write its memory at any time, so what is
                # checked and what reaches inference and training must be the learner's own copy.
                step = {name: array.copy() for name, array in arrays.items()}
                try:
                    fields = wire.decode(message[1:])
                except wire.WireError as e:
                    raise protocol.ProtocolError(str(e)) from None
                if set(fields) - set(protocol.EPISODE_FIELDS):
                    raise protocol.ProtocolError(f"unexpected fields {sorted(fields)} in a step message")
                fields.update(step)
                fields = protocol.validate_request(fields, self.spec, num_envs, self.limits)
            except protocol.ProtocolError as e:
                self._refuse(conn, actor, str(e))
                return
            try:
                actions = stream.step(fields)
            except BatcherClosed:
                self._send(conn, shm.UNAVAILABLE + b"the learner is shutting down")
                return
            if not self._send(conn, shm.ACTIONS + np.ascontiguousarray(actions, dtype="<i8").tobytes()):
                return

    def _refuse(self, conn: socket.socket, actor: str, reason: str) -> None:
        self.refusals.warn(actor, f"refused: {reason}")
        self._send(conn, shm.REFUSED + f"bad request from actor {actor}: {reason}".encode())

    @staticmethod
    def _send(conn: socket.socket, message: bytes) -> bool:
        try:
            conn.sendall(message)
            return True
        except OSError:
            return False

    def _forget(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)
        conn.close()
