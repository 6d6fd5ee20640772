"""The one place that turns plans and reports into JSON-ready values.

Dataclasses become dicts of their fields (a field declared with ``metadata={"json": False}`` is
left out: graphs, weight matrices, anything not meant for a report); numpy and torch values become
Python numbers and lists; tuples lists; paths strings; non-finite floats ``None`` (strict JSON,
RFC 8259, has no NaN or Infinity); mapping keys strings (tuple keys are joined with "->").
"""
import dataclasses
import math
from pathlib import PurePath

import numpy as np


def to_jsonable(obj):
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if hasattr(obj, "to_json"):  # a type that knows its own report form
            return to_jsonable(obj.to_json())
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if f.metadata.get("json", True)}
    if isinstance(obj, dict):
        return {_key(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in (sorted(obj) if isinstance(obj, (set, frozenset)) else obj)]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if type(obj).__module__ == "torch" and hasattr(obj, "tolist"):  # tensors, without importing torch
        return to_jsonable(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, PurePath):
        return str(obj)
    return obj


def _key(k) -> str:
    if isinstance(k, tuple):
        return "->".join(str(x) for x in k)
    return str(k.item() if isinstance(k, np.generic) else k)
