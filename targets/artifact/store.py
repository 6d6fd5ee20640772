"""The deployable artifact: one HDF5 file holding the whole quantized network, and its loader.

Layout (format ``resformer-deploy.loihi2-artifact``, version ``FORMAT_VERSION``):

* root attributes ``format``, ``format_version``; ``/meta`` attributes: checkpoint SHA-256, variant,
  image size, T, preset, calibration source, DSSA lowering, toolchain and Lava versions.
* ``/layer/<i>``: every layer of the neuromorphic partition in topological order, in lava-dl
  netx's HDF5 layer schema (lava/lib/dl/netx/hdf5.py, utils.py ``NetDict``: keys ``type``,
  ``shape`` (C, H, W), ``weight``, ``stride``, ``padding``, ``dilation``, ``groups``, ``bias``,
  ``neuron/{type, iDecay, vDecay, vThMant}``), integers in hardware units. A conv synapse whose
  output is the only input of a LIF layer is one netx ``conv`` group (the kernel stored as netx
  stores it: NIR's (Cout, Cin/g, kh, kw), netx flips and reorders it exactly as
  resformer_deploy.lava.conv.to_lava_weight does) when netx would compute it bit for bit: weight
  exponent 0 (netx's Conv block has none) and every bias a multiple of 2^6 (netx fixes
  ``bias_exp`` to 6; the quantizer's ``netx_bias_grid`` puts such a LIF's bias on that grid). Everything else is an extension group with the same key vocabulary and a
  type netx lacks: ``x-conv`` / ``x-dense`` (a synapse alone, ``wgtExp``), ``x-lif`` (a neuron
  alone, ``bias_mant`` / ``bias_exp``), ``x-junction`` (residual sum, GradedVec), ``x-product``
  (DSSA spike product: the SpikeMatMul's index arrays, integer operand bias ``lhsBias`` and its
  exponent). Group attributes ``name`` (and ``synapse``) name the graph nodes.
* ``/graph/structure``: JSON of the node names, types, shapes, partitions, edges with their delays
  (the delay-balancing pass's identity delay lines), latencies and the chip's input and output.
* ``/quant``: the integer units (scale per stream) and the calibration (``CalibrationMeta``, JSON);
  ``/host/<node>``: the stem before and the
  head after the chip (float parameters of the NIR nodes, pools included) and the readout offsets.

The loader (``read_artifact``, ``load_network``) rebuilds the public network of
targets.lava_network from the file alone, with h5py, numpy, nir and lava-nc's stock processes. It
does not use lava-dl's netx to build: netx imports torch (netx/hdf5.py -> lava.lib.dl.slayer ->
torch), cannot express most of this network (no residual junctions, spike products, delays,
per-layer weight exponents or bias exponents other than 6), and the artifact's runtime should not
need torch. What netx can express it reads itself (tests: NetDict on every group, netx's own
``hdf5.Network`` on a sequential slice written by ``write_netx_slice``).
"""
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import scipy.sparse as sp

from resformer_deploy.errors import DeployError
from resformer_deploy.fixed_point import formats as F
from resformer_deploy.util.digest import file_sha256

FORMAT = "resformer-deploy.loihi2-artifact"
FORMAT_VERSION = 1
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
NETX_BIAS_EXP = F.NETX_BIAS_EXP
COMPRESS_BYTES = 1 << 16  # gzip datasets larger than this (kernels, per-neuron biases)


class ArtifactError(DeployError):
    """A file that is not a readable artifact of a version this toolchain reads."""


@dataclass(frozen=True)
class CalibrationMeta:
    """How the stored network was calibrated: /quant's ``calibration`` attribute, typed. Keys as
    resformer_deploy/flows/fixed_point.py's quantize pass makes them: ``samples`` calibrated on,
    their ``source``, the quantizer's range ``margin``, ``netx_bias_grid`` (LIF biases on netx's
    grid), the calibration's ``seconds`` and ``data`` (given data: its data set, split and preset).
    Each is optional (a network quantized without our flow states none); one that is there has
    its type, else the file is refused naming the key. ``stored``: the mapping as the file holds
    it, written back unchanged (``to_json``). ``version``: the artifact's format version, the
    record's own (the attribute carries none); version 1 is the only one."""
    stored: Mapping[str, Any]
    version: int = 1
    source: Optional[str] = None
    samples: Optional[int] = None
    margin: Optional[float] = None
    netx_bias_grid: Optional[bool] = None
    seconds: Optional[float] = None
    data: Optional[Mapping[str, Any]] = None

    KINDS = {"source": (str,), "samples": (int,), "margin": (int, float), "netx_bias_grid": (bool,),
             "seconds": (int, float), "data": (dict,)}

    @classmethod
    def of(cls, stored, version: int = FORMAT_VERSION) -> "CalibrationMeta":
        """``stored`` (a quantized network's ``calibration``, or the attribute read back) checked
        and typed; ArtifactError naming the key that has the wrong type."""
        if not isinstance(stored, dict):
            raise ArtifactError(f"calibration is {type(stored).__name__}, not a mapping")
        typed = {}
        for key, kinds in cls.KINDS.items():
            v = stored.get(key)
            if v is not None and (not isinstance(v, kinds) or isinstance(v, bool) and bool not in kinds):
                raise ArtifactError(f"calibration key '{key}' is {type(v).__name__}, not "
                                    f"{' or '.join(k.__name__ for k in kinds)}")
            typed[key] = v
        return cls(dict(stored), version, **typed)

    def to_json(self) -> dict:
        return dict(self.stored)


def toolchain_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    from resformer_deploy import __version__
    out = {"resformer_deploy": __version__}
    for dist in ("lava-nc", "lava-dl", "nir"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


# ------------------------------------------------------------------------------------------ writer
def _ds(g, key, data):
    a = np.asarray(data)
    kw = {"compression": "gzip", "compression_opts": 4, "shuffle": True} if a.nbytes > COMPRESS_BYTES else {}
    g.create_dataset(key, data=a, **kw)


def _type(g, t: str):
    g.create_dataset("type", data=np.bytes_(t))  # NetDict decodes 'type' as ascii


def _small_int(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.int64)
    for dt in (np.int16, np.int32):
        if a.size == 0 or (a.min() >= np.iinfo(dt).min and a.max() <= np.iinfo(dt).max):
            return a.astype(dt)
    return a


def _neuron(g, lq):
    n = g.create_group("neuron")
    _type(n, "CUBA")
    n.create_dataset("iDecay", data=4096)  # netx: du = iDecay - 1; the plan's du 4095 (no current memory)
    n.create_dataset("vDecay", data=int(lq.dv))
    n.create_dataset("vThMant", data=int(lq.vth))
    n.create_dataset("refDelay", data=1)


def _netx_bias(lq, shape) -> Optional[np.ndarray]:
    """The LIF bias in netx's form (mantissas of 2^6: per channel (C,), else per neuron in netx's
    (W, H, C) neuron layout), or None if netx cannot hold it exactly."""
    from resformer_deploy.fixed_point.formats import BIAS_MANT_RANGE
    eff = lq.bias_eff
    b = eff >> NETX_BIAS_EXP
    if np.any(eff % (1 << NETX_BIAS_EXP)) or (b.size and (b.min() < BIAS_MANT_RANGE[0] or b.max() > BIAS_MANT_RANGE[1])):
        return None
    if len(shape) == 3:
        per = b.reshape(shape)
        if np.all(per == per[:, :1, :1]):
            return _small_int(per[:, 0, 0])
        return _small_int(np.swapaxes(per, 0, 2))
    return _small_int(b)


def _conv_keys(g, spec, mant):
    _ds(g, "weight", _small_int(mant))  # NIR (Cout, Cin/g, kh, kw): netx's stored orientation
    for k in ("stride", "padding", "dilation"):
        g.create_dataset(k, data=np.asarray(getattr(spec, k), dtype=np.int64))
    g.create_dataset("groups", data=int(spec.groups))
    g.attrs["input_shape"] = np.asarray(spec.in_shape, dtype=np.int64)


def netx_conv_pair(qn, syn: str, lif: str, preds: Dict[str, List[str]]) -> bool:
    """Can netx's ``conv`` block (Conv synapse -> CUBA neuron) compute syn -> lif bit for bit?"""
    plan = qn.plan
    return (preds.get(lif) == [syn] and syn in qn.syn and plan.synapses[syn].kind == "conv"
            and qn.syn[syn].exp == 0 and plan.edge_delay.get((syn, lif), 0) == 0
            and _netx_bias(qn.lif[lif], plan.shapes[lif]) is not None)


def _write_netx_conv(g, qn, syn, lif):
    spec, lq = qn.plan.synapses[syn], qn.lif[lif]
    _type(g, "conv")
    g.create_dataset("shape", data=np.asarray(qn.plan.shapes[lif], dtype=np.int64))
    _conv_keys(g, spec, qn.syn[syn].mant)
    bias = _netx_bias(lq, qn.plan.shapes[lif])
    if np.any(bias):
        _ds(g, "bias", bias)
    _neuron(g, lq)
    g.attrs["name"], g.attrs["synapse"] = lif, syn
    _syn_attrs(g, qn.syn[syn])
    _lif_attrs(g, qn, lif)


def _syn_attrs(g, s):
    g.attrs["syn_stats"] = json.dumps({"saturated": int(s.saturated), "rel_rms_error": float(s.rel_rms_error),
                                       "mant_utilization": float(s.mant_utilization), "synapses": int(s.synapses)})


def _lif_attrs(g, qn, n):
    lq, lp = qn.lif[n], qn.plan.lif.get(n)
    g.attrs["lif_stats"] = json.dumps({"bias_saturated": int(lq.bias_saturated), "decay_error": float(lq.decay_error),
                                       "threshold_error": float(lq.threshold_error),
                                       # the float plan's decay and threshold (reports; not run)
                                       "k": float(lp.k) if lp else None, "vth_float": float(lp.vth) if lp else None})


def _write_layer(g, qn, n, node_type):
    plan = qn.plan
    g.attrs["name"] = n
    shape = np.asarray(plan.shapes[n], dtype=np.int64)
    if n in qn.syn:
        spec, s = plan.synapses[n], qn.syn[n]
        g.create_dataset("shape", data=shape)
        g.create_dataset("wgtExp", data=int(s.exp))
        if spec.kind == "conv":
            _type(g, "x-conv")
            _conv_keys(g, spec, s.mant)
        else:
            _type(g, "x-dense")
            m = s.mant.tocsr()
            _ds(g, "csr_data", _small_int(m.data))
            _ds(g, "csr_indices", m.indices.astype(np.int64))
            _ds(g, "csr_indptr", m.indptr.astype(np.int64))
            g.attrs["input_shape"] = np.asarray(spec.in_shape, dtype=np.int64)
        _syn_attrs(g, s)
    elif n in qn.lif:
        lq = qn.lif[n]
        _type(g, "x-lif")
        g.create_dataset("shape", data=shape)
        _neuron(g, lq)
        _ds(g, "bias_mant", _small_int(lq.bias_mant))
        g.create_dataset("bias_exp", data=int(lq.bias_exp))
        _lif_attrs(g, qn, n)
    elif node_type == "Scale":
        _type(g, "x-junction")
        g.create_dataset("shape", data=shape)
    elif node_type == "SpikeMatMul":
        mm = plan.graph.nodes[n]
        _type(g, "x-product")
        g.create_dataset("shape", data=np.asarray(mm.output_shape, dtype=np.int64))
        g.attrs["lhs"], g.attrs["rhs"] = mm.lhs, mm.rhs
        for k in ("lhs_shape", "rhs_shape", "lhs_view", "rhs_view", "lhs_rows", "rhs_rows"):
            _ds(g, k, np.asarray(getattr(mm, k), dtype=np.int64))
        g.create_dataset("transpose_lhs", data=int(bool(mm.transpose_lhs)))
        _ds(g, "lhsBias", np.asarray(qn.lhs_bias[mm.lhs], dtype=np.int64))
        g.create_dataset("lhsBiasExp", data=int(qn.lhs_bias_exp[mm.lhs]))
    else:
        raise ArtifactError(f"{n}: a {node_type} node has no artifact layer type")


_HOST_TYPES = {"Input": "input", "Output": "output", "Conv2d": "conv2d", "Affine": "affine", "Linear": "linear",
               "Scale": "scale", "Flatten": "flatten", "AvgPool2d": "avgpool2d", "SumPool2d": "sumpool2d",
               "MaxPool2d": "maxpool2d"}
_HOST_PARAMS = {"conv2d": ("weight", "bias", "stride", "padding", "dilation", "groups"),
                "affine": ("weight", "bias"), "linear": ("weight",), "scale": ("scale",),
                "avgpool2d": ("kernel_size", "stride", "padding"), "sumpool2d": ("kernel_size", "stride", "padding"),
                "maxpool2d": ("kernel_size", "stride", "padding")}


def _write_host(h, graph, plan):
    for n in plan.host_pre + plan.host_post:
        node = graph.nodes[n]
        t = _HOST_TYPES.get(type(node).__name__)
        if t is None:
            raise ArtifactError(f"host node '{n}': {type(node).__name__} has no artifact host type "
                                f"(known: {', '.join(_HOST_TYPES)})")
        g = h.create_group(n)
        _type(g, t)
        g.create_dataset("shape", data=np.asarray(plan.shapes[n], dtype=np.int64))
        for k in _HOST_PARAMS.get(t, ()):
            v = getattr(node, k, None)
            if v is None:
                continue
            if isinstance(v, str):
                raise ArtifactError(f"host node '{n}': padding '{v}' (only explicit padding is stored)")
            _ds(g, k, np.asarray(v, dtype=np.float64 if k in ("weight", "bias", "scale") else np.int64))
    rb = h.create_group("readout_bias")
    for o in plan.outputs:
        _ds(rb, o, np.asarray(plan.bias[o], dtype=np.float64))


def structure(graph, plan) -> dict:
    return {"nodes": {n: {"type": type(node).__name__, "shape": [int(v) for v in plan.shapes[n]],
                          "partition": "neuromorphic" if n in plan.neuro else "host"}
                      for n, node in graph.nodes.items()},
            "edges": [[a, b, int(plan.edge_delay.get((a, b), 0))] for a, b in graph.edges],
            "neuro": list(plan.neuro), "host_pre": list(plan.host_pre), "host_post": list(plan.host_post),
            "inputs": {h: list(c) for h, c in plan.inputs.items()}, "outputs": list(plan.outputs),
            "latency": {n: int(v) for n, v in plan.latency.items()}, "ge": bool(plan.ge), "dssa": plan.dssa}


def write_artifact(path, qn, graph, meta: dict) -> dict:
    """Write the quantized network ``qn`` (its plan, and ``graph``'s host nodes) to ``path``
    atomically (a temporary file beside it, renamed when complete). ``meta``: the metadata
    attributes (``artifact_meta``). Returns {"bytes", "seconds", "netx_layers", "layers"}."""
    import h5py

    from resformer_deploy.util.outputs import atomic_write
    t0 = time.time()
    plan = qn.plan
    preds = {n: [a for a, b in graph.edges if b == n] for n in graph.nodes}
    netx_of = {}  # conv synapse -> its LIF, where netx's conv block holds both
    for n in plan.neuro:
        if n in qn.lif and len(preds[n]) == 1 and netx_conv_pair(qn, preds[n][0], n, preds):
            netx_of[preds[n][0]] = n
    merged = set(netx_of.values())
    counts = {"netx": 0, "layers": 0}

    def fill(name):
        with h5py.File(name, "w") as f:
            f.attrs["format"], f.attrs["format_version"] = FORMAT, FORMAT_VERSION
            m = f.create_group("meta")
            for k, v in meta.items():
                m.attrs[k] = v if isinstance(v, (int, float, str)) else json.dumps(v)
            f.create_group("graph").create_dataset("structure", data=json.dumps(structure(graph, plan)))
            q = f.create_group("quant")
            q.attrs["scale"] = json.dumps({k: float(v) for k, v in qn.scale.items()})
            q.attrs["calibration"] = json.dumps(CalibrationMeta.of(qn.calibration).to_json(), default=str)
            layers = f.create_group("layer")
            i = 0
            for n in plan.neuro:
                if n in merged:
                    continue
                g = layers.create_group(str(i))
                if n in netx_of:
                    _write_netx_conv(g, qn, n, netx_of[n])
                    counts["netx"] += 1
                else:
                    _write_layer(g, qn, n, type(graph.nodes[n]).__name__)
                i += 1
            counts["layers"] = i
            _write_host(f.create_group("host"), graph, plan)

    atomic_write(path, fill)
    return {"bytes": os.path.getsize(path), "seconds": time.time() - t0, "netx_layers": counts["netx"],
            "layers": counts["layers"]}


def artifact_meta(graph, qn, source: str, preset: str = "auto") -> dict:
    """The metadata of an artifact made from ``source`` (a checkpoint or NIR file; None: an in-memory graph)."""
    import ast
    gm = graph.metadata or {}
    cfg = gm.get("config", {})
    if isinstance(cfg, str):
        try:
            cfg = json.loads(cfg)
        except ValueError:
            cfg = ast.literal_eval(cfg) if cfg.startswith("{") else {}
    return {"checkpoint_sha256": file_sha256(source) if source else "unknown (built from an in-memory graph)",
            "source": Path(source).name if source else "",
            "variant": str(gm.get("variant", cfg.get("name", "unknown"))),
            "img_size": int(cfg.get("img_size", qn.plan.shapes[qn.plan.host_pre[0]][-1])),
            "T": int(gm.get("time_steps", cfg.get("T", 0))), "preset": preset,
            "calibration_source": CalibrationMeta.of(qn.calibration).source or "unknown",
            "dssa": qn.plan.dssa, "toolchain": toolchain_versions(),
            "input_encoding": str(gm.get("input_encoding", "")), "readout": str(gm.get("readout", "")),
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def write_netx_slice(path, qn, pairs) -> None:
    """A sequential network of netx ``conv`` groups only (``pairs``: [(conv synapse, LIF)] in
    order), written by the same group writer as the artifact, for netx's own hdf5.Network."""
    import h5py
    preds = {n: [a for a, b in qn.plan.graph.edges if b == n] for n in qn.plan.graph.nodes}
    with h5py.File(path, "w") as f:
        layers = f.create_group("layer")
        for i, (syn, lif) in enumerate(pairs):
            if not netx_conv_pair(qn, syn, lif, preds):
                raise ArtifactError(f"{syn} -> {lif}: netx's conv block cannot compute this pair exactly")
            _write_netx_conv(layers.create_group(str(i)), qn, syn, lif)


# ------------------------------------------------------------------------------------------ reader
@dataclass(eq=False)
class Artifact:
    """An artifact read back: the plan, the quantized network and the host partition the public
    network builder (targets.lava_network) and the numpy host (targets.artifact.host) consume."""
    path: str
    meta: dict
    plan: object  # LavaPlan (its synapses' weights in integer units; lava/plan.py)
    quant: object  # QuantNet
    host: object  # targets.artifact.host.HostPartition
    netx_layers: int = 0
    layer_types: Dict[str, int] = field(default_factory=dict)
    calibration: Optional[CalibrationMeta] = None  # how ``quant`` was calibrated

    @property
    def T(self) -> int:
        return int(self.meta["T"])

    def lowerings(self) -> dict:
        """The synaptic DSSA lowering of every product (passes.dssa_lowering: rebuilt from the
        stored index arrays and integer operand bias, verified on random operands)."""
        if self.plan.dssa != "synaptic":
            return {}
        from resformer_deploy.passes.dssa_lowering import lower_product, verify_lowering
        out = {}
        for n in self.plan.neuro:
            mm = self.plan.graph.nodes[n]
            if type(mm).__name__ == "SpikeMatMul":
                low = lower_product(n, mm, self.quant.lhs_bias[mm.lhs])
                verify_lowering(low, mm)
                out[n] = low.to_fixed(self.quant.lhs_bias_exp[mm.lhs])
        return out

    def network(self):
        """The public Lava network (targets.lava_network.build_network), fixed point."""
        from targets.lava_network import build_network
        return build_network(self.plan, self.T, quant=self.quant, lowerings=self.lowerings())

    def chip_inputs(self, x: np.ndarray) -> np.ndarray:
        """Images [N, C, H, W] (or frames [N, T, C, H, W]) -> the chip's integer input [N, T, size]."""
        (h,) = self.plan.inputs
        return self.quant.quantize_inputs(self.host.stem(x, self.T, [h]))[h]

    def scores(self, out_ints: np.ndarray) -> np.ndarray:
        """The chip's output stream, integers [N, T, size] -> logits [T, N, K]."""
        (o,) = self.plan.outputs
        N = out_ints.shape[0]
        real = self.quant.dequantize(o, np.swapaxes(out_ints, 0, 1))
        return self.host.head({o: real}, self.plan.shapes, self.T, N)


def _bad(path, what) -> ArtifactError:
    return ArtifactError(f"{path}: {what}")


def _open(path):
    import h5py
    p = Path(path)
    if not p.exists():
        raise _bad(path, "no such file")
    if p.is_dir():
        raise _bad(path, "is a directory, not an artifact file")
    try:
        with open(p, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise _bad(path, f"cannot read ({e.strerror})")
    if head != HDF5_MAGIC:
        raise _bad(path, "not an HDF5 file (a deployment artifact is HDF5, written by `resformer-deploy deploy`)")
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        raise _bad(path, f"corrupt or truncated HDF5 file ({str(e).splitlines()[0]})")
    fmt = f.attrs.get("format")
    fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
    if fmt != FORMAT:
        f.close()
        raise _bad(path, f"not a resformer-deploy artifact (format attribute {fmt!r}, expected {FORMAT!r}); "
                         f"a NIR file is deployed with `resformer-deploy deploy MODEL -o OUT`")
    try:
        version = int(f.attrs.get("format_version"))
    except (TypeError, ValueError):
        f.close()
        raise _bad(path, "artifact has no valid format_version attribute")
    if version > FORMAT_VERSION:
        f.close()
        raise _bad(path, f"artifact format version {version} is newer than this toolchain reads "
                         f"({FORMAT_VERSION}); upgrade resformer-deploy")
    if version < 1:
        f.close()
        raise _bad(path, f"artifact format version {version} is not valid (this toolchain reads 1..{FORMAT_VERSION})")
    return f


def read_artifact(path) -> Artifact:
    """Read and check an artifact; any problem is one ArtifactError naming the file and the key."""
    f = _open(path)
    where = ["/"]
    try:
        with f:
            return _read(f, str(path), where)
    except DeployError as e:
        raise _bad(path, f"{where[0]}: {e}") from None
    except (OSError, KeyError, ValueError, TypeError, IndexError, AttributeError, RuntimeError) as e:
        raise _bad(path, f"corrupt artifact at '{where[0]}' ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def _str(v) -> str:
    v = v[()] if hasattr(v, "shape") else v
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0]
    return v.decode() if isinstance(v, bytes) else str(v)


def _int(g, k) -> int:
    return int(np.asarray(g[k][()]).reshape(-1)[0])


def _read(f, path, where) -> Artifact:
    import nir

    from exporters.nir_ext import SpikeMatMul
    from resformer_deploy.fixed_point.network import LifQ, QuantNet, SynQ
    from resformer_deploy.lava.plan import LavaPlan
    from resformer_deploy.lava.specs import LifParams, SynapseSpec
    from targets.artifact.host import HostNode, HostPartition

    where[0] = "meta"
    meta = {}
    for k, v in f["meta"].attrs.items():
        v = v.decode() if isinstance(v, bytes) else v
        if k == "toolchain":
            v = json.loads(v)
        meta[k] = v.item() if isinstance(v, np.generic) else v
    for k in ("T", "dssa", "checkpoint_sha256", "variant", "img_size"):
        if k not in meta:
            raise KeyError(f"meta attribute '{k}' missing")
    int(meta["T"])  # checked: an integer step count, or the read fails here
    where[0] = "graph/structure"
    st = json.loads(_str(f["graph"]["structure"]))
    nodes_info, neuro = st["nodes"], list(st["neuro"])
    shapes = {n: tuple(int(v) for v in d["shape"]) for n, d in nodes_info.items()}
    edges = [(a, b) for a, b, _ in st["edges"]]
    edge_delay = {(a, b): int(d) for a, b, d in st["edges"] if d}
    where[0] = "quant"
    scale = {k: float(v) for k, v in json.loads(_str(f["quant"].attrs["scale"])).items()}
    calibration = CalibrationMeta.of(json.loads(_str(f["quant"].attrs["calibration"])), int(f.attrs["format_version"]))
    syn, lif, lhs_bias, lhs_bias_exp, specs, lifp, products = {}, {}, {}, {}, {}, {}, {}
    types, junctions = {}, set()
    layers = f["layer"]
    n_layers = len(layers)
    netx = 0
    for i in range(n_layers):
        where[0] = f"layer/{i}"
        g = layers[str(i)]
        t = _str(g["type"])
        types[t] = types.get(t, 0) + 1
        name = _str(g.attrs["name"])
        if name not in nodes_info:
            raise KeyError(f"layer names node '{name}', which the graph does not hold")
        if t in ("conv", "x-conv", "x-dense"):
            sname = _str(g.attrs["synapse"]) if t == "conv" else name
            exp = 0 if t == "conv" else _int(g, "wgtExp")
            stats = json.loads(_str(g.attrs["syn_stats"]))
            in_shape = tuple(int(v) for v in g.attrs["input_shape"])
            if t == "x-dense":
                mant = sp.csr_matrix((g["csr_data"][()].astype(np.int64), g["csr_indices"][()],
                                      g["csr_indptr"][()]), shape=(int(np.prod(shapes[sname])), int(np.prod(in_shape))))
                specs[sname] = SynapseSpec(sname, "dense", in_shape, shapes[sname],
                                           mant.toarray().astype(np.float64) * 2.0 ** exp, np.zeros(mant.shape[0]))
            else:
                mant = g["weight"][()].astype(np.int64)
                specs[sname] = SynapseSpec(sname, "conv", in_shape, shapes[sname], mant.astype(np.float64) * 2.0 ** exp,
                                           np.zeros(mant.shape[0]), g["stride"][()], g["padding"][()],
                                           g["dilation"][()], int(g["groups"][()]))
            syn[sname] = SynQ(sname, specs[sname].kind, mant, exp, stats["saturated"], stats["rel_rms_error"],
                              stats["mant_utilization"], stats["synapses"])
        if t in ("conv", "x-lif"):
            nr = g["neuron"]
            if _str(nr["type"]) != "CUBA" or _int(nr, "iDecay") != 4096:
                raise ValueError(f"neuron must be CUBA with iDecay 4096 (no current memory), got "
                                 f"{_str(nr['type'])} iDecay {_int(nr, 'iDecay')}")
            size = int(np.prod(shapes[name]))
            if t == "conv":
                b = np.asarray(g["bias"][()], dtype=np.int64) if "bias" in g else np.zeros(1, np.int64)
                if b.ndim == 3:  # netx's neuron-wise (W, H, C) layout
                    b = np.swapaxes(b, 0, 2).reshape(-1)
                elif len(shapes[name]) == 3:
                    b = np.repeat(np.broadcast_to(b, (shapes[name][0],)), int(np.prod(shapes[name][1:])))
                bias_mant, bias_exp = np.broadcast_to(b, (size,)).copy(), NETX_BIAS_EXP
                netx += 1
            else:
                bias_mant, bias_exp = g["bias_mant"][()].astype(np.int64), _int(g, "bias_exp")
            stats = json.loads(_str(g.attrs["lif_stats"]))
            lif[name] = LifQ(name, _int(nr, "vDecay"), _int(nr, "vThMant"), bias_mant, bias_exp,
                             stats["bias_saturated"], stats["decay_error"], stats["threshold_error"])
            s_in = scale.get(name, 1.0)
            k = stats["k"] if stats["k"] is not None else lif[name].dv / 4096
            lifp[name] = LifParams(name, size, float(k), float(stats["vth_float"] or lif[name].vth),
                                   lif[name].bias_eff / s_in)
        elif t == "x-product":
            kw = {k: g[k][()] for k in ("lhs_shape", "rhs_shape", "lhs_view", "rhs_view", "lhs_rows", "rhs_rows")}
            mm = SpikeMatMul(lhs=_str(g.attrs["lhs"]), rhs=_str(g.attrs["rhs"]),
                             transpose_lhs=bool(_int(g, "transpose_lhs")), output_shape=g["shape"][()], **kw)
            products[name] = mm
            lhs_bias[mm.lhs] = g["lhsBias"][()].astype(np.int64)
            lhs_bias_exp[mm.lhs] = _int(g, "lhsBiasExp")
        elif t == "x-junction":
            junctions.add(name)
        elif t not in ("x-conv", "x-dense"):
            raise ValueError(f"unknown layer type '{t}'")
    where[0] = "layer"
    placed = set(syn) | set(lif) | set(products) | junctions
    if placed != set(neuro):
        missing = sorted(set(neuro) - placed)
        raise KeyError(f"{len(missing)} neuromorphic node(s) have no layer group: {', '.join(missing[:4])}")
    # the graph the builder walks: products whole, other nodes as 1-value stand-ins of their type
    stub = {"LIF": lambda: nir.LIF(tau=np.ones(1), r=np.ones(1), v_leak=np.zeros(1), v_threshold=np.ones(1),
                                   v_reset=np.zeros(1)),
            "Scale": lambda: nir.Scale(np.ones(1)), "Input": lambda: nir.Input(np.ones(1)),
            "Output": lambda: nir.Output(np.ones(1))}
    gnodes = {n: products[n] if n in products else stub.get(d["type"], lambda: nir.Linear(weight=np.zeros((1, 1))))()
              for n, d in nodes_info.items()}
    graph = nir.NIRGraph(nodes=gnodes, edges=edges, type_check=False)
    bias = {mm.lhs: lhs_bias[mm.lhs] / scale[mm.lhs] for mm in products.values()}
    where[0] = "host"
    h = f["host"]
    hnodes = {}
    for n in st["host_pre"] + st["host_post"]:
        g = h[n]
        params = {k: g[k][()] for k in g.keys() if k not in ("type", "shape")}
        hnodes[n] = HostNode(n, _str(g["type"]), tuple(int(v) for v in g["shape"][()]), params)
    readout = {o: h["readout_bias"][o][()] for o in st["outputs"]}
    for o in st["outputs"]:
        bias[o] = readout[o]
    preds = {n: [a for a, b in edges if b == n] for n in nodes_info}
    inp = next(n for n in st["host_pre"] if hnodes[n].type == "input")
    out = next(n for n in st["host_post"] if hnodes[n].type == "output")
    host = HostPartition(hnodes, st["host_pre"], st["host_post"], preds, inp, out, readout)
    where[0] = "plan"
    plan = LavaPlan(graph, shapes, neuro, st["host_pre"], st["host_post"], st["inputs"], st["outputs"],
                    st["latency"], edge_delay, bias=bias, lif=lifp, synapses=specs, ge=bool(st["ge"]), dssa=st["dssa"])
    qn = QuantNet(plan, scale, syn, lif, lhs_bias, lhs_bias_exp, calibration=calibration.to_json())
    where[0] = "/"
    return Artifact(path, meta, plan, qn, host, netx, types, calibration)
