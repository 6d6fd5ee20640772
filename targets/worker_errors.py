"""How a Lava worker's failure travels to its caller (targets.lava_cpu), and which kind it is.

The worker (targets.lava_worker) writes one record, ``error.json`` in its work directory: the
failure's kind, exception type, first message line and traceback text. Kinds:
``user``: a DeployError raised in the worker (input it cannot map, ...); ``environment``: this
machine's limits (out of memory, no space in /dev/shm, too many open files) or a Lava process
that died; ``bug``: any other Python exception, in the worker or in a Lava process model. The
caller turns ``bug`` into an InternalError carrying the type and traceback, the others into one
line (``failure``). No torch import here: the worker imports this module.
"""
import errno
import json
import os
from typing import Optional

from resformer_deploy.errors import DeployError, InternalError

ERROR_FILE = "error.json"
# OSErrors that report a limit of the machine, not a mistake in the code (errno(3))
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.ENOMEM, errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.EDQUOT}


def kind_of(exc: BaseException) -> str:
    if isinstance(exc, DeployError):
        return "user"
    if isinstance(exc, MemoryError) or (isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS):
        return "environment"
    if not isinstance(exc, Exception):  # SystemExit, KeyboardInterrupt: the worker was told to stop
        return "environment"
    return "bug"


def first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else ""


def exception_record(exc: BaseException, traceback_text: str) -> dict:
    """The record of an exception raised in the worker or handed up by a Lava process."""
    return {"kind": kind_of(exc), "type": type(exc).__name__, "message": first_line(exc),
            "traceback": traceback_text or ""}


def death_record(how: str) -> dict:
    """The record of a Lava process that died without an exception (a signal, an exit code)."""
    return {"kind": "environment", "type": "", "message": how, "traceback": ""}


def write_record(workdir: str, record: dict) -> None:
    tmp = os.path.join(workdir, ERROR_FILE + ".tmp")  # replaced whole: the caller never reads half
    with open(tmp, "w") as f:
        json.dump(record, f)
    os.replace(tmp, os.path.join(workdir, ERROR_FILE))


def read_record(workdir: str) -> Optional[dict]:
    try:
        with open(os.path.join(workdir, ERROR_FILE), errors="replace") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def failure(record: Optional[dict], fallback: str, user_error=DeployError) -> Exception:
    """The exception the caller raises for a failed worker: ``InternalError`` for a bug (its
    type and traceback carried along, shown under --debug), else ``user_error`` with one line,
    "Lava simulation failed: ...". ``fallback``: the line when there is no record (a signal, a
    crash before the worker could write one)."""
    if record is None:
        return user_error(f"Lava simulation failed: {fallback}")
    kind, etype, msg = record.get("kind"), record.get("type") or "", record.get("message") or ""
    if kind == "bug":
        return InternalError(f"{msg} (in the Lava worker)", error_type=etype or "Exception",
                             remote_traceback=record.get("traceback") or "")
    return user_error("Lava simulation failed: " + (f"{etype}: {msg}" if etype else msg))
