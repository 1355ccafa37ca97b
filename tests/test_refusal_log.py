"""Refusal warnings: one line per actor per interval, ids from the network made log-safe."""

import logging

from seed_rl.transport.refusal_log import RefusalLog, printable


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_one_line_per_actor_per_interval_with_the_count_of_the_rest(caplog):
    clock = Clock()
    refusals = RefusalLog(logging.getLogger("refusals"), interval_s=60, clock=clock)
    with caplog.at_level(logging.WARNING, logger="refusals"):
        assert refusals.warn("7", "refused: reward contains NaN")
        assert not any(refusals.warn("7", "refused: reward contains NaN") for _ in range(500))
        assert refusals.warn("8", "refused: another actor")  # its own budget
        clock.now = 61
        assert refusals.warn("7", "refused: again")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "actor 7: refused: reward contains NaN",
        "actor 8: refused: another actor",
        "actor 7: refused: again (500 more from this actor in the last 60 s)",
    ]


def test_actor_ids_from_the_network_are_short_and_escaped():
    assert printable("actor-1") == "actor-1"
    assert printable("1" * 100) == "1" * 64 + "..."
    assert "\n" not in printable("evil\nERROR forged line")


def test_a_flood_of_ids_keeps_the_table_bounded():
    refusals = RefusalLog(logging.getLogger("refusals"), clock=Clock(), max_actors=10)
    for i in range(1000):
        refusals.warn(f"id{i}", "refused")
    assert len(refusals._last) <= 10
