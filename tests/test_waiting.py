"""seed_rl.transport.waiting: silent connections expire in arrival order, and the oldest makes way first."""

from __future__ import annotations

from seed_rl.transport.waiting import WaitingList


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_connections_expire_in_the_order_they_came_unless_they_spoke():
    clock = Clock()
    waiting = WaitingList(10.0, clock)
    assert waiting.seconds_to_next() is None
    for key, at in (("a", 100.0), ("b", 101.0), ("c", 102.0)):
        clock.now = at
        waiting.add(key)
    assert waiting.discard("b") and not waiting.discard("b")  # "b" spoke
    assert waiting.seconds_to_next() == 8.0
    clock.now = 111.5
    assert waiting.pop_expired() == ["a"]
    assert "c" in waiting and len(waiting) == 1 and waiting.seconds_to_next() == 0.5
    clock.now = 112.0
    assert waiting.pop_expired() == ["c"] and waiting.seconds_to_next() is None


def test_the_oldest_makes_way_first():
    waiting = WaitingList(10.0, Clock())
    for key in "abc":
        waiting.add(key)
    assert waiting.discard("a")
    assert [waiting.pop_oldest() for _ in range(3)] == ["b", "c", None]
