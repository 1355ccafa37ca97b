"""Errors raised by :mod:`seed_rl.envs`."""

from __future__ import annotations


class EnvError(ValueError):
    """A bad environment name, space or setting.

    The message is always one line that names the problem and how to fix it,
    e.g. ``unknown Atari game 'Pongg'; did you mean 'Pong'? (...)``.
    """
