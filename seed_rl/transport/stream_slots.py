"""Which gRPC streams the learner serves: at most ``max_streams``, and silent ones make way for newcomers.

gRPC's synchronous server runs each stream on a worker thread for its whole
life, and a stream that finds every worker taken waits unserved. So the pool
has one worker more than ``max_streams`` (:attr:`StreamSlots.workers`): every
newcomer reaches :meth:`StreamSlots.admit`, where it takes the place of the
stream that has waited longest for its first step, or, when every stream has
sent one, is told to come back later. One watcher thread drops a stream whose
first step has not come within the timeout.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

from seed_rl.transport.waiting import WaitingList


@dataclass(eq=False)  # identity: two streams of one actor are two slots
class Slot:
    actor: str
    cancel: Callable[[], None]  # ends the stream (its handler's request iterator raises)


DropCallback = Callable[[str, str], None]  # (actor, why its stream was dropped)


class StreamSlots:
    def __init__(self, max_streams: int, first_request_timeout_s: float, on_drop: DropCallback):
        if max_streams < 1:
            raise ValueError(f"max_streams must be at least 1, got {max_streams}")
        self.max_streams = max_streams
        self.workers = max_streams + 1  # the spare one runs admit() for a newcomer when all slots are held
        self._on_drop = on_drop
        self._held: set[Slot] = set()
        self._waiting: WaitingList[Slot] = WaitingList(first_request_timeout_s)
        self._changed = threading.Condition()
        self._stopping = False
        self._watcher = threading.Thread(target=self._watch, name="grpc-first-request", daemon=True)

    @property
    def waiting(self) -> int:
        """Streams that have not sent their first step."""
        with self._changed:
            return len(self._waiting)

    def start(self) -> None:
        self._watcher.start()

    def stop(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify()
        if self._watcher.is_alive():
            self._watcher.join()

    def admit(self, actor: str, cancel: Callable[[], None]) -> Slot | None:
        """A slot for a new stream, dropping the longest-waiting silent stream where all are held; None when
        every held stream has sent its first step (the learner is full)."""
        slot, dropped = Slot(actor, cancel), None
        with self._changed:
            if len(self._held) >= self.max_streams:
                dropped = self._waiting.pop_oldest()
                if dropped is None:
                    return None
                self._held.discard(dropped)
            self._held.add(slot)
            self._waiting.add(slot)
            self._changed.notify()
        if dropped is not None:
            self._drop(dropped, f"it had sent no request, and a new stream needed its place (this learner serves "
                                f"at most {self.max_streams} streams)")
        return slot

    def spoke(self, slot: Slot) -> None:
        """The stream sent its first step: it keeps its slot."""
        with self._changed:
            self._waiting.discard(slot)

    def release(self, slot: Slot) -> None:
        """The stream ended (safe after it was dropped)."""
        with self._changed:
            self._held.discard(slot)
            self._waiting.discard(slot)

    def _watch(self) -> None:
        while True:
            with self._changed:
                expired = self._waiting.pop_expired()
                while not expired and not self._stopping:
                    self._changed.wait(self._waiting.seconds_to_next())
                    expired = self._waiting.pop_expired()
                if self._stopping:
                    return
                self._held.difference_update(expired)
            for slot in expired:
                self._drop(slot, f"no request within {self._waiting.timeout_s:.0f} s of opening its stream")

    def _drop(self, slot: Slot, reason: str) -> None:
        self._on_drop(slot.actor, reason)
        slot.cancel()
