"""The per-job credentials: a gRPC TLS handshake works with them, and only for the certified name."""

from __future__ import annotations

import stat
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from seed_rl.launch.credentials import DEFAULT_SERVER_NAME, generate_credentials

METHOD = "/seed_rl.test/Echo"


@pytest.fixture
def tls_server(tmp_path):
    files = generate_credentials(tmp_path)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "seed_rl.test", {"Echo": grpc.unary_unary_rpc_method_handler(lambda request, context: request)}
    )
    server.add_generic_rpc_handlers((handler,))
    creds = grpc.ssl_server_credentials([(Path(files.key).read_bytes(), Path(files.cert).read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    yield files, f"127.0.0.1:{port}"
    server.stop(grace=None)


def _echo(address: str, ca: bytes, server_name: str) -> bytes:
    credentials = grpc.ssl_channel_credentials(root_certificates=ca)
    with grpc.secure_channel(address, credentials, options=[("grpc.ssl_target_name_override", server_name)]) as channel:
        return channel.unary_unary(METHOD)(b"ping", timeout=10)


def test_actor_trusting_the_job_certificate_connects(tls_server):
    files, address = tls_server
    assert _echo(address, Path(files.cert).read_bytes(), DEFAULT_SERVER_NAME) == b"ping"


def test_wrong_name_or_another_jobs_certificate_is_refused(tls_server, tmp_path):
    files, address = tls_server
    with pytest.raises(grpc.RpcError) as wrong_name:
        _echo(address, Path(files.cert).read_bytes(), "other-name")
    assert wrong_name.value.code() == grpc.StatusCode.UNAVAILABLE
    other = generate_credentials(tmp_path / "other")
    with pytest.raises(grpc.RpcError) as other_ca:
        _echo(address, Path(other.cert).read_bytes(), DEFAULT_SERVER_NAME)
    assert other_ca.value.code() == grpc.StatusCode.UNAVAILABLE


def test_key_and_token_are_private_and_tokens_differ(tmp_path):
    a, b = generate_credentials(tmp_path / "a"), generate_credentials(tmp_path / "b")
    for path in (a.key, a.token):
        assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600
    token = Path(a.token).read_text().strip()
    assert len(token) >= 40 and token != Path(b.token).read_text().strip()
