"""Helpers for Lava tests."""
from resformer_deploy.util.processes import descendants  # noqa: F401

import pickle
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_child(module: str, job, block_torch: bool = False, timeout: float = 600):
    """``module._child()`` in a fresh isolated interpreter (Lava forks its processes there, not in
    pytest): ``job`` pickled on its stdin, its pickled result read from its stdout. ``block_torch``
    makes importing torch fail in the child (the network and the loader must not need it)."""
    code = ("import sys; " + ("sys.modules['torch'] = None; " if block_torch else "")
            + f"sys.path.insert(0, {str(REPO)!r}); from {module} import _child; _child()")
    done = subprocess.run([sys.executable, "-I", "-c", code], input=pickle.dumps(job), capture_output=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return pickle.loads(done.stdout)
