"""Who may talk to the learner: TLS credentials, a shared token, and the rules for using them.

The learner serves on loopback unless told otherwise. On any other interface it
needs TLS server credentials plus a shared token, or an explicit ``--insecure``.
Actors send the token as call metadata ``authorization: Bearer <token>``; the
learner checks it in a server interceptor, before its handler runs, so a refused
client never gets a request read, let alone batched.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import grpc

log = logging.getLogger(__name__)

TOKEN_ENV_VAR = "SEED_RL_AUTH_TOKEN"
AUTHORIZATION_KEY = "authorization"
_BEARER = "Bearer "


class SecurityConfigError(ValueError):
    """Credentials are missing, unreadable or inconsistent; the text names the fix."""


def split_host_port(address: str) -> tuple[str, str]:
    """``"host:port"`` or ``"[v6]:port"`` -> (host without brackets, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host:
        raise SecurityConfigError(f"address {address!r} is not HOST:PORT")
    return host.strip("[]"), port


def is_loopback(address: str) -> bool:
    """Whether ``address`` (HOST:PORT) only accepts connections from this machine.

    ``0.0.0.0``, ``::`` and host names other than ``localhost`` count as
    reachable from elsewhere.
    """
    host, _ = split_host_port(address)
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def read_token(token_file: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The shared token from ``token_file``, else from ``$SEED_RL_AUTH_TOKEN``; None when neither is set."""
    environ = os.environ if environ is None else environ
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as e:
            raise SecurityConfigError(f"cannot read --auth_token_file={token_file}: {e.strerror}") from None
        source = f"--auth_token_file={token_file}"
    elif environ.get(TOKEN_ENV_VAR):
        token, source = environ[TOKEN_ENV_VAR].strip(), f"${TOKEN_ENV_VAR}"
    else:
        return None
    if not token:
        raise SecurityConfigError(f"{source} is empty; put the shared token in it (e.g. `openssl rand -hex 32`)")
    if not token.isascii() or not token.isprintable() or " " in token:
        raise SecurityConfigError(f"{source} must hold printable ASCII without spaces (gRPC metadata); e.g. `openssl rand -hex 32`")
    return token


def _read_pem(path: str, flag: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise SecurityConfigError(f"cannot read {flag}={path}: {e.strerror}") from None
    if b"-----BEGIN" not in data:
        raise SecurityConfigError(f"{flag}={path} is not a PEM file (no -----BEGIN line)")
    return data


@dataclass(frozen=True)
class ServerSecurity:
    """What the learner's server enforces: TLS when a key pair is set, a token when one is set."""

    tls_cert_pem: bytes | None = field(default=None, repr=False)
    tls_key_pem: bytes | None = field(default=None, repr=False)
    auth_token: str | None = field(default=None, repr=False)
    tls_cert_file: str | None = None  # what local actors trust (the same certificate)

    @property
    def tls(self) -> bool:
        return self.tls_cert_pem is not None

    def server_credentials(self) -> grpc.ServerCredentials | None:
        if not self.tls:
            return None
        return grpc.ssl_server_credentials([(self.tls_key_pem, self.tls_cert_pem)])

    def interceptors(self) -> tuple[grpc.ServerInterceptor, ...]:
        return (TokenInterceptor(self.auth_token),) if self.auth_token else ()


def server_security(
    address: str,
    tls_cert_file: str | None = None,
    tls_key_file: str | None = None,
    auth_token_file: str | None = None,
    insecure: bool = False,
    environ: Mapping[str, str] | None = None,
) -> ServerSecurity:
    """Checks the learner's credentials against the address it serves on.

    Raises :class:`SecurityConfigError` naming the fix when they are missing or
    inconsistent; logs a warning when ``insecure`` lets a non-loopback learner
    run without them.
    """
    if bool(tls_cert_file) != bool(tls_key_file):
        given, missing = ("--tls_cert_file", "--tls_key_file") if tls_cert_file else ("--tls_key_file", "--tls_cert_file")
        raise SecurityConfigError(f"{given} needs {missing} too (the certificate and its private key)")
    cert = _read_pem(tls_cert_file, "--tls_cert_file") if tls_cert_file else None
    key = _read_pem(tls_key_file, "--tls_key_file") if tls_key_file else None
    if key is not None and b"PRIVATE KEY" not in key:
        raise SecurityConfigError(f"--tls_key_file={tls_key_file} holds no PRIVATE KEY block")
    token = read_token(auth_token_file, environ)
    security = ServerSecurity(cert, key, token, tls_cert_file or None)
    if is_loopback(address):
        return security
    missing = [name for name, ok in (("TLS (--tls_cert_file and --tls_key_file)", cert), ("a token (--auth_token_file or $SEED_RL_AUTH_TOKEN)", token)) if not ok]
    if not missing:
        return security
    if not insecure:
        raise SecurityConfigError(
            f"--learner_address={address} accepts actors from other machines, which needs "
            f"{' and '.join(missing)}; give them (see docs/security.md), "
            f"serve on 127.0.0.1, or pass --insecure to run without them on a trusted network"
        )
    log.warning(
        "INSECURE: serving on %s without %s because of --insecure; anyone who can reach this port "
        "can %s and feed the learner's training data",
        address,
        " and ".join(missing),
        "read the traffic" if not cert else "connect",
    )
    return security


class TokenInterceptor(grpc.ServerInterceptor):
    """Refuses calls without ``authorization: Bearer <token>`` before their handler runs."""

    def __init__(self, token: str):
        self._expected = (_BEARER + token).encode()

    def intercept_service(self, continuation, handler_call_details):
        given = None
        for key, value in handler_call_details.invocation_metadata or ():
            if key == AUTHORIZATION_KEY:
                given = value.encode() if isinstance(value, str) else value
                break
        if given is not None and hmac.compare_digest(given, self._expected):
            return continuation(handler_call_details)
        reason = "no token sent" if given is None else "wrong token"
        log.warning("refused a call to %s: %s", handler_call_details.method, reason)
        return _refusing_handler(
            f"{reason} (metadata `authorization: Bearer <token>`); give the actor the learner's token "
            f"with --auth_token_file or ${TOKEN_ENV_VAR}"
        )


def _refusing_handler(message: str) -> grpc.RpcMethodHandler:
    def refuse(request_iterator, context: grpc.ServicerContext):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return grpc.stream_stream_rpc_method_handler(refuse)


@dataclass(frozen=True)
class ClientSecurity:
    """How an actor connects: TLS trusting ``tls_ca_file`` when set, and the token when set."""

    tls_ca_file: str | None = None
    tls_server_name: str | None = None
    auth_token: str | None = field(default=None, repr=False)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((AUTHORIZATION_KEY, _BEARER + self.auth_token),) if self.auth_token else ()

    def channel(self, address: str, options: list[tuple[str, object]]) -> grpc.Channel:
        """A channel to ``address``: TLS when ``tls_ca_file`` is set, else plaintext."""
        if not self.tls_ca_file:
            return grpc.insecure_channel(address, options=options)
        root = _read_pem(self.tls_ca_file, "--tls_ca_file")
        if self.tls_server_name:
            options = [*options, ("grpc.ssl_target_name_override", self.tls_server_name)]
        return grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=root), options=options)


def certificate_names(cert_file: str) -> list[str]:
    """The DNS names and IP addresses a PEM certificate is valid for (subjectAltName, else its CN)."""
    try:
        decoded = ssl._ssl._test_decode_cert(cert_file)  # noqa: SLF001 - stdlib's only PEM decoder
    except (AttributeError, OSError, ssl.SSLError):
        return []
    names = [value.strip() for kind, value in decoded.get("subjectAltName", ()) if kind in ("DNS", "IP Address")]
    if not names:
        names = [value for rdn in decoded.get("subject", ()) for key, value in rdn if key == "commonName"]
    return names


def local_client_security(learner_address: str, security: ServerSecurity) -> tuple[str, ClientSecurity]:
    """Where and how actors on the learner's own machine connect to it.

    A learner on a wildcard address is reached over loopback; with TLS the
    actors trust the learner's own certificate (self-signed, or a file that holds
    its CA too) and check one of the names it carries.
    """
    host, port = split_host_port(learner_address)
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    server_name = None
    if security.tls:
        names = certificate_names(security.tls_cert_file)
        if names and host not in names:
            server_name = "localhost" if "localhost" in names else names[0]
    return address, ClientSecurity(security.tls_cert_file, server_name, security.auth_token)
