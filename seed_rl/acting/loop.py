"""The actor loop: step K environments, stream their observations, apply the actions.

Actors hold no model. Each step they send the observations of all their
environments (with the reward and done flag of the last action) and wait for
the learner's actions. Finished episodes are reset here and reported to the
learner for logging. If the learner is unreachable, or goes away, the actor
says so once and retries with backoff; on reconnecting it resets its
environments, because the learner starts their trajectories afresh. Refusals
that retrying cannot fix (a wrong token, a certificate it does not trust, another
environment) end the actor with :class:`~seed_rl.transport.errors.Refused`.
"""

from __future__ import annotations

import logging
import threading
import time

import grpc

from seed_rl.acting.env_group import EnvGroup
from seed_rl.acting.grpc_link import FATAL_CODES, _connect_error, _GrpcLink, _tls_failure
from seed_rl.acting.settings import TRANSPORTS, ActorSettings
from seed_rl.acting.shm_link import _ShmLink
from seed_rl.transport import protocol, shm
from seed_rl.transport.errors import Refused, Unavailable
from seed_rl.transport.security import SecurityConfigError

log = logging.getLogger(__name__)


def _serve(links: list, stop: threading.Event) -> None:
    """Steps every group in turn: while one group's actions are computed, the next one steps."""
    for link in links:
        link.start()
    while not stop.is_set():
        for link in links:
            actions = link.actions()
            if stop.is_set():
                return
            link.step(actions)


def _run_grpc(settings: ActorSettings, groups: list[EnvGroup], stop: threading.Event) -> None:
    backoff = 0.25
    waiting_since: float | None = None
    options = [
        ("grpc.max_receive_message_length", protocol.MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", protocol.MAX_MESSAGE_BYTES),
        *protocol.keepalive_options(settings.keepalive_s),
    ]
    while not stop.is_set():
        try:
            channel = settings.security.channel(settings.learner_address, options)
        except SecurityConfigError as e:
            raise Refused(str(e)) from None
        with channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=backoff)
            except grpc.FutureTimeoutError:
                reason = _connect_error(settings, channel)
                fatal = _tls_failure(settings, reason)
                if fatal:
                    raise Refused(fatal) from None
                if waiting_since is None:
                    waiting_since = time.monotonic()
                    hint = "" if settings.tls_ca_file or "socket closed" not in reason.lower() else (
                        "; if the learner serves TLS, give this actor --tls_ca_file"
                    )
                    log.warning(
                        "actor %d: learner at %s is not reachable yet (%s%s); retrying with backoff",
                        settings.actor_id,
                        settings.learner_address,
                        reason,
                        hint,
                    )
                backoff = min(backoff * 2, settings.max_backoff_s)
                continue
            if waiting_since is not None:
                log.info(
                    "actor %d: connected to %s after %.1f s",
                    settings.actor_id,
                    settings.learner_address,
                    time.monotonic() - waiting_since,
                )
                waiting_since = None
            backoff = 0.25
            links = []
            try:
                links = [_GrpcLink(settings, channel, envs) for envs in groups]
                _serve(links, stop)
            except (grpc.RpcError, ConnectionResetError) as e:
                rpc_error = isinstance(e, grpc.RpcError)
                if rpc_error and e.code() in FATAL_CODES:
                    raise Refused.by_learner(settings.actor_id, e.details()) from None
                if not stop.is_set():
                    waiting_since = time.monotonic()
                    log.warning(
                        "actor %d: lost the learner (%s); reconnecting with backoff",
                        settings.actor_id,
                        e.code().name if rpc_error else e,
                    )
            finally:
                for link in links:
                    link.close()


def _run_shm(settings: ActorSettings, groups: list[EnvGroup], stop: threading.Event) -> None:
    path = shm.socket_path(shm.port_of(settings.learner_address))
    backoff, waiting_since = 0.25, None
    while not stop.is_set():
        links: list[_ShmLink] = []
        try:
            for envs in groups:
                links.append(_ShmLink(settings, path, envs))
        except (OSError, Unavailable) as e:
            for link in links:
                link.close()
            if waiting_since is None:
                waiting_since = time.monotonic()
                log.warning(
                    "actor %d: no learner serves shared memory at %s yet (%s); retrying with backoff. "
                    "--transport=shm reaches a learner on this machine only; use --transport=grpc for another",
                    settings.actor_id, path, e,
                )
            stop.wait(backoff)
            backoff = min(backoff * 2, settings.max_backoff_s)
            continue
        if waiting_since is not None:
            log.info("actor %d: connected to %s after %.1f s", settings.actor_id, path, time.monotonic() - waiting_since)
            waiting_since = None
        backoff = 0.25
        try:
            _serve(links, stop)
        except (OSError, Unavailable) as e:
            if not stop.is_set():
                waiting_since = time.monotonic()
                log.warning("actor %d: lost the learner (%s); reconnecting with backoff", settings.actor_id, e)
        finally:
            for link in links:
                link.close()


def run_actor(settings: ActorSettings, stop: threading.Event | None = None) -> None:
    """Runs until ``stop`` is set; survives learner restarts. Raises Refused if refused."""
    if settings.transport not in TRANSPORTS:
        raise Refused(f"unknown transport {settings.transport!r}; choose one of {', '.join(TRANSPORTS)}")
    stop = stop or threading.Event()
    groups: list[EnvGroup] = []
    try:
        if settings.transport == "shm":
            shm.check_available()
        for indices in settings.env_groups():
            groups.append(EnvGroup(settings, indices))
        (_run_shm if settings.transport == "shm" else _run_grpc)(settings, groups, stop)
    except shm.ShmError as e:
        raise Refused(str(e)) from None
    finally:
        for envs in groups:
            envs.close()
