"""Private "hosts" on one machine: Linux network namespaces joined by a bridge.

    with PrivateHosts(["learner", "a0", "a1"]) as hosts:
        subprocess.Popen(hosts.command("learner", ["python", "-m", ...]))
        hosts.address("learner")  # '10.200.0.1'

Each host is a network namespace with its own loopback and one veth interface
``eth0`` carrying a private address in ``10.200.0.0/24``. The other ends of the
veth pairs sit on a bridge in one more namespace (the "switch"). Every link is
created directly inside the namespaces, and nothing is added to the machine's
own namespace, so no address or route outside these namespaces is touched and
deleting the namespaces removes everything. Namespace names carry the creating
process's id, so concurrent runs do not collide and :func:`remove_stale` can
delete what a killed run left behind. Needs root and iproute2's ``ip``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

SUBNET = "10.200.0"  # private (RFC 1918) /24 that exists only inside these namespaces
PREFIX = "seedbench"
_NAME = re.compile(rf"^{PREFIX}(\d+)-")


class NetnsUnavailable(RuntimeError):
    """This machine cannot create network namespaces (not root, or no ``ip``)."""


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` command is not installed (Debian: apt-get install iproute2)"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (run as root or use --mode=processes)"
    return None


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise NetnsUnavailable(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")


def existing_namespaces() -> list[str]:
    result = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def remove_stale() -> list[str]:
    """Deletes namespaces of this module whose creating process no longer runs."""
    removed = []
    for name in existing_namespaces():
        match = _NAME.match(name)
        if match and not os.path.exists(f"/proc/{match.group(1)}"):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            removed.append(name)
    return removed


class PrivateHosts:
    """Namespaces named after ``hosts`` on one bridge; a context manager that removes them all."""

    def __init__(self, hosts: list[str]):
        if len(hosts) > 250:
            raise ValueError(f"at most 250 hosts fit in {SUBNET}.0/24, got {len(hosts)}")
        if len(set(hosts)) != len(hosts):
            raise ValueError(f"host names must be unique, got {hosts}")
        tag = f"{PREFIX}{os.getpid()}"
        self._switch = f"{tag}-switch"
        self._namespaces = {host: f"{tag}-{host}" for host in hosts}
        self._addresses = {host: f"{SUBNET}.{i + 1}" for i, host in enumerate(hosts)}
        self._created: list[str] = []

    def __enter__(self) -> "PrivateHosts":
        reason = unavailable_reason()
        if reason:
            raise NetnsUnavailable(reason)
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self._created.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def _create(self) -> None:
        self._add_namespace(self._switch)
        _ip("-n", self._switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self._switch, "link", "set", "br0", "up")
        for i, host in enumerate(self._namespaces):
            namespace, port = self._namespaces[host], f"port{i}"
            self._add_namespace(namespace)
            _ip("link", "add", "eth0", "netns", namespace, "type", "veth", "peer", "name", port, "netns", self._switch)
            _ip("-n", self._switch, "link", "set", port, "master", "br0")
            _ip("-n", self._switch, "link", "set", port, "up")
            _ip("-n", namespace, "addr", "add", f"{self._addresses[host]}/24", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "eth0", "up")

    def address(self, host: str) -> str:
        return self._addresses[host]

    def namespace(self, host: str) -> str:
        return self._namespaces[host]

    def command(self, host: str, argv: list[str]) -> list[str]:
        """``argv`` run inside ``host``'s namespace (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", self._namespaces[host], *argv]

    def close(self) -> None:
        """Deletes every namespace created (and with them their veth pairs and the bridge).

        Processes still running inside a namespace keep it alive until they exit,
        so stop them first.
        """
        while self._created:
            subprocess.run(["ip", "netns", "del", self._created.pop()], capture_output=True)
