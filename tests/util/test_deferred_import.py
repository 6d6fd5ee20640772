"""resformer_deploy.util.deferred_import (the Lava worker's start-up): a deferred module is not
imported by ``import`` statements, only by the first use of an attribute, and then behaves as
the real module. In a fresh interpreter (this one has imported both modules already)."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
from resformer_deploy.util.deferred_import import defer
defer("h5py", "scipy.signal")
import nir, h5py  # nir imports h5py at module level
from scipy import signal
print("h5py._hl" in sys.modules, "scipy.signal._signaltools" in sys.modules, "scipy.stats" in sys.modules)
import numpy as np
got = signal.convolve2d(np.arange(9.0).reshape(3, 3), np.ones((2, 2)))  # first use: the real import
print("scipy.signal._signaltools" in sys.modules, got.tolist())
print(h5py.File.__module__, sys.modules["scipy.signal"] is not signal)  # the stand-in forwards to the real module
"""


def test_deferred_modules_load_at_first_use_and_compute_as_the_real_ones():
    done = subprocess.run([sys.executable, "-I", "-c", CHILD, str(REPO)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "False False False"
    # full 2-D convolution of [[0,1,2],[3,4,5],[6,7,8]] with a 2x2 box, by hand
    assert lines[1] == "True [[0.0, 1.0, 3.0, 2.0], [3.0, 8.0, 12.0, 7.0], [9.0, 20.0, 24.0, 13.0], [6.0, 13.0, 15.0, 8.0]]"
    assert lines[2] == "h5py._hl.files True"  # h5py's File class; sys.modules holds the real scipy.signal now
