"""How seed_rl's processes end: one contract.

A user error (a bad flag, an unknown environment, an actor the learner refuses)
ends a command with one ``error: ...`` line on stderr and exit code
:data:`USER_ERROR`. Restarting cannot fix it, so the one supervisor
(``seed_rl.launch.supervisor``, used by local training, the Vertex AI task and
Ray) stops the run there. Exit code 0 means finished; any other end (a crash,
a signal, a lost learner) is worth a restart.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from absl import flags

USER_ERROR = 3


def fail(message: object) -> NoReturn:
    """Ends this process as a user error: one ``error:`` line, exit code :data:`USER_ERROR`."""
    text = " ".join(str(message).split()) if "\n" in str(message) else str(message)
    print(f"error: {text}", file=sys.stderr, flush=True)
    sys.exit(USER_ERROR)


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (its type's name if it has none), for a one-line error."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def is_user_error(returncode: int | None) -> bool:
    """Whether a child's exit code says it hit a user error (not worth restarting)."""
    return returncode == USER_ERROR


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing for ``app.run(main, flags_parser=parse_flags)``: a bad flag is a user error."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(f"{e}; see --helpfull")


def parse_known_flags(argv: list[str]) -> list[str]:
    """As :func:`parse_flags`, leaving flags this program does not define in the returned argv."""
    try:
        return flags.FLAGS(argv, known_only=True)
    except flags.Error as e:
        fail(f"{e}; see --helpfull")


class ArgumentParser(argparse.ArgumentParser):
    """argparse for seed_rl's argparse CLIs: a bad command line is a user error like any other."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message}; see {self.prog} --help")
