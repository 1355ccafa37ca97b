"""What TLS and the token cost: actor round trips/s over loopback, plaintext against secured.

  .venv/bin/python tools/bench_security.py --clients=4 --envs_per_client=16 --seconds=10

Runs the learner's real server, dynamic batcher and inference engine (with a
model-free agent, so the transport dominates) and ``--clients`` actor processes
that send Atari-sized observations (``[K, 84, 84, 4]`` uint8) in lock-step, once
per mode: plaintext, token only, TLS + token, ``--repeats`` times in alternating
order. Prints the best round trips/s and observations/s per mode (the machine's
other load only ever slows a run down). Needs ``cryptography`` (the test extra) for the
throwaway self-signed certificate.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

OBS_SHAPE = (84, 84, 4)
TOKEN = "bench-token-0123456789abcdef"


class ConstantAgent:
    """Action 0 for every environment, no recurrent state: inference costs ~nothing."""

    device = torch.device("cpu")

    def initial_core_state(self, batch_size: int):
        return ()

    def act(self, inputs, core_state):
        from seed_rl.core.agent import ActResult

        return ActResult(torch.zeros(inputs.observation.shape[0], dtype=torch.int64), {}, ())


def _client(address: str, security, num_envs: int, seconds: float, start, result) -> None:
    import grpc

    from seed_rl.core.step import allocate_step
    from seed_rl.transport import protocol

    channel = security.channel(address, [("grpc.max_send_message_length", protocol.MAX_MESSAGE_BYTES)])
    call = channel.stream_stream(protocol.FULL_METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    rng = np.random.default_rng(0)
    step = allocate_step(num_envs, OBS_SHAPE, "uint8")
    step["observation"][:] = rng.integers(0, 255, step["observation"].shape, dtype=np.uint8)
    request = protocol.encode_request(step)
    outbox: list = []
    ready = threading.Event()

    def requests():
        while True:
            ready.wait()
            ready.clear()
            if not outbox:
                return
            yield outbox.pop()

    responses = call(requests(), metadata=security.metadata())
    start.wait()
    count, deadline = 0, time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            outbox.append(request)
            ready.set()
            next(responses)
            count += 1
    except grpc.RpcError as e:
        print(f"client failed: {e.code().name} {e.details()}", file=sys.stderr)
    ready.set()
    responses.cancel()
    result.put(count)


def measure(mode: str, cert_file: Path, key_pem: bytes, args) -> float:
    from seed_rl.core.unroll import UnrollShape
    from seed_rl.learner.inference import InferenceEngine
    from seed_rl.transport.security import ClientSecurity, ServerSecurity
    from seed_rl.learner.serving import Endpoints, InferenceService, ServingSettings
    from seed_rl.envs import EnvSpec

    if mode == "plaintext":
        server_security, client_security = ServerSecurity(), ClientSecurity()
    elif mode == "token":
        server_security, client_security = ServerSecurity(auth_token=TOKEN), ClientSecurity(auth_token=TOKEN)
    else:
        server_security = ServerSecurity(cert_file.read_bytes(), key_pem, TOKEN, str(cert_file))
        client_security = ClientSecurity(str(cert_file), None, TOKEN)
    engine = InferenceEngine(ConstantAgent(), UnrollShape(21), lambda unroll: None, threading.Lock())
    service = InferenceService(engine, "bench", args.clients * args.envs_per_client, 0.002)
    spec = EnvSpec(observation_shape=OBS_SHAPE, observation_dtype="uint8", num_actions=6)
    server = Endpoints(ServingSettings(security=server_security), spec, service.streams)
    server.start()
    context = multiprocessing.get_context("spawn")
    start, result = context.Event(), context.Queue()
    clients = [
        context.Process(target=_client, args=(server.address, client_security, args.envs_per_client, args.seconds, start, result))
        for _ in range(args.clients)
    ]
    for c in clients:
        c.start()
    time.sleep(2.0)  # let every client connect before the clock starts
    start.set()
    total = sum(result.get() for _ in clients)
    for c in clients:
        c.join()
    server.stop()
    service.close()
    return total / args.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--envs_per_client", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from seed_rl.launch.credentials import self_signed_certificate

    with tempfile.TemporaryDirectory() as tmp:
        # Actors dial 127.0.0.1, which the certificate names, as does localhost.
        cert_pem, key_pem = self_signed_certificate("localhost", ("127.0.0.1",), validity_days=1)
        cert_file = Path(tmp) / "localhost.crt"
        cert_file.write_bytes(cert_pem)
        print(f"{args.clients} clients x {args.envs_per_client} envs of {OBS_SHAPE} uint8, {args.seconds:.0f} s per mode")
        modes = ["plaintext", "token", "tls+token"]
        rates: dict[str, list[float]] = {m: [] for m in modes}
        for repeat in range(args.repeats):
            for mode in modes if repeat % 2 == 0 else modes[::-1]:
                rates[mode].append(measure(mode, cert_file, key_pem, args))
        for mode in modes:
            best = max(rates[mode])
            runs = ", ".join(f"{r:,.0f}" for r in rates[mode])
            print(f"{mode:>10}: {best:8,.0f} round trips/s  {best * args.envs_per_client:10,.0f} observations/s  (runs: {runs})")


if __name__ == "__main__":
    main()
