"""Things that execute a NIR graph, registered by name.

A target exposes ``run(graph, x, T, record=...) -> RunResult``. Registered:
``reference`` (our NIR interpreter), ``lava-cpu`` (Lava float), ``loihi2-sim`` (Lava fixed point),
``loihi2-emu`` (bit-accurate numpy emulation of loihi2-sim), ``loihi2`` (hardware: needs lava-loihi).
"""
from typing import Callable, Dict

from resformer_deploy.errors import DeployError

_TARGETS: Dict[str, Callable] = {}


def register_target(name: str):
    def deco(cls):
        _TARGETS[name] = cls
        cls.name = name
        return cls
    return deco


def get_target(name: str):
    _load_builtin()
    if name not in _TARGETS:
        raise DeployError(f"unknown target '{name}'; available: {', '.join(sorted(_TARGETS))}")
    return _TARGETS[name]()


def available_targets():
    _load_builtin()
    return sorted(_TARGETS)


def _load_builtin():
    from targets import lava_cpu, loihi2_emulator, loihi2_hardware, reference  # noqa: F401  (register themselves)
