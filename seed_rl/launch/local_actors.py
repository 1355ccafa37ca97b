"""The actor processes ``--role=local`` starts beside its learner, under the one :class:`Supervisor`."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from typing import Callable

import torch

from seed_rl import exits
from seed_rl.acting.loop import run_actor
from seed_rl.config import roles
from seed_rl.envs import EnvError
from seed_rl.launch.supervisor import ProcessChild, Supervisor
from seed_rl.transport.errors import Refused


def _stop_when_orphaned(stop: threading.Event, parent: int, poll_s: float = 1.0) -> None:
    """Sets ``stop`` once the parent process ``parent`` is gone (e.g. a learner killed with SIGKILL).

    ``parent`` comes from the parent itself: one that died while this process was still
    starting would otherwise be missed (``os.getppid()`` would already name its reaper).
    """

    def watch() -> None:
        while os.getppid() == parent and not stop.wait(poll_s):
            pass
        stop.set()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _local_actor(shared_argv: list[str], launcher_values: dict, parent: int) -> None:
    """One local actor process: the run's shared flags parsed as ``seed_rl.actor`` would, plus what this
    launcher decides (address, id, transport, and the learner's token and certificate, in memory)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the learner process stops us
    logging.basicConfig(level=logging.INFO, format="%(asctime)s actor %(message)s")
    torch.set_num_threads(1)
    stop = threading.Event()
    # A local actor serves only its own learner, whose port dies with it: do not
    # outlive it (a restarted --role=local learner starts actors of its own).
    _stop_when_orphaned(stop, parent)
    try:
        settings = roles.actor_settings(roles.parse_shared_flags(shared_argv), **launcher_values)
        run_actor(settings, stop)
    except (Refused, EnvError) as e:
        exits.fail(e)


class LocalActors:
    """``count`` actor processes on this machine, under the one :class:`Supervisor`, in a background thread.

    ``on_fatal(message)`` is called when an actor stops with a user error.
    """

    def __init__(
        self, shared_argv: list[str], launcher_values: Callable[[int], dict], count: int, on_fatal: Callable[[str], None]
    ):
        context = multiprocessing.get_context("spawn")

        def start(actor_id: int) -> ProcessChild:
            process = context.Process(target=_local_actor, args=(shared_argv, launcher_values(actor_id), os.getpid()),
                                      daemon=True)
            return ProcessChild(process)

        self._supervisor = Supervisor(start, count, name="actor {i}")
        self._on_fatal = on_fatal
        self._thread = threading.Thread(target=self._supervise, name="actor-supervisor", daemon=True)
        self._thread.start()

    def _supervise(self) -> None:
        ending = self._supervisor.run()
        if ending.exit_code:
            self._on_fatal(f"actor {ending.index} could not start (see its error above)")

    def close(self) -> None:
        """Stops every actor process (terminated, then killed if it lingers)."""
        self._supervisor.stop()
        self._thread.join()
