"""The learner's TLS certificate and the shared actor token for a multi-machine job.

A job gets its own self-signed certificate (it is also the CA the actors trust)
and its own random token, made when the job is submitted. The certificate names
``server_name`` rather than a host, because Vertex AI picks replica host names
only when the job starts; actors check it with ``--tls_server_name``.
"""

from __future__ import annotations

import datetime
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

TOKEN_FILE = "token"
CERT_FILE = "learner.crt"
KEY_FILE = "learner.key"
DEFAULT_SERVER_NAME = "seed-rl-learner"
# A job longer than this needs a resubmission with fresh credentials.
DEFAULT_VALIDITY_DAYS = 30


@dataclass(frozen=True)
class CredentialFiles:
    """Paths of the three files inside one credentials directory."""

    token: str
    cert: str
    key: str

    @classmethod
    def in_directory(cls, directory: str) -> "CredentialFiles":
        # Plain string joins: the directory may be a gs:// URI or a /gcs/ mount path.
        directory = directory.rstrip("/")
        return cls(f"{directory}/{TOKEN_FILE}", f"{directory}/{CERT_FILE}", f"{directory}/{KEY_FILE}")


def self_signed_certificate(
    server_name: str, ips: tuple[str, ...] = (), validity_days: int = DEFAULT_VALIDITY_DAYS
) -> tuple[bytes, bytes]:
    """PEM certificate and PKCS#8 key of an EC P-256 self-signed certificate (its own CA).

    It names ``server_name`` and the IP addresses ``ips``.
    """
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_name)])
    alt_names = [x509.DNSName(server_name), *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips)]
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=validity_days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def generate_credentials(
    directory: str | Path, server_name: str = DEFAULT_SERVER_NAME, validity_days: int = DEFAULT_VALIDITY_DAYS
) -> CredentialFiles:
    """Writes a fresh token, an EC P-256 key and a self-signed certificate for ``server_name``."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    cert_pem, key_pem = self_signed_certificate(server_name, validity_days=validity_days)
    files = CredentialFiles.in_directory(str(directory))
    _write_private(files.key, key_pem)
    _write_private(files.token, (secrets.token_urlsafe(32) + "\n").encode())
    Path(files.cert).write_bytes(cert_pem)
    return files


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
