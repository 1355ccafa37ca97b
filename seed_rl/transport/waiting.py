"""Connections that have not yet said their first word: a gRPC stream's first step, a shared-memory handshake.

Both learner endpoints keep them in a :class:`WaitingList`. Each has a deadline,
so a connection that stays silent is dropped; and where a newcomer needs the
place of one, the oldest goes first. An honest actor speaks as soon as it has
connected, so silent connections cannot crowd it out.
"""

from __future__ import annotations

import collections
import time
from typing import Callable, Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)


class WaitingList(Generic[K]):
    """Keys in the order they arrived, each with a deadline ``timeout_s`` after it; not thread-safe."""

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic):
        self.timeout_s = timeout_s
        self._clock = clock
        # Every key gets the same timeout, so arrival order is deadline order.
        self._deadlines: collections.OrderedDict[K, float] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._deadlines)

    def __contains__(self, key: object) -> bool:
        return key in self._deadlines

    def add(self, key: K) -> None:
        self._deadlines[key] = self._clock() + self.timeout_s

    def discard(self, key: K) -> bool:
        """Stops waiting for ``key`` (it spoke, or left); whether it was waiting."""
        return self._deadlines.pop(key, None) is not None

    def pop_oldest(self) -> K | None:
        """Removes and returns the key that has waited longest; None if none waits."""
        if not self._deadlines:
            return None
        return self._deadlines.popitem(last=False)[0]

    def pop_expired(self) -> list[K]:
        """Removes and returns the keys whose deadline has passed, oldest first."""
        now, expired = self._clock(), []
        while self._deadlines:
            key, deadline = next(iter(self._deadlines.items()))
            if deadline > now:
                break
            del self._deadlines[key]
            expired.append(key)
        return expired

    def seconds_to_next(self) -> float | None:
        """Seconds until the next deadline (0 if one has passed); None when nothing waits."""
        if not self._deadlines:
            return None
        return max(0.0, next(iter(self._deadlines.values())) - self._clock())
