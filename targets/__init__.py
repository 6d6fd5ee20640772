"""Things that execute a NIR graph, each a ``targets.base.Target`` registered by name through
the ``resformer_deploy.targets`` entry-point group (targets/registry.py; the built-in ones are
declared in pyproject.toml): ``reference`` (our NIR interpreter), ``lava-cpu`` (Lava float),
``loihi2-sim`` (Lava fixed point), ``loihi2-emu`` (bit-accurate numpy emulation of loihi2-sim),
``loihi2`` (hardware: needs lava-loihi). ``resformer-deploy targets`` lists them.
"""
from targets.base import DEFAULT_TARGET, LAVA_PROCESSES, PYTORCH_MODEL, RunRequest, RunResult, RunStats  # noqa: F401
from targets.registry import (broken_targets, capabilities_of, flow_owner, get_target, listing,  # noqa: F401
                              names_with, target_class, target_flows, target_names)
