"""Exceptions whose message is a single line a user can act on.

The CLI prints ``error: <message>`` and exits non-zero for any of these; it
never shows a traceback for them.
"""


class DeployError(Exception):
    """Base class: a problem with the user's input, stated in one line."""

    exit_code = 2


class CheckpointError(DeployError):
    """A checkpoint file is missing, unreadable or does not fit the model."""


class CalibrationError(DeployError):
    """DSSA firing-rate buffers are not set, so attention scales would be inf."""


def one_line(text: str) -> str:
    """Collapse whitespace so a message never spans several lines."""
    return " ".join(str(text).split())


def summarize(items, limit: int = 4) -> str:
    """`a, b, c, d (+7 more)` — keeps long key lists readable on one line."""
    items = list(items)
    shown = ", ".join(str(i) for i in items[:limit])
    if len(items) > limit:
        shown += f" (+{len(items) - limit} more)"
    return shown
