"""Warning lines about refused or dropped actors: one per actor per minute, however often it retries.

A buggy actor that reconnects and is refused in a loop, or a flood of hostile
connections, must not fill the learner's log: the first refusal of an actor is
logged, later ones within ``interval_s`` are counted and reported with its next
line. Actor ids come from the network, so they are shortened and escaped.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable


def printable(actor: str, limit: int = 64) -> str:
    """``actor`` as one short log-safe token (no newlines or control characters)."""
    text = str(actor)
    short = text[:limit] + ("..." if len(text) > limit else "")
    return short if short.isprintable() else repr(short)


class RefusalLog:
    def __init__(
        self, logger: logging.Logger, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
        max_actors: int = 4096,
    ):
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._max_actors = max_actors
        self._last: dict[str, tuple[float, int]] = {}  # actor -> (time of its last line, refusals not logged since)
        self._lock = threading.Lock()

    def warn(self, actor: str, message: str) -> bool:
        """Logs ``actor {actor}: {message}`` unless this actor had a line within the interval; True if logged."""
        key = printable(actor)
        now = self._clock()
        with self._lock:
            last, suppressed = self._last.get(key, (None, 0))
            if last is not None and now - last < self._interval_s:
                self._last[key] = (last, suppressed + 1)
                return False
            if len(self._last) >= self._max_actors:  # forget the oldest, so a flood of ids cannot grow this
                del self._last[min(self._last, key=lambda k: self._last[k][0])]
            self._last[key] = (now, 0)
        more = f" ({suppressed} more from this actor in the last {self._interval_s:.0f} s)" if suppressed else ""
        self._logger.warning("actor %s: %s%s", key, message, more)
        return True
