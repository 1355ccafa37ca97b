"""The actor loop: step K environments, stream their observations, apply the actions.

Actors hold no model. Each step they send the observations of all their
environments (with the reward and done flag of the last action) and wait for
the learner's actions. Finished episodes are reset here and reported to the
learner for logging. If the learner is unreachable, or goes away, the actor
says so once and retries with backoff; on reconnecting it resets its
environments, because the learner starts their trajectories afresh. Refusals
that retrying cannot fix (a wrong token, a certificate it does not trust, another
environment) end the actor with :class:`~seed_rl.transport.errors.Refused`.

The loop is the same for every transport: a :class:`Connector` connects the
environment groups and its links report failures as
:class:`~seed_rl.transport.errors.Unavailable` (retry) or ``Refused`` (stop).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Protocol

import numpy as np

from seed_rl.acting.env_group import EnvGroup
from seed_rl.acting.grpc_link import GrpcConnector
from seed_rl.acting.settings import TRANSPORTS, ActorSettings
from seed_rl.acting.shm_link import ShmConnector
from seed_rl.transport.errors import Refused, Unavailable

log = logging.getLogger(__name__)

INITIAL_BACKOFF_S = 0.25


class Link(Protocol):
    """One group's connection to the learner; its methods raise ``Unavailable`` or ``Refused`` on failure."""

    def start(self) -> None:
        """Resets the group and sends its first step."""

    def actions(self) -> np.ndarray:
        """The learner's actions for the step sent last."""

    def step(self, actions: np.ndarray) -> None:
        """Applies ``actions`` and sends the step they lead to."""

    def close(self) -> None: ...


class Connector(Protocol):
    """How one transport reaches the learner."""

    where: str  # the learner's address, for log lines

    def connect(self, groups: list[EnvGroup], wait_s: float, opened: contextlib.ExitStack) -> list[Link]:
        """A link per group, each registered on ``opened`` to close. May wait up to ``wait_s`` for the learner;
        raises ``Unavailable`` (with the reason) if it is not reachable, ``Refused`` if it refuses this actor."""


def _serve(links: list[Link], stop: threading.Event) -> None:
    """Steps every group in turn: while one group's actions are computed, the next one steps."""
    for link in links:
        link.start()
    while not stop.is_set():
        for link in links:
            actions = link.actions()
            if stop.is_set():
                return
            link.step(actions)


def _run(connector: Connector, groups: list[EnvGroup], stop: threading.Event, settings: ActorSettings) -> None:
    """Connects and serves until ``stop``, reconnecting with backoff (doubling up to ``max_backoff_s``)
    whenever the learner is unreachable or lost; says so once per outage. ``Refused`` ends it."""
    actor = settings.actor_id
    backoff, waiting_since = INITIAL_BACKOFF_S, None
    while not stop.is_set():
        tried_at = time.monotonic()
        with contextlib.ExitStack() as opened:
            try:
                links = connector.connect(groups, backoff, opened)
            except Unavailable as e:
                opened.close()
                if waiting_since is None:
                    waiting_since = time.monotonic()
                    log.warning(
                        "actor %d: learner at %s is not reachable yet (%s); retrying with backoff",
                        actor, connector.where, e,
                    )
                # A connector that waited for the learner has spent the backoff already.
                stop.wait(max(0.0, backoff - (time.monotonic() - tried_at)))
                backoff = min(backoff * 2, settings.max_backoff_s)
                continue
            if waiting_since is not None:
                log.info("actor %d: connected to %s after %.1f s", actor, connector.where, time.monotonic() - waiting_since)
                waiting_since = None
            backoff = INITIAL_BACKOFF_S
            try:
                _serve(links, stop)
            except Unavailable as e:
                if not stop.is_set():
                    waiting_since = time.monotonic()
                    log.warning("actor %d: lost the learner (%s); reconnecting with backoff", actor, e)


def run_actor(settings: ActorSettings, stop: threading.Event | None = None) -> None:
    """Runs until ``stop`` is set; survives learner restarts. Raises ``Refused`` if refused."""
    if settings.transport not in TRANSPORTS:
        raise Refused(f"unknown transport {settings.transport!r}; choose one of {', '.join(TRANSPORTS)}")
    stop = stop or threading.Event()
    connector = ShmConnector(settings) if settings.transport == "shm" else GrpcConnector(settings)
    groups: list[EnvGroup] = []
    try:
        for indices in settings.env_groups():
            groups.append(EnvGroup(settings, indices))
        _run(connector, groups, stop, settings)
    finally:
        for envs in groups:
            envs.close()
