"""Reading and writing NIR HDF5 files that may contain our extension nodes.

Writing is atomic (temporary file + rename). Reading accepts any NIR 1.0.x
file: standard nodes go through ``nir``'s own constructors, our namespaced
nodes through ``nir_ext``; grouped convolutions get their correct input type
(NIR 1.0.8 declares Cin/groups); then our checker validates the whole graph.
"""
import io
from dataclasses import fields
from pathlib import Path

import h5py
import nir
import numpy as np
from nir.serialization import try_byte_to_str

from resformer_deploy.util.outputs import write_bytes
from resformer_deploy.errors import DeployError, summarize
from resformer_deploy.model.checkpoint import FORMAT_NAMES, sniff_format
from resformer_deploy.util.memory_budget import MemoryBudgetError, check_bytes

from exporters.graph_check import check_graph, check_values, topological_order
from exporters.nir_ext import EXTENSION_NODES

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


def write_nir(graph: nir.NIRGraph, path, compression=None) -> int:
    """Write ``graph`` in nir's HDF5 layout, atomically (resformer_deploy.util.outputs); returns the size.
    gzip is off by default: weights of large models write in seconds uncompressed, and constant
    arrays take no space anyway.

    The HDF5 file is built in memory (h5py accepts a Python file-like object, h5py docs "Python
    file-like objects") and then written with plain os.write: HDF5's own writes on a full disk end
    in a cascade of errors and a segfault, a plain write in one OSError."""
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.create_dataset("version", data=nir.version, dtype=h5py.string_dtype())
        _write_group(f.create_group("node"), _node_dict(graph), compression)
    with buf.getbuffer() as view:
        return write_bytes(path, view)


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
    if p.is_dir():
        raise NIRFileError(f"{path}: is a directory, not a NIR file")
    if not p.is_file():  # a FIFO blocks on open, /dev/zero reads forever: refused before either
        raise NIRFileError(f"NIR file {path} is not a regular file")
    kind = sniff_format(p)
    if kind not in ("hdf5", "unknown"):
        raise NIRFileError(f"{path}: is {FORMAT_NAMES[kind]}, not a NIR (HDF5) file")
    try:
        with h5py.File(str(p), "r") as f:
            if "node" not in f:
                raise NIRFileError(f"{path}: HDF5 file without a '/node' group: not a NIR file")
            _check_declared_sizes(f["node"], path)  # before any dataset is read
            d = _read_tree(f["node"])
    except (NIRFileError, MemoryBudgetError):
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
    _default_partitions(graph)
    if check:
        _, problems = check_graph(graph)
        problems = problems or check_values(graph)  # values of a structurally sound graph only
        if problems:
            raise NIRFileError(f"{path}: {len(problems)} problem(s): {summarize(problems, 5)}")
    for node in nodes.values():  # constant views become ordinary (writable) arrays once checked
        for f in fields(node):
            v = getattr(node, f.name)
            if isinstance(v, np.ndarray) and v.ndim and not v.flags.writeable:
                setattr(node, f.name, np.array(v))
    return graph


def _default_partitions(graph: nir.NIRGraph) -> None:
    """Files of other tools carry no ``partition`` (our metadata), and plan_lava's default,
    neuromorphic, cannot hold the graph's interfaces: Input and Output, and a Flatten of the input
    stream, belong to the host (which feeds and reads the chip); other nodes stay neuromorphic."""
    order, cyclic = topological_order(graph)
    for n in order + cyclic:
        node = graph.nodes[n]
        if "partition" in node.metadata:
            continue
        preds = [graph.nodes[a].metadata.get("partition") for a, b in graph.edges if b == n and a in graph.nodes]
        host = isinstance(node, (nir.Input, nir.Output)) or (
            isinstance(node, nir.Flatten) and preds and all(p == "host" for p in preds))
        node.metadata["partition"] = "host" if host else "neuromorphic"


def interface(graph: nir.NIRGraph):
    """(input shape, output shape, node shapes) of a checked graph, whatever its nodes are called
    (other tools name them freely; NIR only types them)."""
    shapes, _ = check_graph(graph)
    one = lambda cls: next(shapes[n] for n, v in graph.nodes.items() if isinstance(v, cls))  # noqa: E731
    return one(nir.Input), one(nir.Output), shapes


def _check_declared_sizes(group: h5py.Group, path) -> None:
    """Refuse a file whose datasets declare more than the memory budget, from their shapes alone:
    a fill-value dataset takes no space in the file (h5py docs, "Fill value"), so a tiny file can
    declare terabytes."""
    sizes = []
    group.visititems(lambda name, obj: sizes.append((name, obj.size, obj.dtype.itemsize))
                     if isinstance(obj, h5py.Dataset) else None)
    if not sizes:
        return
    name, n, item = max(sizes, key=lambda s: s[1] * s[2])
    parts = name.split("/")
    where = (f"node '{parts[1]}' {'/'.join(parts[2:])}" if parts[0] == "nodes" and len(parts) > 2
             else f"dataset '{name}'")
    check_bytes(n * item, f"{path}: {where} declares {n:,} elements")
    total = sum(n * item for _, n, item in sizes)
    check_bytes(total, f"{path}: {len(sizes)} datasets declare {sum(n for _, n, _ in sizes):,} elements in total")


def _read_tree(group: h5py.Group) -> dict:
    """``nir.serialization.hdf2dict``, except that a dataset with no storage allocated (it holds
    only its fill value) becomes a read-only broadcast view: shape and value checks then run on
    it without allocating the array."""
    out = {}
    for key, item in group.items():
        if isinstance(item, h5py.Group):
            out[key] = _read_tree(item)
        elif _only_fill_value(item):
            out[key] = np.broadcast_to(np.array(item.fillvalue, dtype=item.dtype), item.shape)
        else:
            out[key] = try_byte_to_str(item[()])
    return out


def _only_fill_value(ds: h5py.Dataset) -> bool:
    """No storage allocated in this file, and none elsewhere (virtual or external datasets keep
    their data in other files): every element reads as the fill value."""
    return bool(ds.shape and ds.size and ds.dtype.kind in "fiub" and ds.id.get_storage_size() == 0
                and not ds.is_virtual and ds.id.get_create_plist().get_external_count() == 0)


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
