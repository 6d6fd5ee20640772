"""Targets registered through the ``resformer_deploy.targets`` entry-point group.

Every target, the built-in ones included, is an entry point ``name = module:Class`` declared in
its distribution's metadata (ours: pyproject.toml, ``[project.entry-points."resformer_deploy.targets"]``)
and found with ``importlib.metadata.entry_points(group=...)`` (Python docs, importlib.metadata,
"Entry points": https://docs.python.org/3.10/library/importlib.metadata.html#entry-points), so
another package adds a target (e.g. a lava-loihi one) by declaring an entry point in its own
metadata, without editing this project. A plug-in that fails to load or is not a Target is
reported in one line naming it; the other targets stay usable.

A target may bring its own flows (``Target.flows()``, as hls4ml registers flows per backend:
https://fastmachinelearning.org/hls4ml/api/flows.html): they are registered when it is loaded,
their pass order checked then (every pass's requirements ensured by an earlier pass or a flow
input), and ``Capabilities.flow`` may name one (resformer_deploy.flows.FLOWS lists them too).
"""
import importlib.metadata
from typing import Dict, List, Optional, Type

from resformer_deploy.errors import DeployError, one_line

from resformer_deploy.passes.manager import Flow
from targets.base import PYTORCH_MODEL, Capabilities, Target

GROUP = "resformer_deploy.targets"

_loaded: Optional[Dict[str, Type[Target]]] = None  # name -> class, loaded once per process
_sources: Dict[str, str] = {}  # name -> "module:Class (distribution)"
_broken: Dict[str, str] = {}  # name -> one-line reason
_flows: Dict[str, Flow] = {}  # flows the loaded targets bring: flow name -> Flow
_flow_owner: Dict[str, str] = {}  # flow name -> the target that brings it


def _source(ep) -> str:
    dist = getattr(ep, "dist", None)
    return f"{ep.value}" + (f" from {dist.metadata['Name']} {dist.version}" if dist is not None else "")


def _check_class(cls) -> Optional[str]:
    if not isinstance(cls, type):
        return f"is a {type(cls).__name__}, not a target class"
    if not isinstance(getattr(cls, "capabilities", None), Capabilities):
        return "has no `capabilities` (a targets.base.Capabilities)"
    missing = [m for m in ("run", "steps") if not callable(getattr(cls, m, None))]
    return f"has no {' or '.join(missing)}() method" if missing else None


def _check_flows(name: str, cls) -> Optional[str]:
    """Why the flows ``cls`` brings cannot be registered (not Flows, out of order, a name another
    target's flow has), or None; registered under their names when None."""
    try:
        flows = tuple(cls.flows()) if callable(getattr(cls, "flows", None)) else ()
    except Exception as e:  # foreign code: one line
        return f"cannot list its flows: {type(e).__name__}: {one_line(str(e))}"
    for f in flows:
        if not isinstance(f, Flow):
            return f"brings a {type(f).__name__} as a flow, not a resformer_deploy.passes.manager.Flow"
        problems = f.order_problems()
        if problems:
            return f"brings flow '{f.name}' with its passes out of order: {'; '.join(problems)}"
        owner = _flow_owner.get(f.name)
        if owner is not None and _flows[f.name] is not f:
            return f"brings flow '{f.name}', which target '{owner}' brings already"
    for f in flows:
        _flows[f.name], _flow_owner[f.name] = f, _flow_owner.get(f.name, name)
    return None


def _load() -> Dict[str, Type[Target]]:
    global _loaded
    if _loaded is not None:
        return _loaded
    _sources.clear()
    _broken.clear()
    _flows.clear()
    _flow_owner.clear()
    loaded: Dict[str, Type[Target]] = {}
    for ep in importlib.metadata.entry_points(group=GROUP):
        src = _source(ep)
        if ep.name in loaded or ep.name in _broken:
            _broken[ep.name] = f"target '{ep.name}' is registered twice ({_sources.get(ep.name)}; {src})"
            loaded.pop(ep.name, None)
            continue
        _sources[ep.name] = src
        if ep.name == PYTORCH_MODEL:
            _broken[ep.name] = (f"target plug-in '{ep.name}' ({src}) takes the name commands give the PyTorch "
                                f"model itself; rename it")
            continue
        try:
            cls = ep.load()
        except Exception as e:  # any failure of foreign code: one line, never a traceback
            _broken[ep.name] = (f"target plug-in '{ep.name}' ({src}) cannot be loaded: "
                                f"{type(e).__name__}: {one_line(str(e))}")
            continue
        why = _check_class(cls) or _check_flows(ep.name, cls)
        if why:
            _broken[ep.name] = f"target plug-in '{ep.name}' ({src}) {why}"
            continue
        loaded[ep.name] = cls
    _loaded = loaded
    return loaded


def reload() -> None:
    """Forget what was loaded (after installing a plug-in in-process; tests)."""
    global _loaded
    _loaded = None


def target_flows() -> Dict[str, Flow]:
    """The flows registered targets bring (name -> Flow), their order checked at registration."""
    _load()
    return dict(_flows)


def flow_owner(flow: str) -> Optional[str]:
    """The registered target that brings flow ``flow`` (None: a built-in flow, or none)."""
    _load()
    return _flow_owner.get(flow)


def target_names() -> List[str]:
    """Names of the usable registered targets, sorted."""
    return sorted(_load())


def broken_targets() -> Dict[str, str]:
    """Plug-ins that failed to load: name -> one-line reason."""
    _load()
    return dict(_broken)


def target_class(name: str) -> Type[Target]:
    targets = _load()
    if name in _broken:
        raise DeployError(_broken[name])
    if name not in targets:
        if not targets:
            raise DeployError(f"unknown target '{name}': no target is registered (entry-point group {GROUP}); "
                              f"is resformer-deploy installed? (scripts/bootstrap.sh installs it)")
        raise DeployError(f"unknown target '{name}'; available: {', '.join(sorted(targets))}")
    return targets[name]


def capabilities_of(name: str) -> Capabilities:
    """A target's capabilities, read without instantiating it (some targets cannot run here)."""
    return target_class(name).capabilities


def get_target(name: str):
    """A new instance of the registered target ``name`` (DeployError naming the choices if unknown)."""
    cls = target_class(name)
    target = cls()
    target.name = name
    return target


def listing() -> List[dict]:
    """Every usable target: name, where it comes from, capabilities and availability (``targets``)."""
    rows = []
    for name, cls in sorted(_load().items()):
        why = cls.unavailable() if callable(getattr(cls, "unavailable", None)) else None
        rows.append({"name": name, "entry_point": _sources.get(name, ""), "available": why is None,
                     "unavailable_reason": why, "capabilities": cls.capabilities.to_json()})
    return rows


def names_with(**wanted) -> List[str]:
    """Registered targets whose capabilities have the given values, e.g. ``supports_mapping=True``."""
    return [n for n, cls in sorted(_load().items())
            if all(getattr(cls.capabilities, k) == v for k, v in wanted.items())]
