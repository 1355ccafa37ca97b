"""The flags of the ``seed_rl.train`` a benchmark runs, and the security flags its learner needs.

Read from ``--helpfull`` rather than imported, so a benchmark also drives a
seed_rl from before a flag existed.
"""

from __future__ import annotations

import re
import subprocess
import sys


def learner_flag_names() -> set[str]:
    """The flags ``python -m seed_rl.train`` defines (from ``--helpfull``), to use flags added by later work."""
    result = subprocess.run(
        [sys.executable, "-m", "seed_rl.train", "--helpfull"], capture_output=True, text=True, timeout=120
    )
    return set(re.findall(r"^\s+--(?:\[no\])?(\w+)", result.stdout, flags=re.MULTILINE))


def learner_security_flags(address: str, extra: list[str]) -> list[str]:
    """``--insecure`` for a learner serving on a non-loopback address, when it knows the flag.

    The benchmark's hosts are private namespaces, so plaintext is what is
    measured; give TLS/token flags through ``--learner_extra_flags`` instead.
    """
    host = address.rsplit(":", 1)[0]
    if host.startswith("127.") or host in ("localhost", "[::1]"):
        return []
    if any("insecure" in flag for flag in extra) or "insecure" not in learner_flag_names():
        return []
    return ["--insecure"]
