"""The two kinds of failure, and how the CLI states them.

``DeployError``: a problem with the user's input or environment (a bad file, option or data, a
limit of this machine, a target that does not reproduce the model); the CLI prints one line
``error: <message>`` and exits 2. ``InternalError``: the toolchain broke an invariant of its own
(a bug); the CLI prints ``internal_error_line`` and exits 1, and shows the traceback under
``--debug``. Any other exception that escapes a command is a bug too and is reported the same way.
"""

DEBUG_ENV = "RESFORMER_DEPLOY_DEBUG"  # =1: as the CLI's --debug (tracebacks), e.g. for CI logs


class DeployError(Exception):
    """Base class: a problem with the user's input, stated in one line."""

    exit_code = 2


class InternalError(Exception):
    """A bug in resformer-deploy: an invariant the code itself broke (never the user's input).

    Deliberately not a DeployError, so no handler of user errors swallows it. ``error_type``:
    the name of the exception that was the bug when it arose elsewhere (a Lava worker), so the
    report names it; ``remote_traceback``: that exception's traceback text, shown under --debug."""

    exit_code = 1

    def __init__(self, message: str, *, error_type: str = "", remote_traceback: str = ""):
        super().__init__(message)
        self.error_type = error_type
        self.remote_traceback = remote_traceback


def internal_error_line(e: BaseException) -> str:
    """The CLI's one line for a bug: the exception's type and message, and what to do."""
    kind = getattr(e, "error_type", "") or type(e).__name__
    return (f"error: internal error: {kind}: {one_line(e)} -- this is a bug in resformer-deploy; "
            f"rerun with --debug (or {DEBUG_ENV}=1) for the traceback")


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
