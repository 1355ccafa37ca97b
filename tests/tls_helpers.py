"""Self-signed certificates and tokens for the security tests (made with ``cryptography``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seed_rl.launch.credentials import self_signed_certificate


@dataclass
class CertFiles:
    cert: Path
    key: Path


def make_self_signed(directory: Path, name: str = "localhost", ips: tuple[str, ...] = ("127.0.0.1",)) -> CertFiles:
    """A self-signed server certificate for ``name`` and ``ips``; it is its own CA."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_pem, key_pem = self_signed_certificate(name, ips, validity_days=1)
    files = CertFiles(directory / f"{name}.crt", directory / f"{name}.key")
    files.cert.write_bytes(cert_pem)
    files.key.write_bytes(key_pem)
    files.key.chmod(0o600)
    return files


def write_token(path: Path, token: str) -> Path:
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path
