"""Reading and writing NIR HDF5 files that may contain our extension nodes.

Writing is atomic (temporary file + rename). Reading accepts any NIR 1.0.x
file: standard nodes go through ``nir``'s own constructors, our namespaced
nodes through ``nir_ext``; grouped convolutions get their correct input type
(NIR 1.0.8 declares Cin/groups); then our checker validates the whole graph.
"""
from dataclasses import fields
from pathlib import Path

import h5py
import nir
import numpy as np
from nir.serialization import hdf2dict

from resformer_deploy.checkpoint import atomic_write
from resformer_deploy.errors import DeployError, summarize

from .graph_check import check_graph
from .nir_ext import EXTENSION_NODES

class NIRFileError(DeployError):
    """A NIR file that cannot be read or does not describe a graph we can use."""


CONSTANT_MIN_SIZE = 256  # arrays at least this large that hold one value are stored as fill values


def _node_dict(node) -> dict:
    """What ``node.to_dict()`` gives, without dataclasses.asdict's deep copies (GBs for large models)."""
    if isinstance(node, nir.NIRGraph):
        return {"type": "NIRGraph", "nodes": {k: _node_dict(v) for k, v in node.nodes.items()},
                "edges": [list(e) for e in node.edges], "metadata": dict(node.metadata)}
    if isinstance(node, (nir.Input, nir.Output, nir.Flatten)):
        return node.to_dict()
    d = {f.name: getattr(node, f.name) for f in fields(node) if f.name not in ("input_type", "output_type")}
    d["type"] = getattr(node, "type_name", "") or type(node).__name__
    return d


def _write_group(group: h5py.Group, d: dict, compression) -> None:
    """Same layout as ``nir.write``; constant arrays become chunked datasets with a fill value
    and no stored chunks (any HDF5 reader returns the full array; nothing is written)."""
    for k, v in d.items():
        if k == "metadata":
            if v:
                _write_group(group.create_group(k), v, compression)
        elif isinstance(v, str):
            group.create_dataset(k, data=v, dtype=h5py.string_dtype())
        elif isinstance(v, dict):
            _write_group(group.create_group(str(k)), v, compression)
        elif isinstance(v, np.ndarray) and v.ndim > 0:
            if v.size >= CONSTANT_MIN_SIZE and v.dtype.kind in "fiub" and (v == v.flat[0]).all():
                group.create_dataset(k, shape=v.shape, dtype=v.dtype, fillvalue=v.flat[0], chunks=True)
            else:
                group.create_dataset(k, data=v, dtype=v.dtype, compression=compression)
        else:
            group.create_dataset(k, data=v)


def write_nir(graph: nir.NIRGraph, path, compression=None) -> None:
    """Write ``graph`` in nir's HDF5 layout, atomically. gzip is off by default: weights of
    large models write in seconds uncompressed, and constant arrays take no space anyway."""
    def write(tmp):
        with h5py.File(tmp, "w") as f:
            f.create_dataset("version", data=nir.version, dtype=h5py.string_dtype())
            _write_group(f.create_group("node"), _node_dict(graph), compression)
    atomic_write(Path(path), write)


def _node_from_dict(name, d, path):
    t = d.get("type")
    t = t.decode() if isinstance(t, bytes) else t
    if t in EXTENSION_NODES:
        return EXTENSION_NODES[t].from_dict(d)
    if t == "NIRGraph":
        raise NIRFileError(f"{path}: node '{name}' is a nested NIRGraph (subgraphs are not supported)")
    if t not in nir.ir.__dict__["__all_ir"]:
        raise NIRFileError(f"{path}: node '{name}' has unknown type '{t}'")
    return nir.ir.dict2NIRNode(d)


def read_nir(path, check: bool = True) -> nir.NIRGraph:
    p = Path(path)
    if not p.exists():
        raise NIRFileError(f"NIR file not found: {path}")
    try:
        with h5py.File(str(p), "r") as f:
            if "node" not in f:
                raise NIRFileError(f"{path}: HDF5 file without a '/node' group: not a NIR file")
            d = hdf2dict(f["node"])
    except NIRFileError:
        raise
    except OSError as e:
        raise NIRFileError(f"{path}: not a readable HDF5/NIR file ({str(e).splitlines()[0]})") from None
    except Exception as e:  # h5py raises assorted errors on truncated files
        raise NIRFileError(f"{path}: damaged NIR file ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if d.get("type") not in ("NIRGraph", b"NIRGraph") or "nodes" not in d or "edges" not in d:
        raise NIRFileError(f"{path}: top-level node is not a NIRGraph")
    nodes, problems = {}, []
    for name, nd in d["nodes"].items():
        meta = nd.get("metadata", {})
        try:
            node = _node_from_dict(name, dict(nd), path)
        except NIRFileError as e:
            problems.append(str(e).split(": ", 1)[1])
            continue
        except Exception as e:  # a standard constructor rejecting the stored fields
            problems.append(f"node '{name}': invalid fields ({type(e).__name__}: {e})")
            continue
        node.metadata = {k: _plain(v) for k, v in meta.items()} if isinstance(meta, dict) else {}
        if isinstance(node, nir.Conv2d) and node.groups > 1 and node.input_type.get("input") is not None:
            node.input_type = {"input": np.array([node.weight.shape[1] * node.groups, *node.input_shape])}
        nodes[name] = node
    if problems:
        raise NIRFileError(f"{path}: {len(problems)} unsupported node(s): {summarize(problems, 5)}")
    edges = [(_s(a), _s(b)) for a, b in np.asarray(d["edges"]).reshape(-1, 2)] if len(d["edges"]) else []
    meta = {k: _plain(v) for k, v in d.get("metadata", {}).items()}
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)
    if check:
        _, problems = check_graph(graph)
        if problems:
            raise NIRFileError(f"{path}: {len(problems)} problem(s): {summarize(problems, 5)}")
    return graph


def _s(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def _plain(v):
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v
