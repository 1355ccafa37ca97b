"""TLS and token: who the learner accepts, who it refuses, and when it refuses to start.

Certificates are self-signed for ``localhost``/127.0.0.1 and made in the test
(see tls_helpers). A refused client must get a clear status and leave no trace
on the learner: no batch, no environment, no episode statistics.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import grpc
import numpy as np
import pytest

from conftest import FAKE_ENV, Client, start_learner, wait_for
from seed_rl.transport import protocol
from seed_rl.transport.errors import Refused
from seed_rl.transport.security import (
    ClientSecurity,
    SecurityConfigError,
    ServerSecurity,
    certificate_names,
    is_loopback,
    local_client_security,
    read_token,
    server_security,
)
from test_actor import ActorThread, POLL_S, _cartpole_learner, _settings, free_port
from tls_helpers import make_self_signed, write_token
from train_helpers import ROOT, read_metrics, run_train, train_command

pytestmark = pytest.mark.timeout(120)

TOKEN = "s3cret-token-0123456789abcdef"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("certs")
    return {"good": make_self_signed(directory / "good"), "other": make_self_signed(directory / "other")}


def _tls_server(certs, token: str | None = TOKEN) -> ServerSecurity:
    good = certs["good"]
    return ServerSecurity(good.cert.read_bytes(), good.key.read_bytes(), token, str(good.cert))


def _step(client: Client, num_envs: int = 2, value: float = 7.0) -> np.ndarray:
    observation = np.full((num_envs, 3), value, np.float32)
    # Episode statistics ride along, so a refused request that leaked would show in h.episodes.
    return client.step(
        observation, np.zeros(num_envs, np.float32), np.ones(num_envs, bool), np.array([1.0], np.float32), np.array([3], np.int32)
    )


def _assert_nothing_reached(h) -> None:
    assert h.engine.env_steps == 0
    assert h.batch_sizes == []
    assert h.episodes == []
    assert h.engine.num_envs == 0
    assert len(h.engine._states) == 0  # internal: the recurrent-state table
    assert h.server.streams.active == 0


# ----------------------------------------------------------------------------
# Rules


@pytest.mark.parametrize(
    "address, loopback",
    [
        ("127.0.0.1:8686", True),
        ("127.5.6.7:1", True),
        ("localhost:8686", True),
        ("[::1]:8686", True),
        ("0.0.0.0:8686", False),
        ("[::]:8686", False),
        ("10.1.2.3:8686", False),
        ("learner.example.com:8686", False),
    ],
)
def test_loopback_addresses(address, loopback):
    assert is_loopback(address) is loopback


def test_token_from_file_or_environment(tmp_path):
    path = write_token(tmp_path / "token", TOKEN)
    assert read_token(str(path), environ={}) == TOKEN
    assert read_token(None, environ={"SEED_RL_AUTH_TOKEN": " env-token\n"}) == "env-token"
    assert read_token(str(path), environ={"SEED_RL_AUTH_TOKEN": "env-token"}) == TOKEN  # the flag wins
    assert read_token(None, environ={}) is None
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SecurityConfigError, match="is empty"):
        read_token(str(tmp_path / "empty"), environ={})
    with pytest.raises(SecurityConfigError, match="cannot read --auth_token_file"):
        read_token(str(tmp_path / "missing"), environ={})
    (tmp_path / "spaces").write_text("two words")
    with pytest.raises(SecurityConfigError, match="printable ASCII"):
        read_token(str(tmp_path / "spaces"), environ={})


def test_non_loopback_needs_tls_and_token_or_insecure(tmp_path, certs, caplog):
    token = str(write_token(tmp_path / "token", TOKEN))
    cert, key = str(certs["good"].cert), str(certs["good"].key)
    assert server_security("127.0.0.1:1", environ={}) == ServerSecurity()
    for kwargs, missing in (
        ({}, ("TLS", "a token")),
        ({"tls_cert_file": cert, "tls_key_file": key}, ("a token",)),
        ({"auth_token_file": token}, ("TLS",)),
    ):
        with pytest.raises(SecurityConfigError) as refused:
            server_security("0.0.0.0:8686", environ={}, **kwargs)
        message = str(refused.value)
        assert all(m in message for m in missing) and "--insecure" in message
    full = server_security("0.0.0.0:8686", cert, key, token, environ={})
    assert full.tls and full.auth_token == TOKEN
    assert TOKEN not in repr(full) and "PRIVATE" not in repr(full)
    with caplog.at_level(logging.WARNING):
        insecure = server_security("0.0.0.0:8686", insecure=True, environ={})
    assert not insecure.tls and insecure.auth_token is None
    assert any("INSECURE" in r.getMessage() and "0.0.0.0:8686" in r.getMessage() for r in caplog.records)


def test_inconsistent_tls_files_are_refused(tmp_path, certs):
    with pytest.raises(SecurityConfigError, match="needs --tls_key_file"):
        server_security("127.0.0.1:1", tls_cert_file=str(certs["good"].cert), environ={})
    with pytest.raises(SecurityConfigError, match="not a PEM file"):
        (tmp_path / "junk").write_text("junk")
        server_security("127.0.0.1:1", str(tmp_path / "junk"), str(certs["good"].key), environ={})
    with pytest.raises(SecurityConfigError, match="no PRIVATE KEY"):
        server_security("127.0.0.1:1", str(certs["good"].cert), str(certs["good"].cert), environ={})


def test_local_actors_reach_a_wildcard_learner_over_loopback(certs):
    assert certificate_names(str(certs["good"].cert)) == ["localhost", "127.0.0.1"]
    address, client = local_client_security("0.0.0.0:1234", _tls_server(certs))
    assert address == "127.0.0.1:1234"
    assert client.tls_ca_file == str(certs["good"].cert) and client.auth_token == TOKEN
    assert client.tls_server_name is None  # 127.0.0.1 is in the certificate
    address, client = local_client_security("[::]:1234", ServerSecurity())
    assert address == "[::1]:1234" and client == ClientSecurity()


def test_local_actors_check_a_name_the_certificate_carries(learner, tmp_path):
    """A certificate for the machine's public name only: local actors dial 127.0.0.1 but check that name."""
    named = make_self_signed(tmp_path, name="learner.example.com", ips=())
    security = ServerSecurity(named.cert.read_bytes(), named.key.read_bytes(), TOKEN, str(named.cert))
    h = learner(address="0.0.0.0:0", security=security)
    address, client_security = local_client_security(h.address, security)
    assert address == f"127.0.0.1:{h.server.port}" and client_security.tls_server_name == "learner.example.com"
    client = Client(address, security=client_security)
    try:
        np.testing.assert_array_equal(_step(client), [7001, 7001])
    finally:
        client.close()


# ----------------------------------------------------------------------------
# The server


def test_tls_client_with_the_token_is_served(learner, certs):
    h = learner(security=_tls_server(certs))
    client = Client(h.address, security=ClientSecurity(str(certs["good"].cert), None, TOKEN))
    try:
        actions = _step(client)
    finally:
        client.close()
    np.testing.assert_array_equal(actions, [7001, 7001])  # CountingAgent: observation * 1000 + 1
    assert h.engine.env_steps == 2 and len(h.episodes) == 1


REFUSED = {
    "no token": (ClientSecurity("GOOD", None, None), grpc.StatusCode.UNAUTHENTICATED, "no token sent"),
    "wrong token": (ClientSecurity("GOOD", None, TOKEN + "x"), grpc.StatusCode.UNAUTHENTICATED, "wrong token"),
    "untrusted certificate": (ClientSecurity("OTHER", None, TOKEN), grpc.StatusCode.UNAVAILABLE, "handshake failed"),
    "wrong server name": (ClientSecurity("GOOD", "learner.example.com", TOKEN), grpc.StatusCode.UNAVAILABLE, "verification"),
    "plaintext": (ClientSecurity(None, None, TOKEN), grpc.StatusCode.UNAVAILABLE, ""),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_clients_leave_no_trace(learner, certs, case):
    template, code, detail = REFUSED[case]
    paths = {"GOOD": str(certs["good"].cert), "OTHER": str(certs["other"].cert), None: None}
    security = ClientSecurity(paths[template.tls_ca_file], template.tls_server_name, template.auth_token)
    h = learner(security=_tls_server(certs))
    client = Client(h.address, security=security, timeout_s=10)
    try:
        with pytest.raises(grpc.RpcError) as refused:
            _step(client)
    finally:
        client.abort()
    assert refused.value.code() == code, refused.value.details()
    assert detail in refused.value.details().lower()
    _assert_nothing_reached(h)
    # A legitimate actor is still served afterwards.
    good = Client(h.address, security=ClientSecurity(str(certs["good"].cert), None, TOKEN))
    try:
        np.testing.assert_array_equal(_step(good, value=3.0), [3001, 3001])
    finally:
        good.close()


def test_token_without_tls_on_loopback(learner):
    h = learner(security=ServerSecurity(auth_token=TOKEN))
    refused = Client(h.address, timeout_s=10)
    try:
        with pytest.raises(grpc.RpcError) as error:
            _step(refused)
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        refused.abort()
    _assert_nothing_reached(h)
    client = Client(h.address, security=ClientSecurity(auth_token=TOKEN))
    try:
        np.testing.assert_array_equal(_step(client), [7001, 7001])
    finally:
        client.close()


def test_refused_calls_do_not_reach_the_handler(learner, certs, monkeypatch):
    """The token is checked before the handler reads anything: decoding is never called."""
    decoded: list[bytes] = []
    real_decode = protocol.decode_request
    monkeypatch.setattr(protocol, "decode_request", lambda data, *a: decoded.append(data) or real_decode(data, *a))
    h = learner(security=ServerSecurity(auth_token=TOKEN))
    for token in (None, "wrong"):
        client = Client(h.address, security=ClientSecurity(auth_token=token), timeout_s=10)
        try:
            with pytest.raises(grpc.RpcError):
                client.send(b"anything at all")
        finally:
            client.abort()
    assert decoded == []
    _assert_nothing_reached(h)


# ----------------------------------------------------------------------------
# The actor


def _secure_cartpole_learner(port: int, certs):
    return _cartpole_learner(port, security=_tls_server(certs))


def test_actor_with_ca_and_token_trains(certs):
    port = free_port()
    h = _secure_cartpole_learner(port, certs)
    actor = ActorThread(_settings(port, tls_ca_file=str(certs["good"].cert), auth_token=TOKEN))
    actor.start()
    try:
        wait_for(lambda: h.engine.env_steps >= 50 or not actor.is_alive(), POLL_S, what="steps over TLS")
        assert actor.error is None, actor.error
        assert h.engine.env_steps >= 50 and len(h.unrolls) > 0
    finally:
        actor.stop()
        h.stop()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tls_ca_file": "GOOD", "auth_token": "wrong"}, "wrong token"),
        ({"tls_ca_file": "GOOD"}, "no token sent"),
        ({"tls_ca_file": "OTHER", "auth_token": TOKEN}, "TLS handshake"),
        ({"tls_ca_file": "GOOD", "tls_server_name": "learner.example.com", "auth_token": TOKEN}, "--tls_server_name"),
    ],
)
def test_refused_actor_stops_with_one_clear_error(certs, kwargs, message):
    paths = {"GOOD": str(certs["good"].cert), "OTHER": str(certs["other"].cert)}
    kwargs = {k: paths.get(v, v) for k, v in kwargs.items()}
    port = free_port()
    h = _secure_cartpole_learner(port, certs)
    actor = ActorThread(_settings(port, **kwargs))
    actor.start()
    try:
        actor.join(POLL_S)
        assert not actor.is_alive(), "a refused actor must stop instead of retrying"
        assert isinstance(actor.error, Refused)
        assert message in str(actor.error)
        assert h.engine.env_steps == 0 and h.episodes == []
    finally:
        actor.stop_event.set()
        h.stop()


def test_plaintext_actor_against_a_tls_learner_keeps_retrying_with_a_hint(certs, caplog):
    port = free_port()
    h = _secure_cartpole_learner(port, certs)
    actor = ActorThread(_settings(port, auth_token=TOKEN))
    try:
        with caplog.at_level(logging.WARNING, logger="seed_rl.acting.loop"):
            actor.start()
            wait_for(lambda: any("not reachable yet" in r.getMessage() for r in caplog.records) or not actor.is_alive(),
                     POLL_S, what="the actor's first retry")
        assert actor.is_alive() and actor.error is None
        message = next(r.getMessage() for r in caplog.records if "not reachable yet" in r.getMessage())
        assert "if the learner serves TLS, give this actor --tls_ca_file" in message
        assert h.engine.env_steps == 0
    finally:
        actor.stop()
        h.stop()


@pytest.mark.parametrize("ca", ["GOOD", "MISSING"])
def test_tls_actor_against_a_plaintext_learner_says_so(certs, tmp_path, ca):
    ca_file = str(certs["good"].cert) if ca == "GOOD" else str(tmp_path / "missing.pem")
    port = free_port()
    h = _cartpole_learner(port)
    actor = ActorThread(_settings(port, tls_ca_file=ca_file))
    actor.start()
    try:
        actor.join(POLL_S)
        assert not actor.is_alive()
        assert isinstance(actor.error, Refused)
        expected = "does not speak TLS" if ca == "GOOD" else f"cannot read --tls_ca_file={ca_file}"
        assert expected in str(actor.error)
        assert h.engine.env_steps == 0
    finally:
        actor.stop_event.set()
        h.stop()


# ----------------------------------------------------------------------------
# Command lines


def test_learner_on_a_public_interface_without_credentials_exits(tmp_path, monkeypatch):
    monkeypatch.delenv("SEED_RL_AUTH_TOKEN", raising=False)
    result = run_train(
        tmp_path / "run", "--role=learner", f"--learner_address=0.0.0.0:{free_port()}", "--env=CartPole-v1", timeout=120
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "--tls_cert_file" in last and "--insecure" in last
    assert not (tmp_path / "run").exists()


def test_insecure_flag_serves_on_a_public_interface_with_a_warning(tmp_path):
    result = run_train(
        tmp_path, "--learner_address=0.0.0.0:0", "--insecure", "--env=CartPole-v1", "--num_actors=1",
        "--envs_per_actor=4", "--total_environment_frames=1000", timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "INSECURE: serving on 0.0.0.0" in result.stderr
    assert read_metrics(tmp_path)[-1]["frames"] >= 1000


def test_remote_actor_joins_a_tls_learner_with_the_token(tmp_path, certs):
    """The commands of docs/security.md: learner on 0.0.0.0 with TLS and a token, actors with the CA and the token."""
    token_file = write_token(tmp_path / "token", TOKEN)
    port = free_port()
    learner = subprocess.Popen(
        train_command(
            tmp_path / "run", "--role=learner", f"--learner_address=0.0.0.0:{port}", "--env=CartPole-v1",
            "--num_actors=1", "--envs_per_actor=4", "--total_environment_frames=3000",
            f"--tls_cert_file={certs['good'].cert}", f"--tls_key_file={certs['good'].key}", f"--auth_token_file={token_file}",
        ),
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    actor_command = [sys.executable, "-m", "seed_rl.actor", f"--learner_address=127.0.0.1:{port}", "--env=CartPole-v1",
                     "--envs_per_actor=4", f"--tls_ca_file={certs['good'].cert}", "--tls_server_name=localhost"]
    empty_token = subprocess.run(
        [*actor_command, "--auth_token_file=/dev/null"], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "SEED_RL_AUTH_TOKEN": "guess"},
    )
    actor = subprocess.Popen(
        [*actor_command, f"--auth_token_file={token_file}"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _, stderr = learner.communicate(timeout=150)
    finally:
        actor.kill()
        actor.wait()
        if learner.poll() is None:
            learner.kill()
    assert learner.returncode == 0, stderr[-3000:]
    assert "(TLS, token required)" in stderr
    assert read_metrics(tmp_path / "run")[-1]["frames"] >= 3000
    # /dev/null holds no token: the actor refuses to start, naming the file.
    assert empty_token.returncode != 0 and "Traceback" not in empty_token.stderr
    assert empty_token.stderr.strip().splitlines()[-1].startswith("error: --auth_token_file=/dev/null is empty")


def test_wrong_token_actor_exits_with_one_error_line(tmp_path, certs):
    port = free_port()
    h = _secure_cartpole_learner(port, certs)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "seed_rl.actor", f"--learner_address=localhost:{port}", "--env=CartPole-v1",
             "--envs_per_actor=2", f"--tls_ca_file={certs['good'].cert}"],
            cwd=ROOT, capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "SEED_RL_AUTH_TOKEN": "guess"},
        )
    finally:
        h.stop()
    assert result.returncode != 0 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: learner refused actor 0: wrong token"), last
    assert h.engine.env_steps == 0


def test_local_actors_get_the_token_and_certificate(tmp_path, certs, monkeypatch):
    monkeypatch.setenv("SEED_RL_AUTH_TOKEN", TOKEN)
    result = run_train(
        tmp_path, "--learner_address=0.0.0.0:0", f"--tls_cert_file={certs['good'].cert}",
        f"--tls_key_file={certs['good'].key}", "--env=CartPole-v1", "--num_actors=1", "--envs_per_actor=4",
        "--total_environment_frames=1000", timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(TLS, token required)" in result.stderr and "refused" not in result.stderr
    assert read_metrics(tmp_path)[-1]["frames"] >= 1000
