"""The catalogue of bad inputs: every user-caused failure ends with exit 2, one line
``error: ...`` naming the problem, and no file left behind.

Each case module holds a list ``CASES`` of :class:`Case`; ``tests/test_bad_input_catalogue.py``
runs them all. ``setup(tmp)`` makes whatever bad input the case needs inside ``tmp`` and returns
the CLI arguments; ``expect`` are fragments the error line must contain; ``env`` is set while
the command runs.
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Sequence


@dataclass(frozen=True)
class Case:
    name: str
    setup: Callable[[Path], Sequence[str]]
    expect: Sequence[str] = field(default_factory=tuple)
    env: Dict[str, str] = field(default_factory=dict)  # environment of the command (e.g. a memory budget)


def args(*argv: str) -> Callable[[Path], List[str]]:
    """A case that needs no files: the arguments as given ("{tmp}" is replaced by the temp dir)."""
    return lambda tmp: [a.replace("{tmp}", str(tmp)) for a in argv]
