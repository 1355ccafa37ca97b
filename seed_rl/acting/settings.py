"""What one actor process needs to know: its learner, its environments and how to reach the learner."""

from __future__ import annotations

from dataclasses import dataclass, field

from seed_rl.envs import EnvConfig
from seed_rl.transport import protocol
from seed_rl.transport.security import ClientSecurity

TRANSPORTS = ("grpc", "shm")


@dataclass
class ActorSettings:
    learner_address: str
    env_name: str
    env_config: EnvConfig
    envs_per_actor: int
    actor_id: int = 0
    seed: int = 0
    max_backoff_s: float = 5.0
    tls_ca_file: str | None = None  # PEM the learner's certificate must chain to; None: plaintext
    tls_server_name: str | None = None  # name to check in the certificate instead of the address's host
    auth_token: str | None = field(default=None, repr=False)  # sent as `authorization: Bearer <token>`
    keepalive_s: float = protocol.KEEPALIVE_S
    transport: str = "grpc"  # "shm": shared memory with a learner on this machine (seed_rl.transport.shm)
    # Two streams of half the environments each: one half steps while the other waits for its actions
    # (Sample Factory's double-buffered sampling), so the round trip to the learner does not idle the CPU.
    double_buffer: bool = False

    def env_groups(self) -> list[range]:
        """The environment indices (within this actor) of each stream."""
        k = self.envs_per_actor
        if not self.double_buffer or k < 2:
            return [range(k)]
        return [range(k // 2), range(k // 2, k)]

    @property
    def security(self) -> ClientSecurity:
        return ClientSecurity(self.tls_ca_file, self.tls_server_name, self.auth_token)
