"""The evaluation's user errors."""


class EvaluationError(Exception):
    """A problem the user can fix; the message is one line."""
