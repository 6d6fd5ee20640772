"""Defer the import of a module until one of its attributes is used.

For the Lava worker (targets/lava_worker.py), a fresh interpreter per run: nir imports h5py at
module level for its file functions (nir/serialization.py), Lava's Conv process imports
scipy.signal for its stock model's convolution (lava/proc/conv/utils.py), which imports
scipy.stats; a worker that reads no NIR file and runs no stock float Conv uses none of them, and
importing them was ~0.4 s of the ~0.8 s its imports took (``python -X importtime``, AMD EPYC).

importlib.util.LazyLoader does not help here: ``import h5py`` itself reads the module's
``__spec__`` (CPython Python/import.c import_ensure_initialized), which makes a lazy module load.
A stand-in module with a module-level ``__getattr__`` (PEP 562) keeps its own ``__spec__`` and
imports the real module at the first attribute it does not have; the stand-in then forwards.
"""
import importlib
import importlib.util
import sys
import types


def defer(*names: str) -> None:
    """Put a stand-in for each module not imported yet into sys.modules (call before anything imports them)."""
    for name in names:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        stub = types.ModuleType(name)
        stub.__spec__ = spec

        def load(attr, _name=name, _stub=stub):
            if sys.modules.get(_name) is _stub:
                del sys.modules[_name]
            real = importlib.import_module(_name)
            _stub.__getattr__ = lambda a, _real=real: getattr(_real, a)  # later misses: straight through
            return getattr(real, attr)
        stub.__getattr__ = load
        sys.modules[name] = stub
