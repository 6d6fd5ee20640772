"""Option types the API's jobs share: how a checkpoint is read, and where a job's messages go.

The API prints nothing: what a command prints as it works (the data used, an estimate, a default
lowered to fit the memory budget) is handed to callbacks, silent unless given::

    >>> from resformer_deploy.api.options import CheckpointOptions, Messages
    >>> CheckpointOptions(T=4).unsafe_load
    False
    >>> Messages(say=print).note("not shown")
"""
from dataclasses import dataclass
from typing import Callable, Optional

from resformer_deploy.analysis.data_inputs import DataArgs

Say = Callable[[str], None]
DataOptions = DataArgs  # --data / --calib-data as given (frozen dataclass of analysis/data_inputs.py)

__all__ = ["CheckpointOptions", "DataOptions", "Messages", "Say", "silent"]


def silent(_line: str) -> None:
    """A callback that drops the line."""


def _ignore(_reasons: list) -> None:
    pass


class _NoBar:
    """A progress bar that shows nothing (util/progress.Progress's interface)."""

    def __init__(self, total: int = 0, label: str = "", unit: str = "samples"):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n: int = 1) -> None:
        pass

    def reset(self, total: int) -> None:
        pass


@dataclass(frozen=True)
class CheckpointOptions:
    """What a checkpoint does not say about itself (official checkpoints store no T, image size or
    variant); None: as stored or detected. ``unsafe_load``: unpickle arbitrary objects (trusted
    files only)."""
    variant: Optional[str] = None
    img_size: Optional[int] = None
    T: Optional[int] = None
    num_classes: Optional[int] = None
    unsafe_load: bool = False


@dataclass(frozen=True)
class Messages:
    """Where a job's lines go: ``say`` its own output (the CLI's stdout: data used, estimates),
    ``note`` diagnostics (stderr: defaults lowered to fit, skipped samples, phases), ``bars`` a
    progress-bar factory ``bars(total, label, unit=...)`` (util/progress.Progress), ``skipped`` the
    samples a data set left out, told where the job reads them."""
    say: Say = silent
    note: Say = silent
    bars: Callable = _NoBar
    skipped: Callable[[list], None] = _ignore  # the reasons --skip-bad left samples out (one per sample)
